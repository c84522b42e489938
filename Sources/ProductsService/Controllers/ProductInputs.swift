import NIOCore
import Shared

/// A validated `POST /products` or `PUT /products/{id}` body: the product's whole editable state.
struct ProductInput: Sendable {
    /// The editable fields as given, and the defaults of those left out (the assigned ones are blank).
    private var values = Product.blank
    /// Whether the body gives a handle: without one, a replace keeps the product's, and a create makes one.
    private var handleGiven = false

    /// Builds the input from a request's body; every fault is a 400 naming its field. `replacing` is the id of the
    /// product a `PUT` replaces: then the assigned fields may be echoed back, and are ignored (the `id` must match).
    init(body: ByteBuffer, replacing id: String? = nil) throws(APIError) {
        try self.init(try ProductBody(body, echoing: id != nil, id: id))
    }

    /// The same from a parsed body (an import's line).
    init(json: JSONValue, replacing id: String? = nil) throws(APIError) {
        try self.init(try ProductBody(json, echoing: id != nil, id: id))
    }

    private init(_ fields: ProductBody) throws(APIError) {
        for (index, field) in Product.fields.enumerated() where field.access != .assigned {
            if let value = fields[index] {
                try field.take(value, into: &values)
                if index == Product.handleField { handleGiven = true }
            } else if field.access == .required {
                throw .missingParameter(field.name, "\(field.name) is required")
            }
        }
    }

    /// The product with this input's fields.
    func applied(to product: Product) -> Product {
        var product = product
        for field in Product.editableFields where handleGiven || field !== Product.fields[Product.handleField] {
            field.copy(from: values, to: &product)
        }
        return product
    }
}

/// A validated `PATCH /products/{id}` body: given fields replace (null clears an optional one), and a text map
/// (`metadata`) merges key by key, a key set to `null` removed (`"metadata": null` removes them all), as in JSON
/// Merge Patch (RFC 7396).
struct ProductPatch: Sendable {
    /// The given fields' values, in a product otherwise blank.
    private var values = Product.blank
    /// The fields given, other than merged maps.
    private var given: [ProductField] = []
    /// The maps to merge: a nil value removes its key.
    private var merges: [(field: ProductField, entries: [String: String?])] = []

    init(body: ByteBuffer, id: String) throws(APIError) {
        let fields = try ProductBody(body, echoing: true, id: id)
        for (index, field) in Product.fields.enumerated() where field.access != .assigned {
            guard let value = fields[index] else { continue }
            if case .textMap = field.kind, value != .null {
                merges.append((field, try field.mergeEntries(value)))
            } else {
                try field.take(value, into: &values, patching: true)
                given.append(field)
            }
        }
    }

    /// The product with this patch applied; a merged map must still satisfy its field's limits.
    func applied(to product: Product) throws(APIError) -> Product {
        var product = product
        for field in given { field.copy(from: values, to: &product) }
        for (field, entries) in merges {
            guard case .textMap(let access, _, _) = field.kind else { continue }
            var map = access.get(product)
            for (key, value) in entries { map[key] = value }
            access.set(&product, map)
            try field.validate(product)
        }
        return product
    }
}

/// The members of a product body by field, checked for unknown names.
private struct ProductBody {
    /// Each field's value as given, by index in `Product.fields`.
    private let values: [JSONValue?]

    /// Reads the body's bytes member by member: each value is parsed on its own, and no tree of the whole body is
    /// built. `echoing`: the assigned fields are accepted (and ignored), an `id` only if it is `id`.
    init(_ body: ByteBuffer, echoing: Bool, id: String?) throws(APIError) {
        guard Self.opensObject(body) else {
            _ = try JSONBody.parse(body)
            throw .invalidBody("Request body must be a JSON object")
        }
        var refused: String?
        var values = Self.none
        do {
            try body.parseJSONObject { parser, name throws(JSONSyntaxError) in
                Self.collect(name, try parser.value(), echoing: echoing, into: &values, refused: &refused)
            }
        } catch {
            throw .invalidJSON(error.description)
        }
        try self.init(values, refused: refused, id: id)
    }

    /// The same from a parsed body.
    init(_ json: JSONValue, echoing: Bool, id: String?) throws(APIError) {
        guard case .object(let fields) = json else { throw .invalidBody("Request body must be a JSON object") }
        var values = Self.none
        var refused: String?
        for (name, value) in fields { Self.collect(name, value, echoing: echoing, into: &values, refused: &refused) }
        try self.init(values, refused: refused, id: id)
    }

    /// `refused`: the first refused name in sorted order, reported before any value's fault.
    private init(_ values: [JSONValue?], refused: String?, id: String?) throws(APIError) {
        if let refused { throw APIError.unknownParameter(refused) }
        if let id, let given = values[Self.idField], given != .string(id) {
            throw APIError.invalidParameter("id", "id is read-only and must match the product's id in the path")
        }
        self.values = values
    }

    private static let idField = Product.fieldIndex(of: "id")!
    private static let none = [JSONValue?](repeating: nil, count: Product.fields.count)

    /// Keeps a member's value under its field if the body may give it; else keeps the first refused name in
    /// sorted order. `echoing`: the assigned fields are accepted.
    private static func collect(_ name: String, _ value: JSONValue, echoing: Bool, into values: inout [JSONValue?], refused: inout String?) {
        if let index = Product.fieldIndex(of: name), echoing || Product.fields[index].access != .assigned {
            values[index] = value
        } else if refused.map({ name < $0 }) ?? true {
            refused = name
        }
    }

    /// Whether the first byte that is not white space opens an object.
    private static func opensObject(_ body: ByteBuffer) -> Bool {
        body.readableBytesView.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) } == UInt8(ascii: "{")
    }

    /// The value given for the field at `index` in `Product.fields`.
    subscript(index: Int) -> JSONValue? { values[index] }
}
