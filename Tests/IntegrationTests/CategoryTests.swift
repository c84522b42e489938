import Foundation
import NIOHTTP1
import Shared
import TestSupport
import Testing

/// `/categories` and `?category=` over real HTTP, on both backends.
@Suite("Categories over HTTP")
struct CategoryTests {
    @Test("a category tree: CRUD with cursors, products in it listed with descendants, 400s and 409s naming their param",
          arguments: Backend.available)
    func tree(backend: Backend) async throws {
        let stack = try await Stack.started(backend: backend)
        let base = stack.productsURL
        let tops = try await HTTP.post(base + "/categories", json: #"{"name":"Tops"}"#)
        #expect(tops.status == 201, "\(tops.text)")
        let topsID = try tops.json(Category.self).id
        let shirts = try await HTTP.post(base + "/categories", json: #"{"name":"Shirts","parent_id":"\#(topsID)","position":2}"#)
        #expect(shirts.status == 201)
        let shirtsID = try shirts.json(Category.self).id
        #expect(try shirts.json(Category.self).handle == "shirts" && topsID.hasPrefix("cat_"))

        let shirt = try await HTTP.post(base + "/products", json: #"{"name":"Shirt","category_ids":["\#(shirtsID)"]}"#)
        #expect(shirt.status == 201, "\(shirt.text)")
        _ = try await stack.create("Uncategorized")
        let unknown = try await HTTP.post(base + "/products", json: #"{"name":"Lost","category_ids":["cat_nope"]}"#)
        #expect(unknown.status == 400 && unknown.error?.param == "category_ids[0]", "\(unknown.text)")

        let listed = try await HTTP.get(base + "/products?category=\(topsID)").json([Product].self)
        #expect(listed.map(\.name) == ["Shirt"], "a descendant's products are the category's too")
        #expect(try await HTTP.get(base + "/products?category=cat_nope").json([Product].self).isEmpty)
        let exported = try await HTTP.get(base + "/exports/products.jsonl?category=\(shirtsID)")
        #expect(exported.text.split(separator: "\n").count == 1)

        let page = try await HTTP.get(base + "/categories?limit=1")
        #expect(try page.json([Category].self).map(\.id) == [topsID])
        let next = try #require(page.headers.first(name: "Link")).dropFirst().prefix { $0 != ">" }
        #expect(try await HTTP.get(String(next)).json([Category].self).map(\.id) == [shirtsID])
        #expect(try await HTTP.get(base + "/categories?parent_id=root").json([Category].self).map(\.id) == [topsID])

        for (method, path, body, status, code, param) in [
            (HTTPMethod.DELETE, "/categories/\(topsID)", nil as String?, 409, "category_not_empty", "id"),
            (.PATCH, "/categories/\(topsID)", #"{"parent_id":"\#(shirtsID)"}"#, 400, "parameter_invalid", "parent_id"),
            (.PATCH, "/categories/\(shirtsID)", #"{"handle":"tops"}"#, 409, "handle_taken", "handle"),
            (.POST, "/categories", #"{"name":"X","parent_id":"cat_nope"}"#, 400, "parameter_invalid", "parent_id"),
            (.POST, "/categories", #"{"parent_id":null}"#, 400, "parameter_missing", "name"),
            (.POST, "/categories", #"{"name":"X","colour":"red"}"#, 400, "parameter_unknown", "category[colour]"),
            (.GET, "/categories/cat_nope", nil, 404, "resource_missing", "id"),
            (.GET, "/categories/not-an-id", nil, 404, "resource_missing", "id"),
            (.GET, "/categories?limit=0", nil, 400, "parameter_invalid", "limit"),
            (.GET, "/products?category=shirts", nil, 400, "parameter_invalid", "category"),
        ] {
            let response = try await HTTP.send(method, base + path, body: body)
            #expect(response.status == status && response.error?.code == code && response.error?.param == param, "\(method) \(path): \(response.text)")
        }
        let renamed = try await HTTP.send(.PATCH, base + "/categories/\(shirtsID)", body: #"{"name":"T-shirts","parent_id":null}"#)
        #expect(try renamed.json(Category.self).parentID == nil && (try renamed.json(Category.self)).name == "T-shirts")
        #expect(try await HTTP.delete(base + "/categories/\(topsID)").status == 200, "no children and no products left")
        await stack.stop()
    }
}
