import AsyncHTTPClient
import Foundation
import NIOHTTP1
import Shared
import TestSupport
import Testing

/// Updates, concurrency control, cursors, filters, idempotency and strict validation, over real HTTP.
@Suite("Catalog API over HTTP")
struct CatalogAPITests {
    static func json(_ object: [String: Any]) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: object), as: UTF8.self)
    }

    @Test("PATCH replaces given fields and merges metadata; PUT replaces wholesale; both bump the version and persist", arguments: Backend.available)
    func updates(backend: Backend) async throws {
        let stack = try await Stack.started(backend: backend)
        let base = stack.productsURL
        let created = try await stack.create("Shirt", type: "apparel", metadata: ["color": "red", "size": "M"])

        let patched = try await HTTP.send(.PATCH, base + "/products/\(created.id)", body: #"{"name":"  Blue shirt ","metadata":{"color":"blue","size":null,"fit":"slim"}}"#)
        #expect(patched.status == 200, "\(patched.text)")
        let afterPatch = try patched.json(Product.self)
        #expect(afterPatch.name == "Blue shirt")
        #expect(afterPatch.type == "apparel", "fields not given are kept")
        #expect(afterPatch.metadata == ["color": "blue", "fit": "slim"], "merged key by key; null removed a key")
        #expect(afterPatch.version > created.version && afterPatch.version & 1023 != 0, "a new version, stamped with this replica's number")
        #expect(afterPatch.createdAt == created.createdAt)
        #expect(afterPatch.updatedAt > created.updatedAt)
        #expect(patched.headers.first(name: "ETag") == EntityTag.product(id: created.id, version: afterPatch.version))

        // A client may PUT back what it read; the read-only fields are ignored.
        let replaced = try await HTTP.send(
            .PUT, base + "/products/\(created.id)",
            body: Self.json(["id": created.id, "name": "Plain shirt", "version": 1, "created_at": "2000-01-01T00:00:00Z"]))
        #expect(replaced.status == 200, "\(replaced.text)")
        let afterPut = try replaced.json(Product.self)
        #expect(afterPut.name == "Plain shirt" && afterPut.type == "physical" && afterPut.metadata.isEmpty, "replaced wholesale")
        #expect(afterPut.id == created.id && afterPut.createdAt == created.createdAt && afterPut.version > afterPatch.version)

        let cleared = try await HTTP.send(.PATCH, base + "/products/\(afterPut.id)", body: #"{"metadata":{"a":"1"}}"#)
        #expect(try cleared.json(Product.self).metadata == ["a": "1"])
        let emptied = try await HTTP.send(.PATCH, base + "/products/\(afterPut.id)", body: #"{"metadata":null}"#)
        let afterEmptied = try emptied.json(Product.self)
        #expect(try afterEmptied.metadata.isEmpty && afterEmptied.version > cleared.json(Product.self).version)

        #expect(try await HTTP.send(.PUT, base + "/products/\(created.id)", body: #"{"id":"prod_other","name":"x"}"#).error?.param == "id")
        #expect(try await HTTP.send(.PATCH, base + "/products/prod_missing", body: #"{"name":"x"}"#).status == 404)
        #expect(try await HTTP.send(.PUT, base + "/products/prod_missing", body: #"{"name":"x"}"#).status == 404)

        try await stack.waitUntilPersisted()
        let stored = try await HTTP.get(stack.databaseURL + "/api/products/\(created.id)").json(Product.self)
        #expect(stored.version == afterEmptied.version && stored.name == "Plain shirt" && stored.metadata.isEmpty, "updates reach the Database Service")

        // Updates are journaled: they survive a kill -9 while the Database Service is down.
        try await stack.database!.terminate()
        let offline = try await HTTP.send(.PATCH, base + "/products/\(created.id)", body: #"{"name":"Offline edit"}"#)
        #expect(offline.status == 200)
        stack.products!.kill()
        try await stack.startDatabase()
        try await stack.startProducts()
        try await stack.waitForStatus("healthy")
        try await stack.waitUntilPersisted()
        #expect(try await HTTP.get(stack.databaseURL + "/api/products/\(created.id)").json(Product.self).name == "Offline edit")
        await stack.stop()
    }

    @Test("ETags: a stale If-Match after another PATCH is 412 with the current version; If-None-Match gives 304")
    func concurrencyControl() async throws {
        let stack = try await Stack.started()
        let base = stack.productsURL
        let product = try await stack.create("Lamp")
        let url = base + "/products/\(product.id)"
        let read = try await HTTP.get(url)
        let etag = try #require(read.headers.first(name: "ETag"))
        #expect(etag == EntityTag.product(id: product.id, version: 1))

        // Two clients read version 1; the first PATCH wins, the second is refused.
        let first = try await HTTP.send(.PATCH, url, body: #"{"name":"Desk lamp"}"#, headers: [("If-Match", etag)])
        #expect(first.status == 200)
        let second = try await HTTP.send(.PATCH, url, body: #"{"name":"Floor lamp"}"#, headers: [("If-Match", etag)])
        #expect(second.status == 412)
        #expect(second.error?.code == "precondition_failed")
        let winner = try first.json(Product.self).version
        #expect(second.error?.currentVersion == winner)
        #expect(second.headers.first(name: "ETag") == EntityTag.product(id: product.id, version: winner))
        #expect(try await HTTP.get(url).json(Product.self).name == "Desk lamp", "the refused PATCH changed nothing")

        let current = try #require(first.headers.first(name: "ETag"))
        #expect(try await HTTP.send(.PUT, url, body: #"{"name":"x"}"#, headers: [("If-Match", etag)]).status == 412)
        #expect(try await HTTP.send(.PATCH, url, body: #"{"name":"x"}"#, headers: [("If-Match", "W/" + current)]).status == 412, "If-Match is strong")
        #expect(try await HTTP.send(.PATCH, url, body: #"{"name":"x"}"#, headers: [("If-Match", "not-a-tag")]).error?.code == "parameter_invalid")

        // If-None-Match: 304 without a body while it matches, the product once it changed.
        let notModified = try await HTTP.send(.GET, url, headers: [("If-None-Match", current)])
        #expect(notModified.status == 304)
        #expect(notModified.body.readableBytes == 0)
        #expect(notModified.headers.first(name: "ETag") == current)
        #expect(try await HTTP.send(.GET, url, headers: [("If-None-Match", #""other", "# + current)]).status == 304)
        #expect(try await HTTP.send(.GET, url, headers: [("If-None-Match", etag)]).status == 200)

        #expect(try await HTTP.send(.DELETE, url, headers: [("If-Match", etag)]).status == 412)
        #expect(try await HTTP.get(url).status == 200, "the refused DELETE deleted nothing")
        #expect(try await HTTP.send(.DELETE, url, headers: [("If-Match", current)]).status == 200)
        #expect(try await HTTP.get(url).status == 404)
        await stack.stop()
    }

    /// Follows `rel` links from `url` and returns every product seen, page by page.
    static func follow(_ url: String, rel: String) async throws -> [[Product]] {
        var pages: [[Product]] = []
        var next: String? = url
        while let url = next {
            let response = try await HTTP.get(url)
            try #require(response.status == 200, "\(url): \(response.text)")
            pages.append(try response.json([Product].self))
            next = response.headers.first(name: "Link").flatMap { link in
                link.firstMatch(of: try! Regex("<([^>]+)>; rel=\"\(rel)\""))?.output[1].substring.map(String.init)
            }
            if pages.count > 100 { Issue.record("paging does not end"); break }
        }
        return pages
    }

    @Test("paging through 2,500 products with limit=100 visits each exactly once, forwards and backwards", arguments: Backend.available)
    func paging(backend: Backend) async throws {
        let stack = try await Stack.started(backend: backend)
        let base = stack.productsURL
        let created = try await withThrowingTaskGroup(of: [String].self) { group in
            for worker in 0..<10 {
                group.addTask {
                    var ids: [String] = []
                    for index in 0..<250 { ids.append(try await stack.create("Item \(worker)-\(index)").id) }
                    return ids
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }.sorted()
        #expect(created.count == 2500)

        let forwards = try await Self.follow(base + "/products?limit=100", rel: "next")
        #expect(forwards.count == 25)
        #expect(forwards.allSatisfy { $0.count == 100 })
        #expect(forwards.flatMap { $0 }.map(\.id) == created, "each product once, in creation order")

        let lastPage = try await HTTP.get(base + "/products?limit=100&ending_before=\(created.last!)&type=physical")
        #expect(try lastPage.json([Product].self).map(\.id) == Array(created[2399..<2499]), "the 100 before the cursor, oldest first")
        let backwards = try await Self.follow(base + "/products?limit=100&ending_before=zzz", rel: "prev")
        #expect(backwards.count == 25)
        #expect(backwards.reversed().flatMap { $0 }.map(\.id) == created, "each product once going back")

        // The Database Service pages the same way.
        try await stack.waitUntilPersisted()
        var seen: [String] = []
        var cursor = "zzz"
        while true {
            let page = try await HTTP.get(stack.databaseURL + "/api/products?limit=100&ending_before=\(cursor)").json(ProductPage.self)
            seen = page.products.map(\.id) + seen
            guard page.hasMore, let first = page.products.first else { break }
            cursor = first.id
        }
        #expect(seen == created)
        await stack.stop()
    }

    @Test("filters combine with each other, cursors and limit, alike in both services", arguments: Backend.available)
    func filters(backend: Backend) async throws {
        let stack = try await Stack.started(backend: backend)
        let base = stack.productsURL
        var products: [Product] = []
        for index in 0..<30 {
            let name = index % 4 == 0 ? (index % 8 == 0 ? "Rëd Shirt \(index)" : "Red Shirt \(index)") : "Hat \(index)"
            products.append(try await stack.create(name, type: index % 3 == 0 ? "digital" : "physical"))
            if index == 14 { try await Task.sleep(for: .milliseconds(20)) }
        }
        let middle = products[15].createdAt
        let middleSeconds = Int64(Timestamp.parse(middle)!.timeIntervalSince1970.rounded(.up))
        try await stack.waitUntilPersisted()

        func check(_ query: String, _ expected: (Product) -> Bool, line: Int = #line) async throws {
            let want = products.filter(expected).map(\.id)
            let fromProducts = try await HTTP.get(base + "/products?limit=1000&" + query)
            #expect(fromProducts.status == 200, "\(query): \(fromProducts.text)")
            #expect(try fromProducts.json([Product].self).map(\.id) == want, "Products Service: \(query)")
            let fromDatabase = try await HTTP.get(stack.databaseURL + "/api/products?limit=1000&" + query)
            #expect(try fromDatabase.json(ProductPage.self).products.map(\.id) == want, "Database Service: \(query)")
        }
        let someIDs = [products[3].id, products[4].id, products[8].id, "prod_unknown"]
        try await check("type=digital", { $0.type == "digital" })
        try await check("q=red%20SHIRT", { $0.name.contains("Shirt") })
        try await check("q=r%C3%8BD", { $0.name.contains("Shirt") })
        try await check("q=shirt&type=digital", { $0.name.contains("Shirt") && $0.type == "digital" })
        try await check("ids=" + someIDs.joined(separator: ","), { someIDs.contains($0.id) })
        try await check("created%5Bgte%5D=\(middle)", { $0.createdAt >= middle })
        try await check("created%5Bgt%5D=\(middle)", { $0.createdAt > middle })
        try await check("created%5Blt%5D=\(middle)&type=physical", { $0.createdAt < middle && $0.type == "physical" })
        try await check("created%5Blte%5D=\(middle)&starting_after=\(products[5].id)", { $0.createdAt <= middle && $0.id > products[5].id })
        try await check("created%5Bgte%5D=\(middleSeconds)", { Timestamp.parse($0.createdAt)!.timeIntervalSince1970 >= Double(middleSeconds) })
        try await check("q=hat&ending_before=\(products[20].id)", { $0.name.hasPrefix("Hat") && $0.id < products[20].id })

        let limited = try await HTTP.get(base + "/products?q=hat&type=physical&limit=3")
        let hats = products.filter { $0.name.hasPrefix("Hat") && $0.type == "physical" }
        #expect(try limited.json([Product].self).map(\.id) == hats.prefix(3).map(\.id))
        let link = try #require(limited.headers.first(name: "Link"))
        #expect(link.contains("q=hat") && link.contains("type=physical") && link.contains("starting_after=\(hats[2].id)") && link.contains(#"rel="next""#))

        for (query, code, param) in [
            ("starting_after=a&ending_before=b", "parameter_invalid", "ending_before"),
            ("ids=" + (0...100).map { "p\($0)" }.joined(separator: ","), "parameter_invalid", "ids"),
            ("created%5Bgte%5D=last%20week", "parameter_invalid", "created[gte]"),
            ("colour=red", "parameter_unknown", "colour"),
        ] {
            for url in [base + "/products?", stack.databaseURL + "/api/products?"] {
                let response = try await HTTP.get(url + query)
                #expect(response.status == 400 && response.error?.code == code && response.error?.param == param, "\(url)\(query): \(response.text)")
            }
        }
        await stack.stop()
    }

    @Test("an Idempotency-Key replays the first answer, even across kill -9; another body is 422; one product is created", arguments: Backend.available)
    func idempotency(backend: Backend) async throws {
        let stack = try await Stack.started(backend: backend)
        let base = stack.productsURL
        let body = #"{"name":"Once only","metadata":{"sku":"A-1"}}"#
        let first = try await HTTP.send(.POST, base + "/products", body: body, headers: [("Idempotency-Key", "order-42")])
        #expect(first.status == 201, "\(first.text)")
        #expect(first.headers.first(name: "Idempotent-Replayed") == nil)
        let product = try first.json(Product.self)

        let retry = try await HTTP.send(.POST, base + "/products", body: body, headers: [("Idempotency-Key", "order-42")])
        #expect(retry.status == 201)
        #expect(retry.headers.first(name: "Idempotent-Replayed") == "true")
        #expect(try retry.json(Product.self) == product)

        let reused = try await HTTP.send(.POST, base + "/products", body: #"{"name":"Something else"}"#, headers: [("Idempotency-Key", "order-42")])
        #expect(reused.status == 422 && reused.error?.code == "idempotency_key_reused")
        #expect(try await HTTP.send(.POST, base + "/products", body: body, headers: [("Idempotency-Key", "")]).error?.param == "Idempotency-Key")
        #expect(try await HTTP.send(.POST, base + "/products", body: body, headers: [("Idempotency-Key", String(repeating: "k", count: 256))]).status == 400)

        // A failed request does not burn its key.
        let invalid = try await HTTP.send(.POST, base + "/products", body: #"{"name":""}"#, headers: [("Idempotency-Key", "fix-me")])
        #expect(invalid.status == 400)
        #expect(try await HTTP.send(.POST, base + "/products", body: #"{"name":"Fixed"}"#, headers: [("Idempotency-Key", "fix-me")]).status == 201)

        // PATCH: the retry gets the first answer back and does not apply twice.
        let patchURL = base + "/products/\(product.id)"
        let patch = try await HTTP.send(.PATCH, patchURL, body: #"{"name":"Renamed"}"#, headers: [("Idempotency-Key", "rename-1")])
        let renamed = try patch.json(Product.self).version
        #expect(renamed > product.version)
        let patchRetry = try await HTTP.send(.PATCH, patchURL, body: #"{"name":"Renamed"}"#, headers: [("Idempotency-Key", "rename-1")])
        #expect(patchRetry.headers.first(name: "Idempotent-Replayed") == "true")
        #expect(try patchRetry.json(Product.self).version == renamed)
        #expect(try await HTTP.get(patchURL).json(Product.self).version == renamed, "applied once")

        // kill -9 and restart: the key is still remembered.
        stack.products!.kill()
        try await stack.startProducts()
        try await stack.waitForStatus("healthy")
        let afterRestart = try await HTTP.send(.POST, stack.productsURL + "/products", body: body, headers: [("Idempotency-Key", "order-42")])
        #expect(afterRestart.status == 201)
        #expect(afterRestart.headers.first(name: "Idempotent-Replayed") == "true")
        #expect(try afterRestart.json(Product.self).id == product.id)
        try await stack.waitUntilPersisted()
        #expect(try await stack.databaseProducts().filter { $0.metadata["sku"] == "A-1" }.count == 1, "one product created")
        await stack.stop()
    }

    @Test("strict validation: unknown fields, 413, 415, 405 with Allow, metadata limits after a merge")
    func validation() async throws {
        let stack = try await Stack.started()
        let base = stack.productsURL
        let product = try await stack.create("Valid", metadata: Dictionary(uniqueKeysWithValues: (0..<50).map { ("k\($0)", "v") }))
        let url = base + "/products/\(product.id)"
        for (method, target, body) in [
            (HTTPMethod.POST, base + "/products", #"{"name":"x","colour":"red"}"#),
            (.PATCH, url, #"{"colour":"red"}"#),
            (.PUT, url, #"{"name":"x","colour":"red"}"#),
            (.POST, stack.databaseURL + "/api/products", #"{"id":"p1","name":"x","colour":"red"}"#),
        ] {
            let response = try await HTTP.send(method, target, body: body)
            #expect(response.status == 400 && response.error?.code == "parameter_unknown" && response.error?.param == "colour", "\(method) \(target)")
        }
        let tooMany = try await HTTP.send(.PATCH, url, body: #"{"metadata":{"one_more":"v"}}"#)
        #expect(tooMany.status == 400 && tooMany.error?.param == "metadata", "51 keys after the merge")
        let merged = try await HTTP.send(.PATCH, url, body: #"{"metadata":{"k1":null,"one_more":"v"}}"#)
        #expect(merged.status == 200, "50 after removing one")
        let mergedVersion = try merged.json(Product.self).version
        #expect(try await HTTP.send(.PATCH, url, body: #"{"name":"   "}"#).error?.param == "name")
        #expect(try await HTTP.send(.PATCH, url, body: #"{"type":""}"#).error?.param == "type")
        #expect(try await HTTP.send(.PATCH, url, body: #"{"metadata":{"a[b]":"v"}}"#).error?.param == "metadata[a[b]]")
        #expect(try await HTTP.send(.PATCH, url, body: #"{"name":null}"#).error?.param == "name")
        #expect(try await HTTP.send(.PUT, url, body: #"{"type":"x"}"#).error?.code == "parameter_missing")
        #expect(try await HTTP.send(.PUT, url, body: #"{"name":"x","metadata":{"a":null}}"#).error?.param == "metadata[a]")

        let big = String(repeating: "x", count: ProductRules.maxBodyBytes + 1)
        for method in [HTTPMethod.PATCH, .PUT] {
            #expect(try await HTTP.send(method, url, body: #"{"name":"x"}"#, contentType: "text/plain").status == 415)
            #expect(try await HTTP.send(method, url, body: big).status == 413)
        }
        let notAllowed = try await HTTP.send(.POST, url, body: "{}")
        #expect(notAllowed.status == 405)
        #expect(notAllowed.headers.first(name: "Allow")?.contains("PATCH") == true)
        #expect(try await HTTP.get(url).json(Product.self).version == mergedVersion, "nothing half-applied")
        await stack.stop()
    }

    @Test("the Products Service serves the console at /admin: its files as kept in the repository, no inline script, never framed")
    func console() async throws {
        let stack = try await Stack.started()
        let root = URL(fileURLWithPath: #filePath + "/../../..").standardized.path + "/Sources/ProductsService/Resources/admin/"
        let page = try await HTTP.get(stack.productsURL + "/admin")
        #expect(page.status == 200)
        #expect(page.headers.first(name: "Content-Type")?.hasPrefix("text/html") == true)
        #expect(Data(buffer: page.body) == (try Data(contentsOf: URL(fileURLWithPath: root + "index.html"))))
        #expect(!page.text.contains("<script>") && !page.text.contains("style="), "no inline script or style")
        #expect(!page.text.contains("http"), "nothing from elsewhere (a CDN)")
        let policy = try #require(page.headers.first(name: "Content-Security-Policy"))
        #expect(policy.contains("script-src 'self';") && policy.contains("style-src 'self';") && policy.contains("frame-ancestors 'none'"))
        #expect(page.headers.first(name: "X-Content-Type-Options") == "nosniff")
        for (name, type) in [("admin.js", "text/javascript"), ("admin.css", "text/css")] {
            let asset = try await HTTP.get(stack.productsURL + "/admin/assets/" + name)
            #expect(asset.status == 200, "\(name)")
            #expect(asset.headers.first(name: "Content-Type")?.hasPrefix(type) == true, "\(name)")
            #expect(Data(buffer: asset.body) == (try Data(contentsOf: URL(fileURLWithPath: root + name))), "\(name)")
            #expect(asset.headers.first(name: "Content-Security-Policy") == policy)
        }
        #expect(try await HTTP.get(stack.productsURL + "/admin/assets/other.js").status == 404)
        // The console needs no key of its own: it is public, and calls the API with the merchant's.
        let noRedirects = HTTPClient(configuration: .init(redirectConfiguration: .disallow))
        let slashed = try await noRedirects.execute(HTTPClientRequest(url: stack.productsURL + "/admin/"), timeout: .seconds(30))
        #expect(slashed.status == .permanentRedirect && slashed.headers.first(name: "Location") == "../admin")
        try await noRedirects.shutdown()
        await stack.stop()
    }

    @Test("each service serves its repository OpenAPI document at /openapi.json and Swagger UI at /docs")
    func documentation() async throws {
        let stack = try await Stack.started()
        let root = URL(fileURLWithPath: #filePath + "/../../..").standardized.path
        let noRedirects = HTTPClient(configuration: .init(redirectConfiguration: .disallow))
        for (base, target) in [(stack.productsURL, "ProductsService"), (stack.databaseURL, "DatabaseService")] {
            let served = try await HTTP.get(base + "/openapi.json")
            #expect(served.status == 200)
            #expect(served.headers.first(name: "Content-Type")?.hasPrefix("application/json") == true)
            let file = try Data(contentsOf: URL(fileURLWithPath: root + "/Sources/\(target)/Resources/openapi.json"))
            #expect(Data(buffer: served.body) == file, "\(target) serves the document kept in the repository")
            #expect((served.object["openapi"] as? String)?.hasPrefix("3.1") == true)
            let docs = try await HTTP.get(base + "/docs")
            #expect(docs.status == 200)
            #expect(docs.headers.first(name: "Content-Type")?.hasPrefix("text/html") == true)
            #expect(docs.text.contains("docs/assets/swagger-ui-bundle.js") && docs.text.contains("docs/assets/docs.js"))
            #expect(!docs.text.contains("http"), "no file from elsewhere (a CDN): the page works offline")
            #expect(!docs.text.contains("<script>"), "no inline script")
            // Every file the page names is served from the service's resources, as vendored, with the page's policy.
            for (name, type) in [("swagger-ui.css", "text/css"), ("swagger-ui-bundle.js", "text/javascript"), ("docs.js", "text/javascript")] {
                let asset = try await HTTP.get(base + "/docs/assets/" + name)
                #expect(asset.status == 200, "\(name)")
                #expect(asset.headers.first(name: "Content-Type")?.hasPrefix(type) == true, "\(name)")
                let vendored = try Data(contentsOf: URL(fileURLWithPath: root + "/Sources/Shared/Resources/swagger-ui/" + name))
                #expect(Data(buffer: asset.body) == vendored, "\(name)")
                #expect(asset.headers.first(name: "X-Content-Type-Options") == "nosniff")
            }
            let policy = try #require(docs.headers.first(name: "Content-Security-Policy"))
            #expect(policy.contains("script-src 'self';") && policy.contains("frame-ancestors 'none'"))
            #expect(docs.headers.first(name: "X-Content-Type-Options") == "nosniff")
            #expect(try await HTTP.get(base + "/docs/assets/other.js").status == 404)
            // `/docs/` sends the browser to `/docs`, where the page's relative asset paths resolve.
            let slashed = try await noRedirects.execute(HTTPClientRequest(url: base + "/docs/"), timeout: .seconds(30))
            #expect(slashed.status == .permanentRedirect)
            #expect(slashed.headers.first(name: "Location") == "../docs")
            #expect(URL(string: "../docs", relativeTo: URL(string: base + "/docs/"))?.absoluteString == base + "/docs")
        }
        try await noRedirects.shutdown()
        await stack.stop()
    }
}
