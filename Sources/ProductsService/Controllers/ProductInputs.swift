import Shared

/// A validated `POST /products` or `PUT /products/{id}` body: the product's whole editable state.
struct ProductInput: Sendable {
    /// The editable fields as given, and the defaults of those left out (the assigned ones are blank).
    private var values = Product.blank

    /// Builds the input from a parsed body; every fault is a 400 naming its field. `replacing` is the id of the
    /// product a `PUT` replaces: then the assigned fields may be echoed back, and are ignored (the `id` must match).
    init(json: JSONValue, replacing id: String? = nil) throws(APIError) {
        let fields = try ProductBody(json, echoing: id != nil, id: id)
        for field in Product.editableFields {
            if let value = fields[field.name] {
                try field.take(value, into: &values)
            } else if field.access == .required {
                throw .missingParameter(field.name, "\(field.name) is required")
            }
        }
    }

    /// The product with this input's fields.
    func applied(to product: Product) -> Product {
        var product = product
        for field in Product.editableFields { field.copy(from: values, to: &product) }
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

    init(json: JSONValue, id: String) throws(APIError) {
        let fields = try ProductBody(json, echoing: true, id: id)
        for field in Product.editableFields {
            guard let value = fields[field.name] else { continue }
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

/// The members of a product body, checked for unknown names.
private struct ProductBody {
    let fields: [String: JSONValue]

    /// `echoing`: the assigned fields are accepted (and ignored), an `id` only if it is `id`.
    init(_ json: JSONValue, echoing: Bool, id: String?) throws(APIError) {
        guard case .object(let fields) = json else { throw .invalidBody("Request body must be a JSON object") }
        for name in fields.keys.sorted() {
            guard let index = Product.fieldIndex(of: name), echoing || Product.fields[index].access != .assigned else {
                throw APIError.unknownParameter(name)
            }
        }
        if let id, let given = fields["id"], given != .string(id) {
            throw APIError.invalidParameter("id", "id is read-only and must match the product's id in the path")
        }
        self.fields = fields
    }

    subscript(name: String) -> JSONValue? { fields[name] }
}
