import NIOCore
import Foundation

/// A catalog product as both services exchange it and as clients see it. `fields` describes every field: parsing,
/// JSON, checks, defaults, filters and columns all follow it.
package struct Product: Codable, Sendable, Equatable {
    package var id: String
    package var name: String
    package var type: String
    /// Free text for the storefront; nil when the product has none.
    package var description: String?
    /// Absolute http(s) URLs of the product's images, in display order.
    package var images: [String]
    /// Words a shop groups and filters products by (`?tag=`), without repeats, in the order given.
    package var tags: [String]
    /// Whether the product is for sale; an inactive one stays readable and filterable with `?active=false`.
    package var active: Bool
    /// The URL slug a storefront finds the product by: unique among a shop's live products.
    package var handle: String
    /// Up to 10 options (size, colour), each variant picking one value of each.
    package var options: [ProductOption]
    /// What is sold: up to 10,000, each with its SKU and prices, in position order.
    package var variants: [Variant]
    /// The categories the product is in.
    package var categoryIDs: [String]
    /// Names, descriptions and option labels by BCP 47 locale.
    package var translations: [String: Translation]
    package var metadata: [String: String]
    package var createdAt: String
    package var updatedAt: String
    package var version: Int64

    package init(
        id: String, name: String, type: String = ProductRules.defaultType, description: String? = nil, images: [String] = [],
        tags: [String] = [], active: Bool = true, handle: String = "", options: [ProductOption] = [], variants: [Variant] = [],
        categoryIDs: [String] = [], translations: [String: Translation] = [:], metadata: [String: String], createdAt: String,
        updatedAt: String, version: Int64
    ) {
        self.id = id
        self.name = name
        self.type = type
        self.description = description
        self.images = images
        self.tags = tags
        self.active = active
        self.handle = handle
        self.options = options
        self.variants = variants
        self.categoryIDs = categoryIDs
        self.translations = translations
        self.metadata = metadata
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.version = version
    }

    /// Every field, in the order the product's JSON writes them (`id` first: the cache finds a page's last product
    /// by it). A field added after products were stored is marked `added`.
    package static let fields: [ProductField] = [
        ProductField("id", .text(Accessor({ $0.id }, { $0.id = $1 }), ProductRules.validID), .assigned),
        ProductField("name", .text(Accessor({ $0.name }, { $0.name = $1 }), ProductRules.validName), .required, column: true),
        ProductField(
            "handle",
            .text(
                Accessor({ $0.handle }, { $0.handle = $1 }),
                // Empty: one is made from the name as the product is stored.
                { handle, param throws(APIError) in handle.isEmpty ? handle : try VariantRules.checkHandle(handle, param: param) }),
            .optional, column: true, added: true),
        ProductField("type", .text(Accessor({ $0.type }, { $0.type = $1 }), ProductRules.validType), .optional, column: true),
        ProductField(
            "description", .optionalText(Accessor({ $0.description }, { $0.description = $1 }), ProductRules.validDescription),
            .optional),
        ProductField(
            "images",
            .texts(
                Accessor({ $0.images }, { $0.images = $1 }), element: ProductRules.validImageURL, maxCount: ProductRules.maxImages,
                distinct: false),
            .optional),
        ProductField(
            "tags",
            .texts(Accessor({ $0.tags }, { $0.tags = $1 }), element: ProductRules.validTag, maxCount: ProductRules.maxTags, distinct: true),
            .optional, anyOfFilter: "tag", added: true),
        ProductField("active", .flag(Accessor({ $0.active }, { $0.active = $1 })), .optional, column: true),
        ProductField(
            "options", .structured(Structured(Accessor({ ProductOptions($0.options) }, { $0.options = $1.list }))), .optional, added: true),
        ProductField("variants", .structured(Structured(Accessor({ Variants($0.variants) }, { $0.variants = $1.list }))), .optional, added: true),
        ProductField(
            "category_ids",
            .texts(
                Accessor({ $0.categoryIDs }, { $0.categoryIDs = $1 }),
                element: { id, param throws(APIError) in try VariantRules.checkCategoryID(id, param: param) },
                maxCount: VariantRules.maxCategories, distinct: true),
            .optional, added: true),
        ProductField(
            "translations", .structured(Structured(Accessor({ Translations($0.translations) }, { $0.translations = $1.locales }))),
            .optional, added: true),
        ProductField(
            "metadata",
            .textMap(
                Accessor({ $0.metadata }, { $0.metadata = $1 }), entry: ProductRules.validateMetadataEntry,
                maxCount: ProductRules.maxMetadataKeys),
            .optional),
        ProductField("created_at", .timestamp(Accessor({ $0.createdAt }, { $0.createdAt = $1 })), .assigned, column: true),
        ProductField("updated_at", .timestamp(Accessor({ $0.updatedAt }, { $0.updatedAt = $1 })), .assigned),
        ProductField("version", .integer(Accessor({ $0.version }, { $0.version = $1 }), minimum: 1), .assigned),
    ]

    /// A coding key naming a field.
    private struct FieldKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: FieldKey.self)
        var product = Product.blank
        for field in Self.fields {
            let key = FieldKey(stringValue: field.name)
            // A missing optional text is not null: every field but those added later is required.
            guard container.contains(key) else {
                if field.added { continue }
                throw DecodingError.keyNotFound(key, .init(codingPath: container.codingPath, debugDescription: "\(field.name) is required"))
            }
            switch field.kind {
            case .text(let path, _), .timestamp(let path): path.set(&product, try container.decode(String.self, forKey: key))
            case .optionalText(let path, _): path.set(&product, try container.decode(String?.self, forKey: key))
            case .texts(let path, _, _, _): path.set(&product, try container.decode([String].self, forKey: key))
            case .flag(let path): path.set(&product, try container.decode(Bool.self, forKey: key))
            case .textMap(let path, _, _): path.set(&product, try container.decode([String: String].self, forKey: key))
            case .integer(let path, _): path.set(&product, try container.decode(Int64.self, forKey: key))
            case .structured(let codec): try codec.decode(container, key, into: &product)
            }
        }
        self = product
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: FieldKey.self)
        for field in Self.fields {
            let key = FieldKey(stringValue: field.name)
            switch field.kind {
            case .text(let path, _), .timestamp(let path): try container.encode(path.get(self), forKey: key)
            case .optionalText(let path, _): try container.encode(path.get(self), forKey: key)
            case .texts(let path, _, _, _): try container.encode(path.get(self), forKey: key)
            case .flag(let path): try container.encode(path.get(self), forKey: key)
            case .textMap(let path, _, _): try container.encode(path.get(self), forKey: key)
            case .integer(let path, _): try container.encode(path.get(self), forKey: key)
            case .structured(let codec): try codec.encode(self, &container, key)
            }
        }
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

/// The tenant every product belongs to until API keys exist.
package let defaultTenant = "default"
