import NIOCore
import Shared

/// A product as cached, in one allocation: its JSON exactly as served, and the few fields that versions, filters
/// and indexes read. Everything else (metadata, timestamps as text) stays in the JSON and is decoded only when a
/// writer builds on the product. A value of one reference: handing it out of the cache costs one reference count.
struct CachedProduct: @unchecked Sendable {
    // Sendable: the storage is written once, before this value exists, and only read after.
    private let storage: Storage

    /// The fields kept decoded, ahead of the JSON's bytes.
    fileprivate struct Fields {
        let id: String
        let type: String
        let version: Int64
        let active: Bool
        /// `created_at` in epoch milliseconds; `Int64.min` when it is not a timestamp.
        let createdAt: Int64
        let byteCount: UInt32
        /// Where the name's string literal is in the JSON, quotes excluded.
        let nameStart: UInt32
        let nameEnd: UInt32
        /// Where the handle's string literal is in the JSON, quotes excluded (empty: a product stored before handles).
        let handleStart: UInt32
        let handleEnd: UInt32
        /// How many variants have a SKU: the SKU index reads them from the JSON only when there are some.
        let skuCount: UInt32
        /// A digest of the SKUs and the variants holding them: a write that keeps them (a price change) leaves the
        /// SKU index alone without reading them again.
        let skuDigest: Int
    }

    fileprivate final class Storage: ManagedBuffer<Fields, UInt8> {}

    /// Caches a product this replica wrote or read: its JSON is encoded once, here. Most products fit in 512
    /// bytes; a larger one grows the buffer (`estimatedJSONSize` would walk every field once more).
    init(_ product: Product) { self.init(product, capacity: 512) }

    /// The same, into a buffer of `capacity` bytes to start with (a change of a large product knows about how large
    /// it will be).
    init(_ product: Product, capacity: Int) {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(capacity)
        let (name, handle) = product.writeJSON(into: &buffer)
        let fields = Fields(
            id: product.id, type: product.type, version: product.version, active: product.active,
            createdAt: Timestamp.epochMilliseconds(product.createdAt) ?? .min, byteCount: UInt32(buffer.readableBytes),
            nameStart: UInt32(name.lowerBound), nameEnd: UInt32(name.upperBound), handleStart: UInt32(handle.lowerBound),
            handleEnd: UInt32(handle.upperBound), skuCount: UInt32(product.variants.count { $0.sku != nil }),
            skuDigest: Self.digest(product.variants))
        storage = buffer.withUnsafeReadableBytes { Self.store(fields, bytes: $0) }
    }

    /// Reads the product object at the parser (in `bytes`, the document it parses) and keeps its bytes as they
    /// are: loading a catalog or following the change feed neither builds a `Product` nor encodes one again.
    /// Every field is checked as `Product(parsing:param:)` checks it, so that `product` always decodes.
    init(parsing parser: inout JSONParser, in bytes: UnsafeRawBufferPointer, param: @autoclosure () -> String) throws(JSONSyntaxError) {
        parser.skipWhitespace()
        let start = parser.index
        var id = "", type = ""
        var createdAt: Int64 = .min
        var version: Int64 = 0
        var name = 0..<0, handle = 0..<0
        var skuCount = 0, skuDigest = 0
        var active = true
        var seen: UInt64 = 0
        try parser.members { parser, key throws(JSONSyntaxError) in
            guard let index = Product.fieldIndex(of: key) else {
                _ = try parser.skipValue()
                return
            }
            seen |= 1 << index
            // The fields kept decoded are read; every other is checked as `Product(parsing:param:)` checks it.
            switch index {
            case Self.idField: id = try parser.string(param: param() + "[id]")
            case Self.typeField: type = try parser.string(param: param() + "[type]")
            case Self.versionField: version = try parser.integer(param: param() + "[version]")
            case Self.createdField: createdAt = Timestamp.epochMilliseconds(try parser.string(param: param() + "[created_at]")) ?? .min
            case Self.activeField: active = try parser.boolean(param: param() + "[active]")
            case Product.nameField:
                let literal = parser.index
                try parser.skipString(param: param() + "[name]")
                name = (literal + 1)..<(parser.index - 1)
            case Product.handleField:
                let literal = parser.index
                try parser.skipString(param: param() + "[handle]")
                handle = (literal + 1)..<(parser.index - 1)
            case Product.variantsField:
                var scratch = Product.blank
                try Product.fields[index].read(&parser, into: &scratch, param: param())
                skuCount = scratch.variants.count { $0.sku != nil }
                skuDigest = Self.digest(scratch.variants)
            default: try Product.fields[index].skip(&parser, param: param())
            }
        }
        if seen & Product.requiredMask != Product.requiredMask {
            let missing = Product.fields.indices.first { Product.requiredMask & ~seen & (1 << $0) != 0 }!
            throw JSONSyntaxError.missing(param() + "[" + Product.fields[missing].name + "]")
        }
        let bytes = UnsafeRawBufferPointer(rebasing: bytes[start..<parser.index])
        let fields = Fields(
            id: id, type: type, version: version, active: active, createdAt: createdAt, byteCount: UInt32(parser.index - start),
            nameStart: UInt32(name.lowerBound - start), nameEnd: UInt32(name.upperBound - start),
            handleStart: UInt32(max(handle.lowerBound - start, 0)), handleEnd: UInt32(max(handle.upperBound - start, 0)),
            skuCount: UInt32(skuCount), skuDigest: skuDigest)
        storage = Self.store(fields, bytes: bytes)
    }

    /// Where the fields kept decoded are in `Product.fields`.
    private static let idField = Product.fieldIndex(of: "id")!
    private static let typeField = Product.fieldIndex(of: "type")!
    private static let versionField = Product.fieldIndex(of: "version")!
    private static let createdField = Product.fieldIndex(of: "created_at")!
    private static let activeField = Product.fieldIndex(of: "active")!

    /// Reads one product's JSON (a change's product, for instance) as `init(parsing:in:param:)` does.
    init(json buffer: ByteBuffer) throws(JSONSyntaxError) {
        self = try buffer.withUnsafeReadableBytes { bytes throws(JSONSyntaxError) in
            var parser = JSONParser(bytes: bytes)
            let product = try CachedProduct(parsing: &parser, in: bytes, param: "product")
            parser.skipWhitespace()
            guard parser.index == bytes.count else { throw JSONSyntaxError(description: "unexpected data after the product") }
            return product
        }
    }

    private static func store(_ fields: Fields, bytes: UnsafeRawBufferPointer) -> Storage {
        let made = Storage.create(minimumCapacity: bytes.count) { _ in fields }
        made.withUnsafeMutablePointerToElements { elements in
            UnsafeMutableRawPointer(elements).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        }
        return unsafeDowncast(made, to: Storage.self)
    }

    var id: String { storage.header.id }
    var type: String { storage.header.type }
    var version: Int64 { storage.header.version }
    var active: Bool { storage.header.active }
    /// `created_at` in milliseconds since the Unix epoch, for the `created[...]` filters.
    var createdAt: Int64? { storage.header.createdAt == .min ? nil : storage.header.createdAt }
    /// The strong entity tag of this version.
    var etag: String { EntityTag.product(id: id, version: version) }
    /// The size of the JSON.
    var jsonByteCount: Int { Int(storage.header.byteCount) }

    /// Calls `body` with the JSON's bytes, which live as long as this value.
    func withJSONBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try storage.withUnsafeMutablePointers { fields, elements in
            try body(UnsafeRawBufferPointer(start: elements, count: Int(fields.pointee.byteCount)))
        }
    }

    /// Whether both hold the same JSON, byte for byte.
    func hasSameJSON(as other: CachedProduct) -> Bool {
        guard jsonByteCount == other.jsonByteCount else { return false }
        return withJSONBytes { mine in other.withJSONBytes { theirs in mine.elementsEqual(theirs) } }
    }

    /// The JSON, in a buffer of its own.
    /// Whether both are one cached value (not merely equal JSON).
    func isSameValue(as other: CachedProduct) -> Bool { storage === other.storage }

    var json: ByteBuffer { withJSONBytes { ByteBuffer(bytes: $0) } }

    /// Appends the JSON to `buffer`.
    func writeJSON(into buffer: inout ByteBuffer) { withJSONBytes { _ = buffer.writeBytes($0) } }

    /// Appends the JSON as a reader of `locale` sees it (`Product.localized(to:)`): decoded and encoded again only
    /// then.
    func writeJSON(into buffer: inout ByteBuffer, locale: String?) {
        guard let locale else { return writeJSON(into: &buffer) }
        product.localized(to: locale).writeJSON(into: &buffer)
    }

    /// The name's string literal in the JSON, quotes excluded.
    private func withNameLiteral<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        let (start, end) = (Int(storage.header.nameStart), Int(storage.header.nameEnd))
        return try withJSONBytes { bytes in try body(UnsafeRawBufferPointer(rebasing: bytes[start..<end])) }
    }

    /// The name.
    var name: String { Self.string(Int(storage.header.nameStart)..<Int(storage.header.nameEnd), of: self) }

    /// The handle; empty for a product stored before handles existed.
    var handle: String { Self.string(Int(storage.header.handleStart)..<Int(storage.header.handleEnd), of: self) }

    /// The digest of the variants' SKUs (see `Fields.skuDigest`); equal digests: the same SKUs, held by the same
    /// variants (to the digest's odds).
    var skuDigest: Int { storage.header.skuDigest }

    /// The digest of the variants' SKUs and ids, for this process's cache.
    static func digest(_ variants: [Variant]) -> Int {
        var hasher = Hasher()
        for variant in variants {
            guard let sku = variant.sku else { continue }
            hasher.combine(sku)
            hasher.combine(variant.id)
        }
        return hasher.finalize()
    }

    /// The SKUs of its variants, with the variant holding each, read from the JSON.
    var skus: [(sku: String, variantID: String)] {
        guard storage.header.skuCount > 0 else { return [] }
        return withJSONBytes { bytes in
            var parser = JSONParser(bytes: bytes)
            var skus: [(sku: String, variantID: String)] = []
            do {
                try parser.members { parser, key throws(JSONSyntaxError) in
                    if key == "variants" { skus = try Variants.skus(parsing: &parser) } else { _ = try parser.skipValue() }
                }
            } catch {
                preconditionFailure("a cached product's JSON always parses: \(error)")
            }
            return skus
        }
    }

    /// The string whose literal (quotes excluded) is at `range` of the JSON.
    private static func string(_ range: Range<Int>, of cached: CachedProduct) -> String {
        cached.withJSONBytes { bytes in
            let literal = UnsafeRawBufferPointer(rebasing: bytes[range])
            guard literal.contains(UInt8(ascii: "\\")) else { return String(decoding: literal, as: UTF8.self) }
            // An escape: the parser reads the literal, quotes included, which the JSON holds around it.
            let quoted = UnsafeRawBufferPointer(start: literal.baseAddress! - 1, count: literal.count + 2)
            var parser = JSONParser(bytes: quoted)
            do { return try parser.stringValue() } catch { preconditionFailure("a cached name or handle is always a valid JSON string") }
        }
    }

    /// Whether the name, case-folded, contains `needle` (already folded): ASCII names are compared in place.
    func nameContains(folded needle: String) -> Bool {
        let fast = withNameLiteral { literal -> Bool? in
            guard !literal.contains(UInt8(ascii: "\\")) else { return nil }
            return ProductQuery.asciiName(literal.assumingMemoryBound(to: UInt8.self), containsFolded: needle)
        }
        return fast ?? ProductQuery.name(name, containsFolded: needle)
    }

    /// The texts of a list field (by its index in `Product.fields`), read from the JSON: for the filters on list
    /// fields, which keep none of them decoded.
    func texts(of field: Int) -> [String] {
        let name = Product.fields[field].name
        return withJSONBytes { bytes in
            var parser = JSONParser(bytes: bytes)
            var texts: [String] = []
            do {
                try parser.members { parser, key throws(JSONSyntaxError) in
                    if key == name { texts = try parser.stringArray(param: name) } else { _ = try parser.skipValue() }
                }
            } catch {
                preconditionFailure("a cached product's JSON always parses: \(error)")
            }
            return texts
        }
    }

    /// The product, decoded from the JSON: for writers building on it, a few times per write.
    var product: Product {
        withJSONBytes { bytes in
            var parser = JSONParser(bytes: bytes)
            do { return try Product(parsing: &parser, param: "product") } catch {
                preconditionFailure("a cached product's JSON always decodes: \(error)")
            }
        }
    }
}

extension ProductQuery {
    /// Whether a cached product passes the filters, read from its kept fields; the name only for `q`.
    func matches(_ cached: CachedProduct) -> Bool {
        matches(
            id: cached.id, type: cached.type, handle: { cached.handle }, skus: { cached.skus.map(\.sku) },
            categories: { cached.texts(of: Product.categoriesField) }, active: cached.active, createdAt: cached.createdAt,
            hasAny: { filter in cached.texts(of: filter.field).contains(where: filter.values.contains) }
        ) { cached.nameContains(folded: $0) }
    }
}

/// A page of `GET /api/products` read straight into cached products.
struct CachedPage: Sendable {
    var products: [CachedProduct]
    var hasMore: Bool

    init(json buffer: ByteBuffer) throws(JSONSyntaxError) {
        var products: [CachedProduct] = []
        products.reserveCapacity(1024)
        hasMore = try ProductPage.parse(buffer) { parser, bytes, index throws(JSONSyntaxError) in
            products.append(try CachedProduct(parsing: &parser, in: bytes, param: "products[\(index)]"))
        }
        self.products = products
    }

    /// Where a page ends, read from its last bytes without parsing it: the last product's id and `has_more`. The
    /// last product is found by walking back from the array's end over strings and brackets to the `{` that opens
    /// it (a string's quote is its end unless an odd run of backslashes precedes it), and the Database Service
    /// writes each product's id first. Costs the last product's size, whatever the page's. Nil when the page does
    /// not end that way; the caller checks the parsed page agrees.
    static func tail(of buffer: ByteBuffer) -> (lastID: String?, hasMore: Bool)? {
        buffer.withUnsafeReadableBytes { bytes -> (lastID: String?, hasMore: Bool)? in
            func ends(with suffix: String) -> Bool {
                let suffix = Array(suffix.utf8)
                return bytes.count >= suffix.count && bytes.suffix(suffix.count).elementsEqual(suffix)
            }
            let hasMore: Bool
            let closing: Int
            // `closing` is where the products' `]` is.
            if ends(with: "],\"has_more\":true}") {
                (hasMore, closing) = (true, bytes.count - "],\"has_more\":true}".utf8.count)
            } else if ends(with: "],\"has_more\":false}") {
                (hasMore, closing) = (false, bytes.count - "],\"has_more\":false}".utf8.count)
            } else {
                return nil
            }
            if ends(with: "{\"products\":[],\"has_more\":\(hasMore)}") { return (nil, hasMore) }
            func isEscaped(_ quote: Int) -> Bool {
                var backslashes = 0
                while quote - backslashes - 1 >= 0, bytes[quote - backslashes - 1] == UInt8(ascii: "\\") { backslashes += 1 }
                return backslashes % 2 == 1
            }
            var index = closing - 1
            var depth = 0
            while index >= 0 {
                switch bytes[index] {
                case UInt8(ascii: "\""):
                    index -= 1
                    while index >= 0, bytes[index] != UInt8(ascii: "\"") || isEscaped(index) { index -= 1 }
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth += 1
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth -= 1
                    if depth == 0 {
                        let opening = Array("{\"id\":\"".utf8)
                        guard bytes[index] == UInt8(ascii: "{"), index + opening.count <= closing,
                              UnsafeRawBufferPointer(rebasing: bytes[index..<(index + opening.count)]).elementsEqual(opening)
                        else { return nil }
                        var parser = JSONParser(bytes: UnsafeRawBufferPointer(rebasing: bytes[(index + opening.count - 1)..<closing]))
                        return (try? parser.stringValue()).map { ($0, hasMore) }
                    }
                    if depth < 0 { return nil }
                default:
                    break
                }
                index -= 1
            }
            return nil
        }
    }
}
