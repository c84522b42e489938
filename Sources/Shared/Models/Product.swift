import Foundation

/// A catalog product as both services exchange it and as clients see it.
package struct Product: Codable, Sendable, Equatable {
    package var id: String
    package var name: String
    package var type: String
    package var metadata: [String: String]
    package var createdAt: String
    package var updatedAt: String
    package var version: Int64

    package init(
        id: String, name: String, type: String, metadata: [String: String],
        createdAt: String, updatedAt: String, version: Int64
    ) {
        self.id = id
        self.name = name
        self.type = type
        self.metadata = metadata
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.version = version
    }

    enum CodingKeys: String, CodingKey {
        case id, name, type, metadata, version
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }
}

/// One page of products from the Database Service, in id order.
package struct ProductPage: Codable, Sendable, Equatable {
    package var products: [Product]
    package var hasMore: Bool

    package init(products: [Product], hasMore: Bool) {
        self.products = products
        self.hasMore = hasMore
    }

    enum CodingKeys: String, CodingKey {
        case products
        case hasMore = "has_more"
    }
}

/// The tenant every product belongs to until API keys exist.
package let defaultTenant = "default"
