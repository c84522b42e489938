import Foundation
import NIOCore
import Testing

@testable import ProductsService
import Shared
import TestSupport

@Suite("Cached product")
struct CachedProductTests {
    static let products = [
        Product(
            id: "prod_1", name: "Plain shirt", type: "physical", metadata: ["color": "red", "size": "M"],
            createdAt: "2024-01-02T03:04:05.678Z", updatedAt: "2024-01-02T03:04:05.678Z", version: 3),
        Product(
            id: "prod_\"2\\", name: "A \"quoted\" \\ name\n with\tcontrols \u{1}", type: "digital", metadata: [:],
            createdAt: "2024-01-02T03:04:05Z", updatedAt: "2024-02-02T03:04:05Z", version: 1),
        Product(
            id: "prod_3", name: "Crème brûlée 🍮 épicée", type: "ünïcode", metadata: ["clé": "välue \"x\""],
            createdAt: "not a time", updatedAt: "2024-02-02T03:04:05Z", version: 9_007_199_254_740_993),
    ]

    @Test("a product written to the cache keeps its JSON and fields, and decodes back to itself")
    func fromProduct() {
        for product in Self.products {
            let cached = CachedProduct(product)
            #expect(cached.id == product.id)
            #expect(cached.type == product.type)
            #expect(cached.version == product.version)
            #expect(cached.name == product.name)
            #expect(cached.createdAt == Timestamp.epochMilliseconds(product.createdAt))
            #expect(cached.json == product.json)
            #expect(cached.jsonByteCount == product.json.readableBytes)
            #expect(cached.product == product)
            #expect(cached.etag == EntityTag.product(id: product.id, version: product.version))
        }
    }

    @Test("large products stay decoded for the very cached value they were made with, within their byte bound")
    func decodedProducts() {
        func wide(_ id: String, variants: Int, version: Int64 = 1) -> Product {
            var product = Product(id: id, name: "Wide", metadata: [:], createdAt: "2026-01-01T00:00:00Z", updatedAt: "2026-01-01T00:00:00Z", version: version)
            product.options = [ProductOption(name: "Size", values: (0..<variants).map { "S\($0)" })]
            product.variants = (0..<variants).map { Variant(id: "var_\($0)", sku: "W-\($0)", options: ["Size": "S\($0)"], prices: [], position: Int64($0 + 1)) }
            return product
        }
        let large = wide("prod_a", variants: 200)
        let cached = CachedProduct(large)
        #expect(cached.jsonByteCount >= DecodedProducts.minimumJSONBytes / 4 && cached.jsonByteCount < DecodedProducts.minimumJSONBytes)
        let memo = DecodedProducts(byteLimit: 3 * DecodedProducts.minimumJSONBytes)
        // Below the minimum: decoded each time, never held.
        #expect(memo.product(of: cached, tenant: "t") == large)
        #expect(memo.snapshot.products == 0)
        let products = (0..<4).map { wide("prod_\($0)", variants: 800) }
        let values = products.map { CachedProduct($0) }
        #expect(values.allSatisfy { $0.jsonByteCount >= DecodedProducts.minimumJSONBytes && $0.jsonByteCount < 2 * DecodedProducts.minimumJSONBytes })
        memo.remember(products[0], as: values[0], tenant: "t")
        memo.remember(products[1], as: values[1], tenant: "t")
        #expect(memo.snapshot.products == 2)
        // Another value with the same JSON (the feed's copy, say) is decoded, not answered from the entry: then held instead.
        var marked = products[0]
        marked.name = "Held"
        memo.remember(marked, as: values[0], tenant: "t")
        #expect(memo.product(of: values[0], tenant: "t").name == "Held", "the entry answers for its own value")
        #expect(memo.product(of: CachedProduct(products[0]), tenant: "t") == products[0])
        #expect(memo.product(of: values[0], tenant: "t") == products[0], "the decoded copy replaced the entry")
        #expect(memo.product(of: values[1], tenant: "u") == products[1], "tenants are apart")
        // The bound, in bytes of JSON (two of these products): the least recently used goes first.
        let bounded = DecodedProducts(byteLimit: 3 * DecodedProducts.minimumJSONBytes)
        bounded.remember(products[0], as: values[0], tenant: "t")
        bounded.remember(products[1], as: values[1], tenant: "t")
        _ = bounded.product(of: values[0], tenant: "t")
        bounded.remember(products[2], as: values[2], tenant: "t")
        #expect(bounded.holds(values[0], tenant: "t") && !bounded.holds(values[1], tenant: "t") && bounded.holds(values[2], tenant: "t"))
        #expect(bounded.snapshot.products == 2 && bounded.snapshot.jsonBytes <= bounded.byteLimit)
    }

    @Test("a product read from JSON keeps the bytes as sent, whatever the key order, spacing or extra fields")
    func fromJSON() throws {
        let text = """
             { "version": 4, "extra": {"nested": [1, "}"]}, "metadata": {"k": "v"}, "updated_at": "2024-01-01T00:00:00Z",
              "images": ["https://cdn.example/a.png"], "active": false, "description": "Line\\none",
              "type": "physical", "created_at": "2024-01-01T00:00:00Z", "name": "Caf\\u00e9 \\"bar\\"", "id": "prod_9" }
            """
        let cached = try CachedProduct(json: ByteBuffer(string: text))
        #expect(cached.id == "prod_9")
        #expect(cached.name == "Café \"bar\"")
        #expect(cached.version == 4)
        #expect(cached.type == "physical")
        #expect(cached.createdAt == Timestamp.epochMilliseconds("2024-01-01T00:00:00Z"))
        #expect(String(buffer: cached.json) == text.trimmingCharacters(in: .whitespaces))
        #expect(
            cached.product
                == Product(
                    id: "prod_9", name: "Café \"bar\"", type: "physical", description: "Line\none",
                    images: ["https://cdn.example/a.png"], active: false, metadata: ["k": "v"], createdAt: "2024-01-01T00:00:00Z",
                    updatedAt: "2024-01-01T00:00:00Z", version: 4))
        #expect(!cached.active)
        #expect(cached.nameContains(folded: "cafe \"b"))
        #expect(!cached.nameContains(folded: "bar\\"))
    }

    @Test("a product without description, images or active is refused by every reader, naming the field")
    func missingRichFields() throws {
        let full = #"{"id":"prod_1","name":"N","type":"physical","description":null,"images":[],"active":true,"metadata":{},"created_at":"2024-01-01T00:00:00Z","updated_at":"2024-01-01T00:00:00Z","version":2}"#
        #expect(try CachedProduct(json: ByteBuffer(string: full)).product.version == 2)
        for field in ["description", "images", "active"] {
            let text = full.replacingOccurrences(of: field == "description" ? #""description":null,"# : field == "images" ? #""images":[],"# : #""active":true,"#, with: "")
            #expect(throws: JSONSyntaxError.self, "the cache's reader, without \(field)") { try CachedProduct(json: ByteBuffer(string: text)) }
            #expect(throws: (any Error).self, "Codable, without \(field)") { try JSONDecoder().decode(Product.self, from: Data(text.utf8)) }
            #expect(throws: JSONSyntaxError.self, "the strict parser, without \(field)") {
                try ByteBuffer(string: text).withUnsafeReadableBytes { bytes throws(JSONSyntaxError) in
                    var parser = JSONParser(bytes: bytes)
                    _ = try Product(parsing: &parser, param: "product")
                }
            }
        }
    }

    @Test("a page of the Database Service's is read into cached products that match the products it holds")
    func page() throws {
        let page = ProductPage(products: Self.products, hasMore: true)
        let cached = try CachedPage(json: page.json)
        #expect(cached.hasMore)
        #expect(cached.products.map(\.product) == Self.products)
        #expect(cached.products.map(\.json) == Self.products.map(\.json))
        let empty = try CachedPage(json: ProductPage(products: [], hasMore: false).json)
        #expect(empty.products.isEmpty && !empty.hasMore)
    }

    @Test("a page's last id and has_more are read from its last bytes, whatever its names and metadata hold")
    func tail() throws {
        var tricky = Self.products[0]
        tricky.id = "prod_last"
        tricky.name = #"name with ,{"id":"fake"} inside"#
        tricky.metadata = ["id": "not the id", "x": #",{"id":"y"#, "z": #"ends in a backslash \"#, "q": #"\"quoted\" }{ ]["#]
        // Variants are objects that start with their own id, and their options hold brackets and quotes.
        tricky.options = [ProductOption(name: "Size", values: ["S", #"{"id":"M"} \"#])]
        tricky.variants = [
            Variant(id: "var_1", sku: "A", options: ["Size": "S"], prices: [Price(currency: "EUR", amount: 1)], position: 1),
            Variant(id: "var_2", sku: #"B"#, options: ["Size": #"{"id":"M"} \"#], position: 2, metadata: ["k": #"[{"id":"v"}]"#]),
        ]
        for hasMore in [true, false] {
            let page = ProductPage(products: Self.products + [tricky], hasMore: hasMore).json
            #expect(CachedPage.tail(of: page)?.lastID == "prod_last")
            #expect(CachedPage.tail(of: page)?.hasMore == hasMore)
            let empty = CachedPage.tail(of: ProductPage(products: [], hasMore: hasMore).json)
            #expect(empty != nil && empty?.lastID == nil && empty?.hasMore == hasMore)
        }
        #expect(CachedPage.tail(of: ByteBuffer(string: #"{"has_more":true,"products":[]}"#)) == nil, "another layout: parsed instead")
    }

    @Test("a product missing a field or with one of the wrong type is refused, naming it", arguments: [
        (#"{"id":"p","type":"t","version":1,"created_at":"x","updated_at":"x","metadata":{}"#, "product[name]"),
        (#"{"id":"p","name":"n","type":"t","version":1,"created_at":"x","updated_at":"x""#, "product[metadata]"),
        (#"{"id":"p","name":"n","type":"t","version":1,"created_at":"x","metadata":{}"#, "product[updated_at]"),
        (#"{"id":"p","name":"n","type":"t","version":1.5,"created_at":"x","updated_at":"x","metadata":{}"#, "product[version]"),
        (#"{"id":"p","name":"n","type":"t","version":1,"created_at":"x","updated_at":"x","metadata":{"a":1}"#, "product[metadata][a]"),
        (#"{"id":"p","name":7,"type":"t","version":1,"created_at":"x","updated_at":"x","metadata":{}"#, "product[name]"),
        (#"{"id":"p","name":"n","type":"t","version":1,"created_at":"x","updated_at":"x","metadata":{},"images":["a",1]"#, "product[images]"),
    ])
    func refused(json: String, param: String) {
        #expect {
            // The other fields, present and valid, with the one left out or broken.
            let others = [#""description":null"#, #""images":[]"#, #""active":true"#].filter { !json.contains($0.prefix(8)) }
            _ = try CachedProduct(json: ByteBuffer(string: json + "," + others.joined(separator: ",") + "}"))
        } throws: { error in
            "\(error)".contains(param)
        }
    }

    @Test("q matches names in place, ASCII or not, escaped or not, as ProductQuery does on the decoded name")
    func nameSearch() {
        let needles = ["shirt", "SHIRT", "creme", "brulee 🍮", "quoted\" \\", "\n with", "épicée", "missing", "a"]
        for product in Self.products {
            let cached = CachedProduct(product)
            for needle in needles {
                let folded = ProductQuery.fold(needle)
                #expect(
                    cached.nameContains(folded: folded) == ProductQuery.name(product.name, containsFolded: folded),
                    "\(product.name) ∋ \(needle)")
            }
        }
    }
}
