import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@testable import ProductsService
import Shared
import TestSupport

/// Options, variants, SKUs, prices, handles and translations through the public routes.
extension RoutesTests {
    func json(_ response: TestResponse) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
    }

    func send(_ client: some TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, _ body: String) async throws -> TestResponse {
        try await client.execute(uri: uri, method: method, headers: [.contentType: "application/json"], body: ByteBuffer(string: body))
    }

    static let shirt = #"""
        {"name":"Crème T-Shirt","options":[{"name":"Size","values":["S","M"]},{"name":"Color","values":["Red"]}],
         "variants":[{"sku":"TS-S","options":{"Size":"S","Color":"Red"},"prices":[{"currency":"EUR","amount":1999}]},
                     {"sku":"TS-M","options":{"Size":"M","Color":"Red"},"prices":[{"currency":"EUR","amount":2199},{"currency":"USD","amount":2399}]}],
         "category_ids":["cat_tops"],
         "translations":{"fr":{"name":"T-shirt crème","options":{"Color":{"name":"Couleur","values":{"Red":"Rouge"}}}}}}
        """#

    @Test("a product with options, variants and prices: ids, positions and a handle are given, and kept across updates")
    func variants() async throws {
        try await withApp { client async throws in
            let created = try await create(client, Self.shirt)
            #expect(created.status == .created)
            let product = try JSONDecoder().decode(Product.self, from: created.body)
            #expect(product.handle == "creme-t-shirt")
            #expect(product.variants.map(\.position) == [1, 2] && product.variants.allSatisfy { $0.id.hasPrefix("var_") })
            #expect(product.variants.map(\.sku) == ["TS-S", "TS-M"] && product.variants[1].prices.count == 2)
            #expect(product.categoryIDs == ["cat_tops"] && product.translations["fr"]?.name == "T-shirt crème")

            // Variants resent without ids keep theirs (matched by options); the handle stays on a replace without one.
            let replaced = try await send(client, .put, "/products/\(product.id)", Self.shirt.replacingOccurrences(of: "Crème T-Shirt", with: "Shirt"))
            #expect(replaced.status == .ok)
            let again = try JSONDecoder().decode(Product.self, from: replaced.body)
            #expect(again.variants.map(\.id) == product.variants.map(\.id) && again.handle == "creme-t-shirt" && again.name == "Shirt")

            // A price change through a patch of the variants keeps them too.
            let patched = try await send(client, .patch, "/products/\(product.id)", #"""
                {"variants":[{"id":"\#(product.variants[0].id)","sku":"TS-S","options":{"Size":"S","Color":"Red"},"prices":[{"currency":"EUR","amount":1499}]}]}
                """#)
            #expect(patched.status == .ok)
            let cheaper = try JSONDecoder().decode(Product.self, from: patched.body)
            #expect(cheaper.variants.map(\.id) == [product.variants[0].id] && cheaper.variants[0].prices[0].amount == 1499)

            // A second product of the same name gets the next handle.
            let second = try JSONDecoder().decode(Product.self, from: try await create(client, #"{"name":"Crème T-shirt!"}"#).body)
            #expect(second.handle == "creme-t-shirt-2")
            let listed = try await client.execute(uri: "/products?limit=10", method: .get)
            #expect(try JSONDecoder().decode([Product].self, from: listed.body).map(\.handle) == ["creme-t-shirt", "creme-t-shirt-2"])
        }
    }

    @Test("a handle or SKU another product holds is 409 naming the holder; nothing is written")
    func conflicts() async throws {
        try await withApp { client async throws in
            let first = try JSONDecoder().decode(Product.self, from: try await create(client, Self.shirt).body)
            let handle = try await create(client, #"{"name":"Other","handle":"creme-t-shirt"}"#)
            #expect(handle.status == .conflict)
            let handleError = try json(handle)
            #expect(handleError["code"] as? String == "handle_taken" && handleError["param"] as? String == "handle")
            #expect((handleError["error"] as? String)?.contains(first.id) == true)

            let sku = try await create(client, #"{"name":"Other","variants":[{"sku":"TS-M"}]}"#)
            #expect(sku.status == .conflict)
            let skuError = try json(sku)
            #expect(skuError["code"] as? String == "sku_taken" && skuError["param"] as? String == "variants[0][sku]")
            #expect((skuError["error"] as? String)?.contains(first.variants[1].id) == true)

            let listed = try await client.execute(uri: "/products", method: .get)
            #expect(try JSONDecoder().decode([Product].self, from: listed.body).count == 1)

            // Once the holder lets the SKU go, another product may take it.
            let freed = try await send(client, .patch, "/products/\(first.id)", #"{"variants":null,"options":null,"translations":null}"#)
            #expect(freed.status == .ok, "\(String(buffer: freed.body))")
            #expect(try await create(client, #"{"name":"Other","variants":[{"sku":"TS-M"}]}"#).status == .created)
        }
    }

    @Test("concurrent creates of one name on one replica: each its own handle, as answered, listed and stored")
    func concurrentHandles() async throws {
        let database = FakeDatabaseService()
        try await withApp(database: database) { client async throws in
            // A big product takes a while to encode after its handle is chosen: the window another create races in.
            let variants = (0..<250).map { #"{"options":{"Size":"S\#($0)"}}"# }.joined(separator: ",")
            let values = (0..<250).map { #""S\#($0)""# }.joined(separator: ",")
            let body = #"{"name":"Twin","options":[{"name":"Size","values":[\#(values)]}],"variants":[\#(variants)]}"#
            let products = try await withThrowingTaskGroup(of: Product.self) { group in
                for _ in 0..<64 {
                    group.addTask {
                        let response = try await self.create(client, body)
                        #expect(response.status == .created, "\(String(buffer: response.body))")
                        return try JSONDecoder().decode(Product.self, from: response.body)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let handles = Set(products.map(\.handle))
            #expect(handles.count == 64, "\(64 - handles.count) handles answered twice")
            #expect(handles.contains("twin") && handles.contains("twin-64"))
            try await eventually("stored as answered") { products.allSatisfy { database.live($0.id)?.handle == $0.handle } }
        }
    }

    @Test("found by handle and by SKU; /variants answers a cart's SKUs in the order asked; ?locale= localizes every read")
    func lookups() async throws {
        try await withApp { client async throws in
            let shirt = try JSONDecoder().decode(Product.self, from: try await create(client, Self.shirt).body)
            _ = try await create(client, #"{"name":"Mug","variants":[{"sku":"MUG-1"}]}"#)

            let byHandle = try await client.execute(uri: "/products?handle=creme-t-shirt", method: .get)
            #expect(try JSONDecoder().decode([Product].self, from: byHandle.body).map(\.id) == [shirt.id])
            #expect(try JSONDecoder().decode([Product].self, from: try await client.execute(uri: "/products?handle=none", method: .get).body).isEmpty)
            let bySKU = try await client.execute(uri: "/products?sku=MUG-1,TS-M", method: .get)
            #expect(try JSONDecoder().decode([Product].self, from: bySKU.body).map(\.name) == ["Crème T-Shirt", "Mug"])

            let variants = try await client.execute(uri: "/variants?sku=TS-M,NOPE,MUG-1,TS-M", method: .get)
            #expect(variants.status == .ok)
            let found = try #require(try JSONSerialization.jsonObject(with: Data(buffer: variants.body)) as? [[String: Any]])
            #expect(found.map { $0["sku"] as? String } == ["TS-M", "MUG-1"])
            #expect(found[0]["product_id"] as? String == shirt.id && (found[0]["variant"] as? [String: Any])?["id"] as? String == shirt.variants[1].id)
            for (uri, param) in [("/variants", "sku"), ("/variants?sku=a,b&color=red", "color"), ("/variants?sku=has%20space", "sku"),
                                 ("/products?locale=french", "locale"), ("/products/\(shirt.id)?locale=x", "locale"), ("/products?handle=A", "handle")] {
                let response = try await client.execute(uri: uri, method: .get)
                let error = try json(response)
                #expect(response.status == .badRequest && error["param"] as? String == param, "\(uri)")
            }

            // fr-CA falls back to fr, field by field; the response says which language it is in.
            let french = try await client.execute(uri: "/products/\(shirt.id)?locale=fr-ca", method: .get)
            #expect(french.headers[.contentLanguage] == "fr-CA")
            let localized = try JSONDecoder().decode(Product.self, from: french.body)
            #expect(localized.name == "T-shirt crème" && localized.options.map(\.name) == ["Size", "Couleur"])
            #expect(localized.variants[0].options == ["Size": "S", "Couleur": "Rouge"])
            let listed = try await client.execute(uri: "/products?locale=fr&handle=creme-t-shirt", method: .get)
            #expect(listed.headers[.contentLanguage] == "fr")
            #expect(try JSONDecoder().decode([Product].self, from: listed.body).map(\.name) == ["T-shirt crème"])
            let exported = try await client.execute(uri: "/exports/products.jsonl?locale=fr", method: .get)
            #expect(String(buffer: exported.body).contains(#""name":"T-shirt crème""#))
            let german = try JSONDecoder().decode(Product.self, from: try await client.execute(uri: "/products/\(shirt.id)?locale=de", method: .get).body)
            #expect(german.name == "Crème T-Shirt")
        }
    }

    @Test("variants one at a time: each change is a new version with If-Match on the product's ETag; 404s and 400s name their param")
    func variantRoutes() async throws {
        try await withApp { client async throws in
            let shirt = try JSONDecoder().decode(Product.self, from: try await create(client, Self.shirt).body)
            let base = "/products/\(shirt.id)/variants"
            let listed = try await client.execute(uri: base, method: .get)
            #expect(try JSONDecoder().decode([Variant].self, from: listed.body) == shirt.variants)
            #expect(listed.headers[.eTag] == EntityTag.product(id: shirt.id, version: 1))

            // A price change of one variant, conditional on the product's version.
            let stale = try await client.execute(
                uri: base + "/\(shirt.variants[0].id)", method: .patch,
                headers: [.contentType: "application/json", .ifMatch: "\"\(shirt.id).v7\""], body: ByteBuffer(string: #"{"prices":[]}"#))
            #expect(stale.status == .preconditionFailed)
            let patched = try await client.execute(
                uri: base + "/\(shirt.variants[0].id)", method: .patch,
                headers: [.contentType: "application/json", .ifMatch: EntityTag.product(id: shirt.id, version: 1)],
                body: ByteBuffer(string: #"{"prices":[{"currency":"EUR","amount":1499}],"metadata":{"note":"sale"}}"#))
            #expect(patched.status == .ok)
            let cheaper = try JSONDecoder().decode(Variant.self, from: patched.body)
            #expect(cheaper.prices == [Price(currency: "EUR", amount: 1499)] && cheaper.sku == "TS-S" && cheaper.metadata == ["note": "sale"])
            let after = try JSONDecoder().decode(Product.self, from: try await client.execute(uri: "/products/\(shirt.id)", method: .get).body)
            #expect(after.version > 1 && patched.headers[.eTag] == EntityTag.product(id: shirt.id, version: after.version))
            #expect(after.variants[1] == shirt.variants[1], "the other variant is untouched")
            let bySKU = try await client.execute(uri: "/variants?sku=TS-S", method: .get)
            let found = try #require(try JSONSerialization.jsonObject(with: Data(buffer: bySKU.body)) as? [[String: Any]])
            #expect(found.count == 1 && ((found[0]["variant"] as? [String: Any])?["prices"] as? [[String: Any]])?.first?["amount"] as? Int == 1499,
                    "a price change keeps the SKU found, with the new price")

            // Added first by its position; then removed, its SKU freed.
            let added = try await send(client, .post, base, #"{"sku":"TS-L","options":{"Size":"S","Color":"Red"}}"#)
            let addedError = try json(added)
            #expect(added.status == .badRequest && addedError["param"] as? String == "options", "a combination held")
            let options = try await send(client, .patch, "/products/\(shirt.id)", #"{"options":[{"name":"Size","values":["S","M","L"]},{"name":"Color","values":["Red"]}]}"#)
            #expect(options.status == .ok)
            let large = try await send(client, .post, base, #"{"sku":"TS-L","position":1,"options":{"Size":"L","Color":"Red"}}"#)
            #expect(large.status == .created)
            let variant = try JSONDecoder().decode(Variant.self, from: large.body)
            #expect(variant.id.hasPrefix("var_") && variant.position == 1)
            #expect(try JSONDecoder().decode([Variant].self, from: try await client.execute(uri: base, method: .get).body).map(\.sku) == ["TS-L", "TS-S", "TS-M"])
            #expect(try await client.execute(uri: base + "/\(variant.id)", method: .get).status == .ok)
            let removed = try await client.execute(uri: base + "/\(variant.id)", method: .delete)
            let receipt = try json(removed)
            #expect(removed.status == .ok && receipt["status"] as? String == "deleted")
            #expect(try await create(client, #"{"name":"Large","variants":[{"sku":"TS-L"}]}"#).status == .created)

            for (method, uri, body, status, param) in [
                (HTTPRequest.Method.get, base + "/var_nope", "", HTTPResponse.Status.notFound, "variant_id"),
                (.patch, base + "/var_nope", "{}", .notFound, "variant_id"),
                (.delete, base + "/var_nope", "", .notFound, "variant_id"),
                (.get, "/products/prod_nope/variants", "", .notFound, "id"),
                (.patch, base + "/\(shirt.variants[0].id)", #"{"prices":[{"currency":"EUR","amount":-1}]}"#, .badRequest, "prices[0][amount]"),
                (.patch, base + "/\(shirt.variants[0].id)", #"{"id":"var_x"}"#, .badRequest, "id"),
                (.patch, base + "/\(shirt.variants[0].id)", #"{"colour":"red"}"#, .badRequest, "variant[colour]"),
                (.patch, base + "/\(shirt.variants[0].id)", #"{"sku":"TS-L"}"#, .conflict, "sku"),
                (.patch, base + "/\(shirt.variants[0].id)", #"{"options":{"Size":"M","Color":"Red"}}"#, .badRequest, "options"),
                (.patch, base + "/\(shirt.variants[0].id)", #"{"sku":"TS-M"}"#, .badRequest, "sku"),
                (.patch, base + "/\(shirt.variants[0].id)", #"{"sku":"MUG-1"}"#, .ok, ""),
            ] {
                let response = try await send(client, method, uri, body)
                #expect(response.status == status, "\(method) \(uri) \(body): \(String(buffer: response.body))")
                if !param.isEmpty {
                    let error = try json(response)
                    #expect(error["param"] as? String == param, "\(uri) \(body)")
                }
            }
        }
    }

    @Test("bad variants, options and translations are 400 naming the param", arguments: [
        (#"{"name":"x","variants":[{"options":{"Size":"S"}}]}"#, "parameter_invalid", "variants[0][options][Size]"),
        (#"{"name":"x","options":[{"name":"Size","values":["S"]}],"variants":[{"options":{"Size":"L"}}]}"#, "parameter_invalid", "variants[0][options][Size]"),
        (#"{"name":"x","variants":[{"prices":[{"currency":"XYZ","amount":1}]}]}"#, "parameter_invalid", "variants[0][prices][0][currency]"),
        (#"{"name":"x","variants":[{"price":1}]}"#, "parameter_unknown", "variants[0][price]"),
        (#"{"name":"x","handle":"Not A Slug"}"#, "parameter_invalid", "handle"),
        (#"{"name":"x","translations":{"fr":{"name":""}}}"#, "parameter_invalid", "translations[fr][name]"),
        (#"{"name":"x","category_ids":"cat_a"}"#, "parameter_invalid", "category_ids"),
    ])
    func badCatalogInput(body: String, code: String, param: String) async throws {
        try await withApp { client async throws in
            let response = try await create(client, body)
            #expect(response.status == .badRequest)
            let error = try json(response)
            #expect(error["code"] as? String == code && error["param"] as? String == param, "\(error)")
        }
    }
}
