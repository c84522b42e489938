import Foundation
import NIOCore
import Testing
@testable import Shared

/// `Product.fields` is the one description of a product: these tests hold the OpenAPI documents and the readers to it.
@Suite("Product fields")
struct ProductFieldTests {
    typealias Object = [String: Any]

    /// Both services' OpenAPI documents, by service.
    static var documents: [(service: String, document: Object)] {
        ["ProductsService", "DatabaseService"].map { service in
        let url = URL(fileURLWithPath: #filePath + "/../../../Sources/\(service)/Resources/openapi.json").standardized
        let document = (try? JSONSerialization.jsonObject(with: Data(contentsOf: url))) as? Object ?? [:]
        return (service, document)
        }
    }

    static func schema(_ name: String, in document: Object) -> Object? {
        ((document["components"] as? Object)?["schemas"] as? Object)?[name] as? Object
    }

    /// The names of a schema's properties.
    static func properties(_ schema: Object) -> Set<String> { Set((schema["properties"] as? Object)?.keys ?? [:].keys) }

    /// A property's JSON types, `type` given as a string or a list.
    static func types(_ property: Object) -> [String] {
        if let type = property["type"] as? String { return [type] }
        if let types = property["type"] as? [String] { return types }
        if property["$ref"] != nil { return ["object"] }
        return []
    }

    @Test("the Product schema of both documents lists every field, its type and whether it is required")
    func productSchema() throws {
        for (service, document) in Self.documents {
            let product = try #require(Self.schema("Product", in: document), "\(service)")
            #expect(Self.properties(product) == Set(Product.fields.map(\.name)), "\(service): Product's properties")
            let required = Set(product["required"] as? [String] ?? [])
            #expect(required == Set(Product.fields.filter { !$0.added }.map(\.name)), "\(service): Product's required fields")
            for field in Product.fields {
                let property = try #require((product["properties"] as? Object)?[field.name] as? Object)
                #expect(Self.types(property) == field.jsonTypes, "\(service): \(field.name)'s type")
            }
        }
    }

    @Test("the write schemas list exactly the fields a client may set, with their limits")
    func writeSchemas() throws {
        let editable = Set(Product.editableFields.map(\.name))
        let all = Set(Product.fields.map(\.name))
        let expected: [(service: String, schema: String, properties: Set<String>, required: Set<String>)] = [
            ("ProductsService", "ProductCreate", editable, ["name"]),
            ("ProductsService", "ProductReplace", all, ["name"]),
            ("ProductsService", "ProductPatch", all, []),
            ("DatabaseService", "StoredProductInput", all, ["id", "name"]),
        ]
        for (service, name, properties, required) in expected {
            let document = try #require(Self.documents.first { $0.service == service }?.document)
            let schema = try #require(Self.schema(name, in: document), "\(name)")
            #expect(Self.properties(schema) == properties, "\(name)'s properties: \(Self.properties(schema).symmetricDifference(properties))")
            #expect(Set(schema["required"] as? [String] ?? []) == required, "\(name)'s required fields")
            for field in Product.editableFields {
                // A patch may null what it can clear.
                let property = try #require((schema["properties"] as? Object)?[field.name] as? Object)
                if case .texts(_, _, let maxCount, _) = field.kind {
                    #expect(property["maxItems"] as? Int == maxCount, "\(name).\(field.name)'s maxItems")
                }
                if case .textMap(_, _, let maxCount) = field.kind, let maxProperties = property["maxProperties"] as? Int {
                    #expect(maxProperties == maxCount, "\(name).\(field.name)'s maxProperties")
                }
                let types = Self.types(property)
                if name == "ProductPatch", case .texts = field.kind { #expect(types == ["array", "null"], "\(name).\(field.name)") }
                else if name == "ProductPatch", case .structured(let codec) = field.kind { #expect(types == [codec.jsonType, "null"], "\(name).\(field.name)") }
                else if name == "ProductPatch", case .textMap = field.kind { #expect(types == ["object", "null"], "\(name).\(field.name)") }
                else { #expect(types == field.jsonTypes, "\(name).\(field.name)'s type") }
            }
        }
    }

    @Test("listings and exports document every list field's filter, and the listings' parameters are the parser's")
    func filterParameters() throws {
        let routes = [("ProductsService", "/products"), ("DatabaseService", "/api/products"), ("ProductsService", "/exports/products.jsonl")]
        for (service, path) in routes {
            let document = try #require(Self.documents.first { $0.service == service }?.document)
            let operation = try #require(((document["paths"] as? Object)?[path] as? Object)?["get"] as? Object, "\(path)")
            let names = Set((operation["parameters"] as? [Object] ?? []).compactMap { $0["name"] as? String })
            for field in Product.fields { if let parameter = field.anyOfFilter { #expect(names.contains(parameter), "\(path): \(parameter)") } }
            if path != "/exports/products.jsonl" { #expect(names == ProductQuery.parameterNames, "\(path)'s parameters") }
        }
    }

    @Test("field names are unique and found by name; the readers' bit sets hold every field")
    func names() {
        #expect(Set(Product.fields.map(\.name)).count == Product.fields.count)
        #expect(Product.fields.count <= 64, "requiredMask and the readers' seen-sets are 64-bit")
        for (index, field) in Product.fields.enumerated() { #expect(Product.fieldIndex(of: field.name) == index) }
        #expect(Product.fieldIndex(of: "nope") == nil && Product.fields.first?.name == "id")
    }

    @Test("every field round-trips through the writer, the strict reader and Foundation's coding")
    func roundTrip() throws {
        let now = Timestamp.now()
        let product = Product(
            id: "prod_1", name: "Crème \"brûlée\"", type: "food", description: "line\none", images: ["https://example.com/a.png"],
            tags: ["sale", "été"], active: false, metadata: ["k": "v"], createdAt: now, updatedAt: now, version: 7)
        #expect(try Product(json: String(buffer: product.json)) == product)
        #expect(try JSONDecoder().decode(Product.self, from: Data(buffer: product.json)) == product)
        #expect(try Product(json: String(decoding: JSONEncoder().encode(product), as: UTF8.self)) == product)
        #expect(String(buffer: product.json).hasPrefix(#"{"id":"prod_1","name":"#))
        #expect(product.estimatedJSONSize >= product.json.readableBytes / 2)
        // Every field not added later is required, by the strict reader and by Foundation's decoder alike.
        for field in Product.fields where !field.added {
            var object = try #require(try JSONSerialization.jsonObject(with: Data(buffer: product.json)) as? Object)
            object[field.name] = nil
            let text = String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
            #expect(throws: JSONSyntaxError.self, "\(field.name)") { try Product(json: text) }
            #expect(throws: DecodingError.self, "\(field.name)") { try JSONDecoder().decode(Product.self, from: Data(text.utf8)) }
        }
        #expect(throws: JSONSyntaxError.self) { try Product(json: String(buffer: product.json) + " x") }
        // A field added later reads as its default in a product stored without it.
        for field in Product.fields where field.added {
            var object = try #require(try JSONSerialization.jsonObject(with: Data(buffer: product.json)) as? Object)
            object[field.name] = nil
            let data = try JSONSerialization.data(withJSONObject: object)
            var expected = product
            field.copy(from: Product.blank, to: &expected)
            #expect(try Product(json: String(decoding: data, as: UTF8.self)) == expected, "\(field.name)")
            #expect(try JSONDecoder().decode(Product.self, from: data) == expected, "\(field.name)")
        }
    }
}
