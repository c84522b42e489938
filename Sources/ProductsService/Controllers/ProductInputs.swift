import Shared

/// A validated `POST /products` or `PUT /products/{id}` body: the product's whole editable state.
struct ProductInput: Sendable {
    var name: String
    var type: String
    var metadata: [String: String]

    /// Fields of a product clients read but cannot set; a `PUT` may echo them back, and they are ignored.
    static let readOnlyFields: Set<String> = ["id", "created_at", "updated_at", "version"]

    /// Builds the input from a parsed body; every fault is a 400 naming its field. `replacing` is the id of the
    /// product a `PUT` replaces: then the read-only fields are accepted (the `id` must match).
    init(json: JSONValue, replacing id: String? = nil) throws(APIError) {
        let fields = try ProductFields(json, readOnly: id.map { _ in Self.readOnlyFields } ?? [], id: id)
        guard let name = fields["name"] else { throw .missingParameter("name", "Product name is required") }
        self.name = try ProductRules.validName(ProductFields.string(name, "name", what: "Product name"))
        type = try fields["type"].map { value throws(APIError) in
            try ProductRules.validType(ProductFields.string(value, "type", what: "Product type"))
        } ?? ProductRules.defaultType
        metadata = [:]
        let given: [String: String?] = try fields["metadata"].map(ProductFields.metadata) ?? [:]
        for entry in given {
            guard let value = entry.value else {
                throw .invalidParameter("metadata[\(entry.key)]", "'metadata[\(entry.key)]' must be a string, not null")
            }
            metadata[entry.key] = value
        }
        try ProductRules.validateMetadata(metadata)
    }

    /// The product with this input's fields.
    func applied(to product: Product) -> Product {
        var product = product
        product.name = name
        product.type = type
        product.metadata = metadata
        return product
    }
}

/// A validated `PATCH /products/{id}` body: given fields replace, `metadata` merges key by key and a key set to
/// `null` is removed (`"metadata": null` removes them all), as in JSON Merge Patch (RFC 7396).
struct ProductPatch: Sendable {
    var name: String?
    var type: String?
    /// nil: metadata untouched; a nil value: remove that key.
    var metadata: [String: String?]?
    var clearsMetadata = false

    init(json: JSONValue, id: String) throws(APIError) {
        let fields = try ProductFields(json, readOnly: ProductInput.readOnlyFields, id: id)
        name = try fields["name"].map { value throws(APIError) in
            try ProductRules.validName(ProductFields.string(value, "name", what: "Product name"))
        }
        type = try fields["type"].map { value throws(APIError) in
            try ProductRules.validType(ProductFields.string(value, "type", what: "Product type"))
        }
        switch fields["metadata"] {
        case nil: break
        case .null: clearsMetadata = true
        case .some(let value): metadata = try ProductFields.metadata(value)
        }
    }

    /// The product with this patch applied; the merged metadata must still satisfy the limits.
    func applied(to product: Product) throws(APIError) -> Product {
        var product = product
        if let name { product.name = name }
        if let type { product.type = type }
        if clearsMetadata { product.metadata = [:] }
        for (key, value) in metadata ?? [:] { product.metadata[key] = value }
        try ProductRules.validateMetadata(product.metadata)
        return product
    }
}

/// The fields of a product body, checked for unknown names.
private struct ProductFields {
    static let editable: Set<String> = ["name", "type", "metadata"]
    let fields: [String: JSONValue]

    init(_ json: JSONValue, readOnly: Set<String>, id: String?) throws(APIError) {
        guard case .object(let fields) = json else { throw .invalidBody("Request body must be a JSON object") }
        if let unknown = fields.keys.sorted().first(where: { !Self.editable.contains($0) && !readOnly.contains($0) }) {
            throw APIError.unknownParameter(unknown)
        }
        if let id, let given = fields["id"], given != .string(id) {
            throw APIError.invalidParameter("id", "id is read-only and must match the product's id in the path")
        }
        self.fields = fields
    }

    subscript(name: String) -> JSONValue? { fields[name] }

    static func string(_ value: JSONValue, _ param: String, what: String) throws(APIError) -> String {
        guard case .string(let text) = value else { throw .invalidParameter(param, "\(what) must be a string, not \(value.typeName)") }
        return text
    }

    /// A metadata object: string values, or null (which only a patch accepts, to remove a key).
    static func metadata(_ value: JSONValue) throws(APIError) -> [String: String?] {
        guard case .object(let entries) = value else {
            throw .invalidParameter("metadata", "metadata must be an object of string values, not \(value.typeName)")
        }
        var metadata: [String: String?] = [:]
        for (key, value) in entries {
            switch value {
            case .string(let text):
                try ProductRules.validateMetadataEntry(key, text)
                metadata[key] = .some(text)
            case .null:
                metadata[key] = .some(nil)
            default: throw .invalidParameter("metadata[\(key)]", "'metadata[\(key)]' must be a string, not \(value.typeName)")
            }
        }
        return metadata
    }
}
