import NIOCore

/// How a field is read from and written to a `Product`: closures, not key paths, because applying a key path to
/// a struct copies the whole product first (it showed as a tenth of a write's CPU).
package struct Accessor<Value>: Sendable {
    package let get: @Sendable (Product) -> Value
    package let set: @Sendable (inout Product, Value) -> Void

    package init(_ get: @escaping @Sendable (Product) -> Value, _ set: @escaping @Sendable (inout Product, Value) -> Void) {
        self.get = get
        self.set = set
    }
}

/// One field of a product: its name (in JSON, in an error's `param`, as a SQL column), its type and rule, who sets
/// it, and how listings filter on it. `Product.fields` is the one description every reader and writer follows.
package final class ProductField: Sendable {
    /// A check of a text value: returns the form stored (trimmed, say), or throws naming `param`.
    package typealias TextRule = @Sendable (_ value: String, _ param: String) throws(APIError) -> String
    /// A check of one entry of a text map, its value nil when a patch removes it.
    package typealias EntryRule = @Sendable (_ key: String, _ value: String?, _ param: String) throws(APIError) -> Void

    /// The field's type, where `Product` keeps it, and its rule.
    package enum Kind: Sendable {
        case text(Accessor<String>, TextRule)
        /// Text or null (none).
        case optionalText(Accessor<String?>, TextRule)
        /// A list of texts, each checked by `element`, at most `maxCount`; with `distinct`, repeats are dropped.
        case texts(Accessor<[String]>, element: TextRule, maxCount: Int, distinct: Bool)
        case flag(Accessor<Bool>)
        /// An object of texts, each entry checked by `entry` (a nil value: a patch's removal), at most `maxCount`.
        case textMap(Accessor<[String: String]>, entry: EntryRule, maxCount: Int)
        /// An RFC 3339 timestamp, kept as text.
        case timestamp(Accessor<String>)
        case integer(Accessor<Int64>, minimum: Int64)
        /// A value with a structure of its own (options, variants, translations), which reads, writes and checks itself.
        case structured(StructuredCodec)
    }

    /// Who sets a field.
    package enum Access: Sendable, Equatable {
        /// The service (the id, the timestamps, the version): a `PUT` may echo it back; no client write sets it.
        case assigned
        /// Clients, on every create and replace.
        case required
        /// Clients; a create or replace without it takes `Product.blank`'s value.
        case optional
    }

    package let name: String
    package let kind: Kind
    package let access: Access
    /// The query parameter (on listings and exports) that keeps products having any of its comma-separated values
    /// in this field, a list of texts.
    package let anyOfFilter: String?
    /// Whether both backends keep the field in a column of its own, to filter and sort on in SQL; every field is
    /// also in the stored product's JSON.
    package let column: Bool
    /// Whether a product stored before the field existed may lack it: it reads as `Product.blank`'s value then.
    package let added: Bool
    /// The bytes ahead of the value in a product's JSON: `,"name":` (`{"id":` for the first field).
    let key: [UInt8]

    init(_ name: String, _ kind: Kind, _ access: Access, anyOfFilter: String? = nil, column: Bool = false, added: Bool = false) {
        self.name = name
        self.kind = kind
        self.access = access
        self.anyOfFilter = anyOfFilter
        self.column = column
        self.added = added
        key = Array(",\"\(name)\":".utf8)
    }

    /// The JSON types OpenAPI gives the field's value (`["string", "null"]` for optional text).
    package var jsonTypes: [String] {
        switch kind {
        case .text, .timestamp: ["string"]
        case .optionalText: ["string", "null"]
        case .texts: ["array"]
        case .flag: ["boolean"]
        case .textMap: ["object"]
        case .integer: ["integer"]
        case .structured(let codec): [codec.jsonType]
        }
    }

    /// What a column holds for a product, typed as both backends bind it.
    package enum ColumnValue: Sendable {
        case text(String)
        case flag(Bool)
        case integer(Int64)

        /// The value of each type; another type's reads as empty (a column's values all have its field's type).
        package var text: String { if case .text(let text) = self { text } else { "" } }
        package var flag: Bool { if case .flag(let flag) = self { flag } else { false } }
        package var integer: Int64 { if case .integer(let integer) = self { integer } else { 0 } }
    }

    /// The field's column value for `product`.
    package func columnValue(_ product: Product) -> ColumnValue {
        switch kind {
        case .text(let access, _), .timestamp(let access): .text(access.get(product))
        case .flag(let access): .flag(access.get(product))
        case .integer(let access, _): .integer(access.get(product))
        case .optionalText, .texts, .textMap, .structured: preconditionFailure("only texts, flags, timestamps and integers have columns")
        }
    }

    /// Whether `product` has any of `values` in this field (a list of texts).
    package func has(anyOf values: [String], in product: Product) -> Bool {
        guard case .texts(let access, _, _, _) = kind else { return false }
        return access.get(product).contains(where: values.contains)
    }

    /// Copies this field's value from `source` to `product`.
    package func copy(from source: Product, to product: inout Product) {
        switch kind {
        case .text(let access, _), .timestamp(let access): access.set(&product, access.get(source))
        case .optionalText(let access, _): access.set(&product, access.get(source))
        case .texts(let access, _, _, _): access.set(&product, access.get(source))
        case .flag(let access): access.set(&product, access.get(source))
        case .textMap(let access, _, _): access.set(&product, access.get(source))
        case .integer(let access, _): access.set(&product, access.get(source))
        case .structured(let codec): codec.copy(from: source, to: &product)
        }
    }

    // MARK: Stored JSON

    /// Reads the field's value at the parser into `product`, as stored and exchanged: typed, not judged by the rule
    /// (`Product.validate` does that where a product comes from outside).
    /// `param` names the product in errors; it is built only for one (building it for every field cost a tenth of
    /// the Database Service's batch parsing).
    package func read(_ parser: inout JSONParser, into product: inout Product, param: @autoclosure () -> String) throws(JSONSyntaxError) {
        switch kind {
        case .text(let access, _), .timestamp(let access): access.set(&product, try parser.string(param: param() + "[" + name + "]"))
        case .optionalText(let access, _): access.set(&product, try parser.optionalString(param: param() + "[" + name + "]"))
        case .texts(let access, _, _, _): access.set(&product, try parser.stringArray(param: param() + "[" + name + "]"))
        case .flag(let access): access.set(&product, try parser.boolean(param: param() + "[" + name + "]"))
        case .integer(let access, _): access.set(&product, try parser.integer(param: param() + "[" + name + "]"))
        case .textMap(let access, _, _): access.set(&product, try parser.stringObject(param: param() + "[" + name + "]"))
        case .structured(let codec): try codec.read(parsing: &parser, into: &product, param: param() + "[" + name + "]")
        }
    }

    /// Checks the value at the parser has the field's type, and moves past it without keeping it.
    package func skip(_ parser: inout JSONParser, param: @autoclosure () -> String) throws(JSONSyntaxError) {
        switch kind {
        case .text, .timestamp: try parser.skipString(param: param() + "[" + name + "]")
        case .optionalText:
            if parser.current == UInt8(ascii: "n") {
                _ = try parser.optionalString(param: param() + "[" + name + "]")
            } else {
                try parser.skipString(param: param() + "[" + name + "]")
            }
        case .texts:
            guard parser.current == UInt8(ascii: "[") else { throw try parser.mismatch(param() + "[" + name + "]", "an array of strings") }
            try parser.elements { parser throws(JSONSyntaxError) in try parser.skipString(param: param() + "[" + name + "][]") }
        case .flag: _ = try parser.boolean(param: param() + "[" + name + "]")
        case .integer: _ = try parser.integer(param: param() + "[" + name + "]")
        case .textMap:
            guard parser.current == UInt8(ascii: "{") else { throw try parser.mismatch(param() + "[" + name + "]", "an object") }
            try parser.members { parser, key throws(JSONSyntaxError) in try parser.skipString(param: param() + "[" + name + "][\(key)]") }
        case .structured(let codec):
            var scratch = Product.blank
            try codec.read(parsing: &parser, into: &scratch, param: param() + "[" + name + "]")
        }
    }

    /// Writes the field's key and value as the product's JSON holds them (the first field's key without its comma).
    func write(_ product: Product, into buffer: inout ByteBuffer, first: Bool = false) {
        buffer.writeBytes(first ? key.dropFirst() : key[...])
        switch kind {
        case .text(let access, _), .timestamp(let access): JSONWriter.writeString(access.get(product), into: &buffer)
        case .optionalText(let access, _):
            if let text = access.get(product) { JSONWriter.writeString(text, into: &buffer) } else { buffer.writeStaticString("null") }
        case .texts(let access, _, _, _): JSONWriter.writeArray(access.get(product), into: &buffer)
        case .flag(let access): buffer.writeStaticString(access.get(product) ? "true" : "false")
        case .textMap(let access, _, _): JSONWriter.writeObject(access.get(product), into: &buffer)
        case .integer(let access, _): buffer.writeString(String(access.get(product)))
        case .structured(let codec): codec.write(product, into: &buffer)
        }
    }

    /// The bytes of the value's strings, and how many strings it holds: what sizes and memory costs are made of.
    func textBytes(of product: Product) -> (bytes: Int, strings: Int) {
        switch kind {
        case .text(let access, _), .timestamp(let access): (access.get(product).utf8.count, 1)
        case .optionalText(let access, _): (access.get(product)?.utf8.count ?? 0, 1)
        case .texts(let access, _, _, _): (access.get(product).reduce(0) { $0 + $1.utf8.count }, access.get(product).count)
        case .flag: (5, 0)
        case .integer: (20, 0)
        case .textMap(let access, _, _):
            (access.get(product).reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count }, 2 * access.get(product).count)
        case .structured(let codec): codec.textBytes(of: product)
        }
    }

    // MARK: Rules

    /// Checks the field's value in a product that came from outside (a batch, a stored-product body).
    package func validate(_ product: Product) throws(APIError) {
        switch kind {
        case .text(let access, let rule): _ = try rule(access.get(product), name)
        case .optionalText(let access, let rule): if let text = access.get(product) { _ = try rule(text, name) }
        case .texts(let access, let element, let maxCount, _):
            try Self.checkCount(access.get(product).count, maxCount, name)
            for (index, text) in access.get(product).enumerated() { _ = try element(text, "\(name)[\(index)]") }
        case .flag: break
        case .textMap(let access, let entry, let maxCount):
            try Self.checkCount(access.get(product).count, maxCount, name, of: "keys")
            for (key, value) in access.get(product) { try entry(key, value, name) }
        case .timestamp(let access):
            guard Timestamp.isValid(access.get(product)) else { throw .invalidParameter(name, "\(name) must be an RFC 3339 timestamp") }
        case .integer(let access, let minimum):
            guard access.get(product) >= minimum else { throw .invalidParameter(name, "\(name) must be at least \(minimum)") }
        case .structured(let codec): try codec.validate(product, param: name)
        }
    }

    private static func checkCount(_ count: Int, _ maxCount: Int, _ name: String, of what: String = "values") throws(APIError) {
        guard count <= maxCount else { throw .invalidParameter(name, "\(name) may hold at most \(maxCount) \(what)") }
    }

    /// Takes a client's value for this field into `product`, checked by the rule; null clears an optional text, and
    /// in a patch a list or a text map too. A text map is set whole (a patch merges an object: `mergeEntries`).
    package func take(_ value: JSONValue, into product: inout Product, patching: Bool = false) throws(APIError) {
        func mismatch(_ expected: String) -> APIError { .invalidParameter(name, "\(name) must be \(expected), not \(value.typeName)") }
        switch (kind, value) {
        case (.text(let access, let rule), .string(let text)): access.set(&product, try rule(text, name))
        case (.optionalText(let access, _), .null): access.set(&product, nil)
        case (.optionalText(let access, let rule), .string(let text)): access.set(&product, try rule(text, name))
        case (.texts(let access, _, _, _), .null) where patching: access.set(&product, [])
        case (.texts(let access, let element, let maxCount, let distinct), .array(let values)):
            try Self.checkCount(values.count, maxCount, name)
            var texts: [String] = []
            texts.reserveCapacity(values.count)
            for (index, value) in values.enumerated() {
                let param = "\(name)[\(index)]"
                guard case .string(let text) = value else { throw .invalidParameter(param, "'\(param)' must be a string, not \(value.typeName)") }
                let checked = try element(text, param)
                if !distinct || !texts.contains(checked) { texts.append(checked) }
            }
            access.set(&product, texts)
        case (.flag(let access), .bool(let flag)): access.set(&product, flag)
        case (.textMap(let access, _, _), .null) where patching: access.set(&product, [:])
        case (.textMap(let access, _, _), .object):
            var entries: [String: String] = [:]
            for (key, entry) in try mergeEntries(value) {
                guard let entry else { throw .invalidParameter("\(name)[\(key)]", "'\(name)[\(key)]' must be a string, not null") }
                entries[key] = entry
            }
            access.set(&product, entries)
            try validate(product)
        case (.timestamp(let access), .string(let text)):
            guard Timestamp.isValid(text) else { throw .invalidParameter(name, "\(name) must be an RFC 3339 timestamp") }
            access.set(&product, text)
        case (.integer(let access, let minimum), .number(let number)):
            guard let integer = Int64(exactly: number), integer >= minimum else {
                throw .invalidParameter(name, "\(name) must be an integer of at least \(minimum)")
            }
            access.set(&product, integer)
        case (.structured(let codec), .null) where patching: codec.clear(&product)
        case (.structured(let codec), _):
            try codec.read(value, into: &product, param: name)
            try codec.validate(product, param: name)
        case (.text, _), (.timestamp, _): throw mismatch("a string")
        case (.optionalText, _): throw mismatch("a string or null")
        case (.texts, _): throw mismatch(patching ? "an array of strings or null" : "an array of strings")
        case (.flag, _): throw mismatch("a boolean")
        case (.textMap, _): throw mismatch(patching ? "an object of strings or null" : "an object of strings")
        case (.integer, _): throw mismatch("an integer")
        }
    }

    /// A patch's entries for a text map: a string sets a key, null removes it. Each entry is checked on its own; the
    /// merged map is checked whole by `check` once merged.
    package func mergeEntries(_ value: JSONValue) throws(APIError) -> [String: String?] {
        guard case .object(let entries) = value, case .textMap(_, let rule, _) = kind else {
            throw .invalidParameter(name, "\(name) must be an object of strings, not \(value.typeName)")
        }
        var merged: [String: String?] = [:]
        for (key, entry) in entries {
            switch entry {
            case .string(let text):
                try rule(key, text, name)
                merged[key] = .some(text)
            case .null:
                try rule(key, nil, name)
                merged[key] = .some(nil)
            default: throw .invalidParameter("\(name)[\(key)]", "'\(name)[\(key)]' must be a string, not \(entry.typeName)")
            }
        }
        return merged
    }
}

extension Product {
    /// The fields' names, in order.
    static let fieldNames = fields.map(\.name)

    /// The index of the field named `key`, found by comparing names (short ones compare as two words), which costs
    /// less than hashing the key: every product read looks up each of its members.
    @inline(__always)
    package static func fieldIndex(of key: String) -> Int? {
        fieldNames.withUnsafeBufferPointer { names in names.firstIndex(of: key) }
    }

    /// The fields a client may set.
    package static let editableFields = fields.filter { $0.access != .assigned }

    /// The fields a stored product must hold, as bits by index in `fields`.
    package static let requiredMask: UInt64 = fields.enumerated().reduce(0) { mask, field in field.element.added ? mask : mask | 1 << field.offset }

    /// The fields that have a column of their own in both backends.
    package static let columnFields = fields.filter(\.column)

    /// A product with every field at its default: what a create starts from, and what a stored product lacking an
    /// added field reads as.
    package static var blank: Product { Product(id: "", createdAt: "", updatedAt: "", version: 0) }

    /// A product with these assigned fields and every editable one at its default, for an input to fill in.
    package init(id: String, createdAt: String, updatedAt: String, version: Int64) {
        self.init(id: id, name: "", metadata: [:], createdAt: createdAt, updatedAt: updatedAt, version: version)
    }

    /// A product read from JSON (a batch's operation, a page, a change, a stored row); unknown fields are ignored,
    /// and every field but those `added` later must be there.
    package init(parsing parser: inout JSONParser, param: @autoclosure () -> String) throws(JSONSyntaxError) {
        guard parser.current == UInt8(ascii: "{") else { throw try parser.mismatch(param(), "an object") }
        var product = Product.blank
        var seen: UInt64 = 0
        try parser.members { parser, key throws(JSONSyntaxError) in
            guard let index = Self.fieldIndex(of: key) else {
                _ = try parser.skipValue()
                return
            }
            try Self.fields[index].read(&parser, into: &product, param: param())
            seen |= 1 << index
        }
        if seen & Self.requiredMask != Self.requiredMask {
            let missing = Self.fields.indices.first { Self.requiredMask & ~seen & (1 << $0) != 0 }!
            throw JSONSyntaxError.missing(param() + "[" + Self.fields[missing].name + "]")
        }
        self = product
    }

    /// Reads a product's JSON text (a stored row's) with the strict parser.
    package init(json text: String) throws(JSONSyntaxError) {
        var text = text
        let parsed = text.withUTF8 { utf8 in
            Result { () throws(JSONSyntaxError) -> Product in
                var parser = JSONParser(bytes: UnsafeRawBufferPointer(utf8))
                parser.skipWhitespace()
                let product = try Product(parsing: &parser, param: "product")
                parser.skipWhitespace()
                guard parser.index == utf8.count else { throw parser.failure("unexpected data after the product") }
                return product
            }
        }
        self = try parsed.get()
    }

    /// The product's JSON, fields in `fields`' order (`id` first), metadata keys sorted. Returns where the name's
    /// and the handle's string literals are, quotes excluded, relative to the object's first byte (the cache reads
    /// them there).
    @discardableResult
    package func writeJSON(into buffer: inout ByteBuffer) -> (name: Range<Int>, handle: Range<Int>) {
        let start = buffer.writerIndex
        var nameRange = 0..<0, handleRange = 0..<0
        buffer.writeInteger(UInt8(ascii: "{"))
        for (index, field) in Self.fields.enumerated() {
            let valueStart = buffer.writerIndex + field.key.count - (index == 0 ? 1 : 0) - start
            field.write(self, into: &buffer, first: index == 0)
            if index == Self.nameField { nameRange = (valueStart + 1)..<(buffer.writerIndex - start - 1) }
            if index == Self.handleField { handleRange = (valueStart + 1)..<(buffer.writerIndex - start - 1) }
        }
        buffer.writeInteger(UInt8(ascii: "}"))
        return (nameRange, handleRange)
    }

    /// The index of `name` in `fields`.
    package static let nameField = fieldIndex(of: "name")!
    /// The index of `handle` in `fields`.
    package static let handleField = fieldIndex(of: "handle")!
    /// The index of `category_ids` in `fields`.
    package static let categoriesField = fieldIndex(of: "category_ids")!
    /// The index of `variants` in `fields`.
    package static let variantsField = fieldIndex(of: "variants")!

    /// The product's JSON in a buffer of its own.
    package var json: ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(estimatedJSONSize)
        writeJSON(into: &buffer)
        return buffer
    }

    /// The bytes of the product's strings and how many strings it holds, over every field.
    package var textBytes: (bytes: Int, strings: Int) {
        Self.fields.reduce((0, 0)) { total, field in
            let counted = field.textBytes(of: self)
            return (total.0 + counted.bytes, total.1 + counted.strings)
        }
    }

    /// About how many bytes the product's JSON takes, to reserve a buffer for it.
    package var estimatedJSONSize: Int {
        let counted = textBytes
        return 16 * Self.fields.count + counted.bytes + 4 * counted.strings
    }

    /// Checks a whole product as stored, as the Database Service does before applying it.
    package func validate() throws(APIError) {
        for field in Self.fields { try field.validate(self) }
        try checkStructure()
    }
}

extension JSONSyntaxError {
    /// A required member is missing.
    package static func missing(_ param: String) -> JSONSyntaxError {
        JSONSyntaxError(description: "'\(param)' is required", fault: .missing(param: param))
    }
}
