import NIOCore
import Foundation

/// A catalog product as both services exchange it and as clients see it.
package struct Product: Codable, Sendable, Equatable {
    package var id: String
    package var name: String
    package var type: String
    /// Free text for the storefront; nil when the product has none.
    package var description: String?
    /// Absolute http(s) URLs of the product's images, in display order.
    package var images: [String]
    /// Whether the product is for sale; an inactive one stays readable and filterable with `?active=false`.
    package var active: Bool
    package var metadata: [String: String]
    package var createdAt: String
    package var updatedAt: String
    package var version: Int64

    package init(
        id: String, name: String, type: String, description: String? = nil, images: [String] = [], active: Bool = true,
        metadata: [String: String], createdAt: String, updatedAt: String, version: Int64
    ) {
        self.id = id
        self.name = name
        self.type = type
        self.description = description
        self.images = images
        self.active = active
        self.metadata = metadata
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.version = version
    }

    enum CodingKeys: String, CodingKey {
        case id, name, type, description, images, active, metadata, version
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }

    // `description` is required, null or not (the synthesized decoder would take a missing one as null).
    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        name = try container.decode(String.self, forKey: .name)
        type = try container.decode(String.self, forKey: .type)
        guard container.contains(.description) else {
            throw DecodingError.keyNotFound(CodingKeys.description, .init(codingPath: container.codingPath, debugDescription: "description is required"))
        }
        description = try container.decode(String?.self, forKey: .description)
        images = try container.decode([String].self, forKey: .images)
        active = try container.decode(Bool.self, forKey: .active)
        metadata = try container.decode([String: String].self, forKey: .metadata)
        createdAt = try container.decode(String.self, forKey: .createdAt)
        updatedAt = try container.decode(String.self, forKey: .updatedAt)
        version = try container.decode(Int64.self, forKey: .version)
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(name, forKey: .name)
        try container.encode(type, forKey: .type)
        try container.encode(description, forKey: .description)
        try container.encode(images, forKey: .images)
        try container.encode(active, forKey: .active)
        try container.encode(metadata, forKey: .metadata)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encode(updatedAt, forKey: .updatedAt)
        try container.encode(version, forKey: .version)
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

    /// Reads `GET /api/products`'s body with the strict parser: loading a large catalog decodes a thousand pages,
    /// and Foundation's decoder took half the Products Service's CPU doing it.
    package init(json buffer: ByteBuffer) throws(JSONSyntaxError) {
        var products: [Product] = []
        let hasMore = try Self.parse(buffer) { parser, _, index throws(JSONSyntaxError) in
            products.append(try Product(parsing: &parser, param: "products[\(index)]"))
        }
        self.init(products: products, hasMore: hasMore)
    }

    /// Reads a page's body, handing each product to `product` (the parser at it, the bytes parsed and its index),
    /// and returns `has_more`. Not generic, so that a caller in another module runs it specialized.
    package static func parse(
        _ buffer: ByteBuffer, product: (inout JSONParser, UnsafeRawBufferPointer, Int) throws(JSONSyntaxError) -> Void
    ) throws(JSONSyntaxError) -> Bool {
        var sawProducts = false
        var hasMore: Bool?
        try buffer.parseJSONObject { parser, key, bytes throws(JSONSyntaxError) in
            switch key {
            case "products":
                var count = 0
                try parser.elements { parser throws(JSONSyntaxError) in
                    try product(&parser, bytes, count)
                    count += 1
                }
                sawProducts = true
            case "has_more":
                guard case .bool(let value) = try parser.value() else { throw JSONSyntaxError(description: "'has_more' must be a boolean") }
                hasMore = value
            default:
                _ = try parser.skipValue()
            }
        }
        guard sawProducts else { throw JSONSyntaxError(description: "'products' is required", fault: .missing(param: "products")) }
        return try JSONSyntaxError.required(hasMore, "has_more")
    }
}

extension [String] {
    /// Reads a stored JSON array of strings (a product's images column) with the strict parser.
    package init(jsonArray text: String) throws(JSONSyntaxError) {
        var text = text
        let parsed = text.withUTF8 { utf8 in
            Result { () throws(JSONSyntaxError) -> [String] in
                var parser = JSONParser(bytes: UnsafeRawBufferPointer(utf8))
                let strings = try parser.stringArray(param: "images")
                parser.skipWhitespace()
                guard parser.index == utf8.count else { throw parser.failure("unexpected data after the JSON value") }
                return strings
            }
        }
        self = try parsed.get()
    }
}

extension [String: String] {
    /// Reads a stored JSON object of strings (a product's metadata column) with the strict parser.
    package init(jsonObject text: String) throws(JSONSyntaxError) {
        var text = text
        let parsed = text.withUTF8 { utf8 in
            Result { () throws(JSONSyntaxError) -> [String: String] in
                var entries: [String: String] = [:]
                var parser = JSONParser(bytes: UnsafeRawBufferPointer(utf8))
                try parser.members { parser, key throws(JSONSyntaxError) in entries[key] = try parser.string(param: "metadata[\(key)]") }
                parser.skipWhitespace()
                guard parser.index == utf8.count else { throw parser.failure("unexpected data after the JSON value") }
                return entries
            }
        }
        self = try parsed.get()
    }
}

/// The tenant every product belongs to until API keys exist.
package let defaultTenant = "default"
