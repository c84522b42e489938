import NIOCore

/// A node of a shop's category tree: what `GET /products?category=` lists, with its descendants.
package struct Category: Codable, Sendable, Equatable {
    /// `cat_…`, given by the Database Service.
    package var id: String
    package var name: String
    /// Unique among the shop's categories; made from the name when not given.
    package var handle: String
    /// Nil for a root.
    package var parentID: String?
    /// Orders siblings; ties by id.
    package var position: Int64
    package var createdAt: String
    package var updatedAt: String

    package init(
        id: String, name: String, handle: String, parentID: String?, position: Int64, createdAt: String, updatedAt: String
    ) {
        self.id = id
        self.name = name
        self.handle = handle
        self.parentID = parentID
        self.position = position
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    enum CodingKeys: String, CodingKey {
        case id, name, handle, position
        case parentID = "parent_id"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(name, forKey: .name)
        try container.encode(handle, forKey: .handle)
        try container.encode(parentID, forKey: .parentID)
        try container.encode(position, forKey: .position)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encode(updatedAt, forKey: .updatedAt)
    }

    package func writeJSON(into buffer: inout ByteBuffer) {
        buffer.writeJSONString(id, after: "{\"id\":")
        buffer.writeJSONString(name, after: ",\"name\":")
        buffer.writeJSONString(handle, after: ",\"handle\":")
        if let parentID { buffer.writeJSONString(parentID, after: ",\"parent_id\":") } else { buffer.writeStaticString(",\"parent_id\":null") }
        buffer.writeStaticString(",\"position\":")
        buffer.writeString(String(position))
        buffer.writeJSONString(createdAt, after: ",\"created_at\":")
        buffer.writeJSONString(updatedAt, after: ",\"updated_at\":")
        buffer.writeInteger(UInt8(ascii: "}"))
    }
}

/// A client's body for a category: on a create `name` is required; on an update every member is optional
/// (`"parent_id": null` makes it a root).
package struct CategoryInput: Sendable, Equatable {
    package var name: String?
    package var handle: String?
    /// nil: not given; `.some(nil)`: a root.
    package var parentID: String??
    package var position: Int64?

    package static let members: Set<String> = ["name", "handle", "parent_id", "position"]
    package static let maxDepth = 16
    package static let maxPosition: Int64 = 1 << 53

    package init(name: String? = nil, handle: String? = nil, parentID: String?? = nil, position: Int64? = nil) {
        self.name = name
        self.handle = handle
        self.parentID = parentID
        self.position = position
    }

    /// Reads and checks a body; `creating` requires `name`.
    package init(json: JSONValue, creating: Bool) throws(APIError) {
        guard case .object = json else { throw .invalidBody("Request body must be a JSON object") }
        let members = try json.members("category", allowed: Self.members)
        if let name = members["name"] {
            self.name = try ProductRules.validName(try name.text("name"), param: "name")
        } else if creating {
            throw .missingParameter("name", "name is required")
        }
        if let handle = members["handle"] {
            let text = try handle.text("handle")
            self.handle = text.isEmpty ? nil : try VariantRules.checkHandle(text, param: "handle")
        }
        if let parent = members["parent_id"] {
            parentID = .some(try JSONValue.optionalText(parent, "parent_id").map { id throws(APIError) in
                try VariantRules.checkCategoryID(id, param: "parent_id")
            })
        }
        if let position = members["position"] {
            let value = try position.integer("position")
            guard (0...Self.maxPosition).contains(value) else { throw .invalidParameter("position", "position must be from 0 to 2^53") }
            self.position = value
        }
    }
}

/// A page of categories, in id (creation) order.
package struct CategoryPage: Sendable, Equatable {
    package var categories: [Category]
    package var hasMore: Bool

    package init(categories: [Category], hasMore: Bool) {
        self.categories = categories
        self.hasMore = hasMore
    }
}

extension APIError {
    /// A category that still has children or products.
    package static func categoryNotEmpty(_ id: String, children: Bool) -> APIError {
        APIError(
            .conflict, code: "category_not_empty",
            message: "Category \(id) still has \(children ? "child categories" : "products"); move or delete them first", param: "id")
    }
}

/// `GET /categories`' parameters, the same on both services.
package struct CategoryQuery: Sendable, Equatable {
    package var limit = 20
    package var startingAfter: String?
    /// nil: every level; `.some(nil)`: roots (`parent_id=root`).
    package var parent: String??

    package static func parse(_ query: String?) throws(APIError) -> CategoryQuery {
        var result = CategoryQuery()
        var seen = Set<String>()
        for (name, value) in try QueryString.parse(query) {
            guard seen.insert(name).inserted else { throw APIError.invalidParameter(name, "'\(name)' may be given only once") }
            switch name {
            case "limit":
                guard let limit = Int(value), (1...100).contains(limit) else { throw APIError.invalidParameter(name, "limit must be 1 to 100") }
                result.limit = limit
            case "starting_after": result.startingAfter = try VariantRules.checkCategoryID(value, param: name)
            case "parent_id": result.parent = value == "root" ? .some(nil) : .some(try VariantRules.checkCategoryID(value, param: name))
            default: throw APIError.unknownParameter(name, in: "query")
            }
        }
        return result
    }

    /// The query string of the page after `last`.
    package func queryString(after last: String) -> String {
        var pairs: [(name: String, value: String)] = [("limit", String(limit)), ("starting_after", last)]
        switch parent {
        case .none: break
        case .some(.none): pairs.append(("parent_id", "root"))
        case .some(.some(let parent)): pairs.append(("parent_id", parent))
        }
        return QueryString.encode(pairs)
    }
}
