import NIOCore

/// One field of a product: its name (in JSON, in an error's `param`, as a SQL column), its type and rule, who sets
/// it, and how listings filter on it. `Product.fields` is the one description every reader and writer follows.
package struct ProductField: Sendable {
    /// A check of a text value: returns the form stored (trimmed, say), or throws naming `param`.
    package typealias TextRule = @Sendable (_ value: String, _ param: String) throws(APIError) -> String
    /// A check of one entry of a text map, its value nil when a patch removes it.
    package typealias EntryRule = @Sendable (_ key: String, _ value: String?, _ param: String) throws(APIError) -> Void

    /// The field's type, where `Product` keeps it, and its rule.
    package enum Kind: Sendable {
        case text(WritableKeyPath<Product, String> & Sendable, TextRule)
        /// Text or null (none).
        case optionalText(WritableKeyPath<Product, String?> & Sendable, TextRule)
        /// A list of texts, each checked by `element`, at most `maxCount`; with `distinct`, repeats are dropped.
        case texts(WritableKeyPath<Product, [String]> & Sendable, element: TextRule, maxCount: Int, distinct: Bool)
        case flag(WritableKeyPath<Product, Bool> & Sendable)
        /// An object of texts, each entry checked by `entry` (a nil value: a patch's removal), at most `maxCount`.
        case textMap(WritableKeyPath<Product, [String: String]> & Sendable, entry: EntryRule, maxCount: Int)
        /// An RFC 3339 timestamp, kept as text.
        case timestamp(WritableKeyPath<Product, String> & Sendable)
        case integer(WritableKeyPath<Product, Int64> & Sendable, minimum: Int64)
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
        case .text(let path, _), .timestamp(let path): .text(product[keyPath: path])
        case .flag(let path): .flag(product[keyPath: path])
        case .integer(let path, _): .integer(product[keyPath: path])
        case .optionalText, .texts, .textMap: preconditionFailure("only texts, flags, timestamps and integers have columns")
        }
    }

    /// Whether `product` has any of `values` in this field (a list of texts).
    package func has(anyOf values: [String], in product: Product) -> Bool {
        guard case .texts(let path, _, _, _) = kind else { return false }
        return product[keyPath: path].contains(where: values.contains)
    }

    /// Copies this field's value from `source` to `product`.
    package func copy(from source: Product, to product: inout Product) {
        switch kind {
        case .text(let path, _), .timestamp(let path): product[keyPath: path] = source[keyPath: path]
        case .optionalText(let path, _): product[keyPath: path] = source[keyPath: path]
        case .texts(let path, _, _, _): product[keyPath: path] = source[keyPath: path]
        case .flag(let path): product[keyPath: path] = source[keyPath: path]
        case .textMap(let path, _, _): product[keyPath: path] = source[keyPath: path]
        case .integer(let path, _): product[keyPath: path] = source[keyPath: path]
        }
    }

    // MARK: Stored JSON

    /// Reads the field's value at the parser into `product`, as stored and exchanged: typed, not judged by the rule
    /// (`Product.validate` does that where a product comes from outside).
    func read(_ parser: inout JSONParser, into product: inout Product, param: String) throws(JSONSyntaxError) {
        let param = param + "[" + name + "]"
        switch kind {
        case .text(let path, _), .timestamp(let path): product[keyPath: path] = try parser.string(param: param)
        case .optionalText(let path, _): product[keyPath: path] = try parser.optionalString(param: param)
        case .texts(let path, _, _, _): product[keyPath: path] = try parser.stringArray(param: param)
        case .flag(let path): product[keyPath: path] = try parser.boolean(param: param)
        case .integer(let path, _): product[keyPath: path] = try parser.integer(param: param)
        case .textMap(let path, _, _):
            guard parser.current == UInt8(ascii: "{") else { throw try parser.mismatch(param, "an object") }
            var entries: [String: String] = [:]
            try parser.members { parser, key throws(JSONSyntaxError) in entries[key] = try parser.string(param: param + "[\(key)]") }
            product[keyPath: path] = entries
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
        }
    }

    /// Writes the field's key and value as the product's JSON holds them (the first field's key without its comma).
    func write(_ product: Product, into buffer: inout ByteBuffer, first: Bool = false) {
        buffer.writeBytes(first ? key.dropFirst() : key[...])
        switch kind {
        case .text(let path, _), .timestamp(let path): JSONWriter.writeString(product[keyPath: path], into: &buffer)
        case .optionalText(let path, _):
            if let text = product[keyPath: path] { JSONWriter.writeString(text, into: &buffer) } else { buffer.writeStaticString("null") }
        case .texts(let path, _, _, _): JSONWriter.writeArray(product[keyPath: path], into: &buffer)
        case .flag(let path): buffer.writeStaticString(product[keyPath: path] ? "true" : "false")
        case .textMap(let path, _, _): JSONWriter.writeObject(product[keyPath: path], into: &buffer)
        case .integer(let path, _): buffer.writeString(String(product[keyPath: path]))
        }
    }

    /// The bytes of the value's strings, and how many strings it holds: what sizes and memory costs are made of.
    func textBytes(of product: Product) -> (bytes: Int, strings: Int) {
        switch kind {
        case .text(let path, _), .timestamp(let path): (product[keyPath: path].utf8.count, 1)
        case .optionalText(let path, _): (product[keyPath: path]?.utf8.count ?? 0, 1)
        case .texts(let path, _, _, _): (product[keyPath: path].reduce(0) { $0 + $1.utf8.count }, product[keyPath: path].count)
        case .flag: (5, 0)
        case .integer: (20, 0)
        case .textMap(let path, _, _):
            (product[keyPath: path].reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count }, 2 * product[keyPath: path].count)
        }
    }

    // MARK: Rules

    /// Checks the field's value in a product that came from outside (a batch, a stored-product body).
    package func validate(_ product: Product) throws(APIError) {
        switch kind {
        case .text(let path, let rule): _ = try rule(product[keyPath: path], name)
        case .optionalText(let path, let rule): if let text = product[keyPath: path] { _ = try rule(text, name) }
        case .texts(let path, let element, let maxCount, _):
            try Self.checkCount(product[keyPath: path].count, maxCount, name)
            for (index, text) in product[keyPath: path].enumerated() { _ = try element(text, "\(name)[\(index)]") }
        case .flag: break
        case .textMap(let path, let entry, let maxCount):
            try Self.checkCount(product[keyPath: path].count, maxCount, name, of: "keys")
            for (key, value) in product[keyPath: path] { try entry(key, value, name) }
        case .timestamp(let path):
            guard Timestamp.isValid(product[keyPath: path]) else { throw .invalidParameter(name, "\(name) must be an RFC 3339 timestamp") }
        case .integer(let path, let minimum):
            guard product[keyPath: path] >= minimum else { throw .invalidParameter(name, "\(name) must be at least \(minimum)") }
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
        case (.text(let path, let rule), .string(let text)): product[keyPath: path] = try rule(text, name)
        case (.optionalText(let path, _), .null): product[keyPath: path] = nil
        case (.optionalText(let path, let rule), .string(let text)): product[keyPath: path] = try rule(text, name)
        case (.texts(let path, _, _, _), .null) where patching: product[keyPath: path] = []
        case (.texts(let path, let element, let maxCount, let distinct), .array(let values)):
            try Self.checkCount(values.count, maxCount, name)
            var texts: [String] = []
            texts.reserveCapacity(values.count)
            for (index, value) in values.enumerated() {
                let param = "\(name)[\(index)]"
                guard case .string(let text) = value else { throw .invalidParameter(param, "'\(param)' must be a string, not \(value.typeName)") }
                let checked = try element(text, param)
                if !distinct || !texts.contains(checked) { texts.append(checked) }
            }
            product[keyPath: path] = texts
        case (.flag(let path), .bool(let flag)): product[keyPath: path] = flag
        case (.textMap(let path, _, _), .null) where patching: product[keyPath: path] = [:]
        case (.textMap(let path, _, _), .object):
            var entries: [String: String] = [:]
            for (key, entry) in try mergeEntries(value) {
                guard let entry else { throw .invalidParameter("\(name)[\(key)]", "'\(name)[\(key)]' must be a string, not null") }
                entries[key] = entry
            }
            product[keyPath: path] = entries
            try validate(product)
        case (.timestamp(let path), .string(let text)):
            guard Timestamp.isValid(text) else { throw .invalidParameter(name, "\(name) must be an RFC 3339 timestamp") }
            product[keyPath: path] = text
        case (.integer(let path, let minimum), .number(let number)):
            guard let integer = Int64(exactly: number), integer >= minimum else {
                throw .invalidParameter(name, "\(name) must be an integer of at least \(minimum)")
            }
            product[keyPath: path] = integer
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
    /// The index of each field in `fields`, by name.
    package static let fieldIndex: [String: Int] = Dictionary(uniqueKeysWithValues: fields.enumerated().map { ($1.name, $0) })

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
    package init(parsing parser: inout JSONParser, param: String) throws(JSONSyntaxError) {
        guard parser.current == UInt8(ascii: "{") else { throw try parser.mismatch(param, "an object") }
        var product = Product.blank
        var seen: UInt64 = 0
        try parser.members { parser, key throws(JSONSyntaxError) in
            guard let index = Self.fieldIndex[key] else {
                _ = try parser.skipValue()
                return
            }
            try Self.fields[index].read(&parser, into: &product, param: param)
            seen |= 1 << index
        }
        if seen & Self.requiredMask != Self.requiredMask {
            let missing = Self.fields.indices.first { Self.requiredMask & ~seen & (1 << $0) != 0 }!
            throw JSONSyntaxError.missing(param + "[" + Self.fields[missing].name + "]")
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
    /// string literal is, quotes excluded, relative to the object's first byte (the cache reads names there).
    @discardableResult
    package func writeJSON(into buffer: inout ByteBuffer) -> Range<Int> {
        let start = buffer.writerIndex
        var nameRange = 0..<0
        buffer.writeInteger(UInt8(ascii: "{"))
        for (index, field) in Self.fields.enumerated() {
            let valueStart = buffer.writerIndex + field.key.count - (index == 0 ? 1 : 0) - start
            field.write(self, into: &buffer, first: index == 0)
            if index == Self.nameField { nameRange = (valueStart + 1)..<(buffer.writerIndex - start - 1) }
        }
        buffer.writeInteger(UInt8(ascii: "}"))
        return nameRange
    }

    /// The index of `name` in `fields`.
    package static let nameField = fieldIndex["name"]!

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
    }
}

extension JSONSyntaxError {
    /// A required member is missing.
    package static func missing(_ param: String) -> JSONSyntaxError {
        JSONSyntaxError(description: "'\(param)' is required", fault: .missing(param: param))
    }
}
