import Shared

/// A validated `POST /products` or `PUT /products/{id}` body: the product's whole editable state.
struct ProductInput: Sendable {
    var name: String
    var type: String
    var description: String?
    var images: [String]
    var active: Bool
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
        description = try fields["description"].flatMap(ProductFields.description)
        images = try fields["images"].map(ProductFields.images) ?? []
        active = try fields["active"].map(ProductFields.active) ?? true
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
        product.description = description
        product.images = images
        product.active = active
        product.metadata = metadata
        return product
    }
}

/// A validated `PATCH /products/{id}` body: given fields replace, `metadata` merges key by key and a key set to
/// `null` is removed (`"metadata": null` removes them all), as in JSON Merge Patch (RFC 7396).
struct ProductPatch: Sendable {
    var name: String?
    var type: String?
    /// nil: untouched; `.some(nil)`: removed.
    var description: String??
    /// nil: untouched; null in the body clears the list.
    var images: [String]?
    var active: Bool?
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
        description = try fields["description"].map(ProductFields.description)
        images = try fields["images"].map { value throws(APIError) in value == .null ? [] : try ProductFields.images(value) }
        active = try fields["active"].map(ProductFields.active)
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
        if let description { product.description = description }
        if let images { product.images = images }
        if let active { product.active = active }
        if clearsMetadata { product.metadata = [:] }
        for (key, value) in metadata ?? [:] { product.metadata[key] = value }
        try ProductRules.validateMetadata(product.metadata)
        return product
    }
}

/// The fields of a product body, checked for unknown names.
private struct ProductFields {
    static let editable: Set<String> = ["name", "type", "description", "images", "active", "metadata"]
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

    /// A description: a string, or null for none.
    static func description(_ value: JSONValue) throws(APIError) -> String? {
        switch value {
        case .null: return nil
        case .string(let text): return try ProductRules.validDescription(text)
        default: throw .invalidParameter("description", "description must be a string or null, not \(value.typeName)")
        }
    }

    /// An images array: at most 8 absolute http(s) URLs.
    static func images(_ value: JSONValue) throws(APIError) -> [String] {
        guard case .array(let values) = value else {
            throw .invalidParameter("images", "images must be an array of URLs, not \(value.typeName)")
        }
        guard values.count <= ProductRules.maxImages else {
            throw .invalidParameter("images", "a product may have at most \(ProductRules.maxImages) images")
        }
        let images = try values.enumerated().map { index, value throws(APIError) in
            try string(value, "images[\(index)]", what: "'images[\(index)]'")
        }
        try ProductRules.validateImages(images)
        return images
    }

    static func active(_ value: JSONValue) throws(APIError) -> Bool {
        guard case .bool(let flag) = value else { throw .invalidParameter("active", "active must be a boolean, not \(value.typeName)") }
        return flag
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
