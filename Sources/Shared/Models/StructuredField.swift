import NIOCore

/// A field's value with a structure of its own (options, variants, translations): the type reads, writes and
/// checks itself, and `ProductField` treats every such field alike.
package protocol StructuredValue: Sendable, Equatable, Codable {
    /// The value a product without the field holds.
    static var empty: Self { get }
    /// The JSON type of the value (`array` or `object`), for OpenAPI.
    static var jsonType: String { get }
    /// The value read from JSON, its types checked, faults named under `param`; the rules are `validate`'s.
    init(json: JSONValue, param: String) throws(APIError)
    /// The value read at the parser, its types checked as `init(json:param:)` checks them: stored and exchanged
    /// products are read this way, without a `JSONValue` tree (a product of 10,000 variants is 100,000 strings).
    init(parsing parser: inout JSONParser, param: @autoclosure () -> String) throws(JSONSyntaxError)
    /// Checks the value's own rules (counts, lengths, formats); rules across fields are `Product.checkStructure`'s.
    func validate(param: String) throws(APIError)
    func writeJSON(into buffer: inout ByteBuffer)
    /// The bytes of its strings and how many strings it holds.
    var textBytes: (bytes: Int, strings: Int) { get }
}

/// A structured field's operations, its value type erased so that `ProductField.Kind` has one case for all.
package class StructuredCodec: @unchecked Sendable {
    // Sendable: subclasses hold only immutable Sendable closures.
    package var jsonType: String { preconditionFailure("abstract") }
    func read(_ value: JSONValue, into product: inout Product, param: String) throws(APIError) { preconditionFailure("abstract") }
    func read(parsing parser: inout JSONParser, into product: inout Product, param: @autoclosure () -> String) throws(JSONSyntaxError) {
        preconditionFailure("abstract")
    }
    func validate(_ product: Product, param: String) throws(APIError) { preconditionFailure("abstract") }
    func write(_ product: Product, into buffer: inout ByteBuffer) { preconditionFailure("abstract") }
    func textBytes(of product: Product) -> (bytes: Int, strings: Int) { preconditionFailure("abstract") }
    func copy(from source: Product, to product: inout Product) { preconditionFailure("abstract") }
    func clear(_ product: inout Product) { preconditionFailure("abstract") }
    func isEqual(_ product: Product, _ other: Product) -> Bool { preconditionFailure("abstract") }
    func decode<Key: CodingKey>(_ container: KeyedDecodingContainer<Key>, _ key: Key, into product: inout Product) throws {
        preconditionFailure("abstract")
    }
    func encode<Key: CodingKey>(_ product: Product, _ container: inout KeyedEncodingContainer<Key>, _ key: Key) throws {
        preconditionFailure("abstract")
    }
}

/// The codec of one structured value type, reached through its accessor.
package final class Structured<Value: StructuredValue>: StructuredCodec, @unchecked Sendable {
    let access: Accessor<Value>

    package init(_ access: Accessor<Value>) { self.access = access }

    override package var jsonType: String { Value.jsonType }

    override func read(_ value: JSONValue, into product: inout Product, param: String) throws(APIError) {
        access.set(&product, try Value(json: value, param: param))
    }

    override func read(parsing parser: inout JSONParser, into product: inout Product, param: @autoclosure () -> String) throws(JSONSyntaxError) {
        access.set(&product, try Value(parsing: &parser, param: param()))
    }

    override func validate(_ product: Product, param: String) throws(APIError) { try access.get(product).validate(param: param) }
    override func write(_ product: Product, into buffer: inout ByteBuffer) { access.get(product).writeJSON(into: &buffer) }
    override func textBytes(of product: Product) -> (bytes: Int, strings: Int) { access.get(product).textBytes }
    override func copy(from source: Product, to product: inout Product) { access.set(&product, access.get(source)) }
    override func clear(_ product: inout Product) { access.set(&product, .empty) }
    override func isEqual(_ product: Product, _ other: Product) -> Bool { access.get(product) == access.get(other) }

    override func decode<Key: CodingKey>(_ container: KeyedDecodingContainer<Key>, _ key: Key, into product: inout Product) throws {
        access.set(&product, try container.decode(Value.self, forKey: key))
    }

    override func encode<Key: CodingKey>(_ product: Product, _ container: inout KeyedEncodingContainer<Key>, _ key: Key) throws {
        try container.encode(access.get(product), forKey: key)
    }
}

extension StructuredValue {
    /// Through a `JSONValue` tree: for values that stay small.
    package init(parsing parser: inout JSONParser, param: @autoclosure () -> String) throws(JSONSyntaxError) {
        let value = try parser.value()
        do { self = try Self(json: value, param: param()) } catch { throw error.syntaxError }
    }
}

// MARK: Reading JSON values

extension JSONValue {
    /// The members of an object, or a fault naming `param`.
    package func members(_ param: String) throws(APIError) -> [String: JSONValue] {
        guard case .object(let members) = self else { throw .invalidParameter(param, "'\(param)' must be an object, not \(typeName)") }
        return members
    }

    /// The elements of an array, or a fault naming `param`.
    package func elements(_ param: String) throws(APIError) -> [JSONValue] {
        guard case .array(let elements) = self else { throw .invalidParameter(param, "'\(param)' must be an array, not \(typeName)") }
        return elements
    }

    /// A string, or a fault naming `param`.
    package func text(_ param: String) throws(APIError) -> String {
        guard case .string(let text) = self else { throw .invalidParameter(param, "'\(param)' must be a string, not \(typeName)") }
        return text
    }

    /// A string, or nil for null or nothing; else a fault naming `param`.
    package static func optionalText(_ value: JSONValue?, _ param: String) throws(APIError) -> String? {
        guard let value, value != .null else { return nil }
        return try value.text(param)
    }

    /// An integer (a number without a fraction, within Int64), or a fault naming `param`.
    package func integer(_ param: String) throws(APIError) -> Int64 {
        guard case .number(let number) = self, let integer = Int64(exactly: number) else {
            throw .invalidParameter(param, "'\(param)' must be an integer, not \(typeName)")
        }
        return integer
    }

    /// An object of strings, or a fault naming `param` (or the entry, `param[key]`).
    package func texts(_ param: String) throws(APIError) -> [String: String] {
        var texts: [String: String] = [:]
        for (key, value) in try members(param) { texts[key] = try value.text("\(param)[\(key)]") }
        return texts
    }

    /// An array of strings, or a fault naming `param` (or the element, `param[i]`).
    package func textList(_ param: String) throws(APIError) -> [String] {
        var texts: [String] = []
        for (index, value) in try elements(param).enumerated() { texts.append(try value.text("\(param)[\(index)]")) }
        return texts
    }

    /// The members of an object whose names `allowed` lists; else a fault naming the first other one in sorted order.
    package func members(_ param: String, allowed: Set<String>) throws(APIError) -> [String: JSONValue] {
        let members = try members(param)
        if let unknown = members.keys.filter({ !allowed.contains($0) }).min() {
            throw APIError.unknownParameter("\(param)[\(unknown)]")
        }
        return members
    }
}

extension APIError {
    /// A fault of a stored product's structure, as the strict parser reports faults.
    var syntaxError: JSONSyntaxError { JSONSyntaxError(description: message, fault: param.map { .invalid(param: $0) }) }
}
