import AsyncHTTPClient
import Foundation
import GRDB
import Shared
import Testing

/// Both services started for real, driven over HTTP: every endpoint and every bad input.
@Suite("Stack over HTTP")
struct StackTests {
    @Test("every Products Service endpoint answers as documented", arguments: Backend.available)
    func everyEndpoint(backend: Backend) async throws {
        let stack = try await Stack.started(backend: backend)
        let base = stack.productsURL

        let index = try await HTTP.get(base + "/")
        #expect(index.status == 200)
        #expect(index.object["service"] as? String == "products-service")
        #expect((index.object["endpoints"] as? [String: String])?["POST /products"] != nil)

        let widget = try await stack.create("  Widget ", metadata: ["color": "red"])
        #expect(widget.name == "Widget")
        #expect(widget.type == "physical")
        #expect(widget.metadata == ["color": "red"])
        #expect(widget.version == 1)
        #expect(widget.id.wholeMatch(of: /prod_[0-9A-HJKMNP-TV-Z]{26}/) != nil)
        #expect(widget.createdAt.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/) != nil)
        let gadget = try await stack.create("Gadget", type: "digital")
        let gizmo = try await stack.create("Gizmo")

        let listed = try await stack.listedProducts()
        #expect(listed.map(\.id) == [widget.id, gadget.id, gizmo.id], "creation order, oldest first")
        #expect(try await HTTP.get(base + "/products?type=digital").json([Product].self).map(\.id) == [gadget.id])
        #expect(try await HTTP.get(base + "/products?limit=2").json([Product].self).map(\.id) == [widget.id, gadget.id])

        let fetched = try await HTTP.get(base + "/products/\(gadget.id)")
        #expect(fetched.status == 200)
        #expect(try fetched.json(Product.self) == gadget)

        let stats = try await HTTP.get(base + "/cache/stats").object
        #expect(stats["total_products"] as? Int == 3)
        #expect((stats["product_types"] as? [String: Int]) == ["physical": 2, "digital": 1])
        #expect((stats["hits"] as? Int ?? 0) >= 1)
        for key in ["memory_usage_kb", "memory_usage_mb", "misses", "pending_writes", "timestamp"] {
            #expect(stats[key] != nil, "stats has \(key)")
        }

        let deleted = try await HTTP.delete(base + "/products/\(gizmo.id)")
        #expect(deleted.status == 200)
        #expect(deleted.object["status"] as? String == "deleted")
        #expect(deleted.object["product_id"] as? String == gizmo.id)
        #expect(deleted.object["name"] as? String == "Gizmo")
        #expect(deleted.object["timestamp"] != nil)
        #expect(try await HTTP.get(base + "/products/\(gizmo.id)").status == 404)
        #expect(try await HTTP.delete(base + "/products/\(gizmo.id)").status == 404)

        let sync = try await HTTP.send(.POST, base + "/cache/sync")
        #expect(sync.status == 200)
        #expect(sync.object["cache_size"] as? Int == 2)
        #expect(sync.object["synced"] != nil && sync.object["timestamp"] != nil)

        let health = try await HTTP.get(base + "/health").object
        #expect(health["status"] as? String == "healthy")
        #expect(health["service"] as? String == "products-service")
        #expect(health["cache_entries"] as? Int == 2)
        let database = health["database_service"] as? [String: Any]
        #expect(database?["status"] as? String == "connected")
        #expect(database?["url"] as? String == stack.databaseURL)
        #expect(database?["latency_ms"] is Double)
        await stack.stop()
    }

    @Test("CORS headers on every Products Service response, errors included, and preflight answers 204; none from the Database Service")
    func cors() async throws {
        let stack = try await Stack.started()
        for url in [stack.productsURL + "/products", stack.productsURL + "/products/prod_missing", stack.productsURL + "/nope"] {
            let response = try await HTTP.get(url)
            #expect(response.headers["Access-Control-Allow-Origin"].first == "*", "\(url)")
            #expect(response.headers["Access-Control-Allow-Methods"].first?.contains("DELETE") == true, "\(url)")
        }
        let database = try await HTTP.get(stack.databaseURL + "/api/products/missing")
        #expect(database.headers["Access-Control-Allow-Origin"].isEmpty, "the Database Service is not for browsers")
        let preflight = try await HTTP.send(
            .OPTIONS, stack.productsURL + "/products",
            headers: [("Origin", "https://shop.example"), ("Access-Control-Request-Method", "POST")])
        #expect(preflight.status == 204)
        #expect(preflight.headers["Access-Control-Allow-Headers"].first?.contains("Content-Type") == true)
        await stack.stop()
    }

    @Test("a product written to the Database Service directly is served (by the change feed, or read through on a miss), odd ids included", arguments: Backend.available)
    func readThrough(backend: Backend) async throws {
        let stack = try await Stack.started(backend: backend)
        let direct = try await HTTP.post(
            stack.databaseURL + "/api/products", json: #"{"id":"prod_direct","name":"Only in the DB","type":"digital"}"#)
        #expect(direct.status == 201)
        let first = try await HTTP.get(stack.productsURL + "/products/prod_direct")
        #expect(first.status == 200)
        #expect(try first.json(Product.self).name == "Only in the DB")
        let stats = try await HTTP.get(stack.productsURL + "/cache/stats").object
        #expect((stats["misses"] as? Int ?? 0) <= 1, "the feed may have brought it before the read")
        #expect(try await stack.listedProducts().map(\.id) == ["prod_direct"], "cached")
        #expect(try await HTTP.get(stack.productsURL + "/products/prod_absent").status == 404)
        // An id that must be escaped in a path is read through and deleted by its escaped form, end to end.
        #expect(try await HTTP.post(stack.databaseURL + "/api/products", json: #"{"id":"odd id/50%","name":"Odd"}"#).status == 201)
        let odd = try await HTTP.get(stack.productsURL + "/products/odd%20id%2F50%25")
        #expect(odd.status == 200)
        #expect(try odd.json(Product.self).id == "odd id/50%")
        #expect(try await HTTP.delete(stack.productsURL + "/products/odd%20id%2F50%25").status == 200)
        try await stack.waitUntilPersisted()
        #expect(try await HTTP.get(stack.databaseURL + "/api/products/odd%20id%2F50%25").status == 404)
        await stack.stop()
    }

    @Test("creates and deletes reach the SQLite file")
    func persistedToSQLite() async throws {
        let stack = try await Stack.started()
        let kept = try await stack.create("Kept", metadata: ["size": "L"])
        let removed = try await stack.create("Removed")
        #expect(try await HTTP.delete(stack.productsURL + "/products/\(removed.id)").status == 200)
        try await stack.waitUntilPersisted()

        let database = try DatabaseQueue(path: stack.sqlitePath, configuration: { var c = Configuration(); c.readonly = true; return c }())
        let rows = try database.read { db in
            try Row.fetchAll(db, sql: "SELECT id, name, body, version, deleted FROM products ORDER BY id")
        }
        #expect(rows.count == 2)
        let keptRow = try #require(rows.first { $0["id"] == kept.id })
        #expect(keptRow["name"] == "Kept")
        #expect(keptRow["deleted"] == false)
        #expect((keptRow["body"] as String).contains("\"size\":\"L\""))
        let tombstone = try #require(rows.first { $0["id"] == removed.id })
        #expect(tombstone["deleted"] == true, "a delete leaves a tombstone")
        #expect((tombstone["version"] as Int64) > removed.version)
        #expect(try await HTTP.get(stack.databaseURL + "/api/products/\(removed.id)").status == 404)
        await stack.stop()
    }

    @Test("a product only in the Database Service can be deleted through the Products Service", arguments: Backend.available)
    func deleteUncached(backend: Backend) async throws {
        let stack = try await Stack.started(backend: backend)
        _ = try await HTTP.post(stack.databaseURL + "/api/products", json: #"{"id":"prod_dbonly","name":"DB only"}"#)
        let deleted = try await HTTP.delete(stack.productsURL + "/products/prod_dbonly")
        #expect(deleted.status == 200)
        #expect(deleted.object["name"] as? String == "DB only")
        try await stack.waitUntilPersisted()
        #expect(try await HTTP.get(stack.databaseURL + "/api/products/prod_dbonly").status == 404)
        #expect(try await HTTP.get(stack.productsURL + "/products/prod_dbonly").status == 404)
        await stack.stop()
    }

    @Test("with the Database Service down, writes are accepted, and persisted once it is back")
    func databaseDown() async throws {
        let stack = try Stack()
        try await stack.startProducts()
        try await stack.waitForStatus("starting")
        let health = try await HTTP.get(stack.productsURL + "/health").object
        #expect((health["database_service"] as? [String: Any])?["status"] as? String == "unreachable")

        var created: [Product] = []
        for index in 0..<20 { created.append(try await stack.create("Offline \(index)")) }
        #expect(try await HTTP.get(stack.productsURL + "/products/\(created[3].id)").status == 200, "reads keep working")
        #expect(try await HTTP.get(stack.productsURL + "/cache/stats").object["pending_writes"] as? Int == 20)

        try await stack.startDatabase()
        try await stack.waitUntilPersisted()
        try await stack.waitForStatus("healthy")
        #expect(Set(try await stack.databaseProducts().map(\.id)) == Set(created.map(\.id)))
        await stack.stop()
    }

    @Test("POST /cache/sync adds what the Database Service has beyond the first 1000, and drops what it deleted")
    func syncAllPages() async throws {
        let stack = try await Stack.started()
        let mine = try await stack.create("Made here")
        let now = Timestamp.now()
        for chunk in 0..<3 {
            let operations = (0..<500).map { index in
                WriteOperation.upsert(
                    tenant: defaultTenant,
                    product: Product(
                        id: String(format: "prod_bulk%02d%04d", chunk, index), name: "Bulk \(index)", type: "bulk", metadata: [:],
                        createdAt: now, updatedAt: now, version: 1))
            }
            let body = String(decoding: try JSONEncoder().encode(WriteBatch(operations: operations)), as: UTF8.self)
            #expect(try await HTTP.post(stack.databaseURL + "/api/products/batch", json: body).status == 200)
        }
        try await stack.waitUntilPersisted()
        #expect(try await HTTP.delete(stack.databaseURL + "/api/products/\(mine.id)").status == 200)

        let sync = try await HTTP.send(.POST, stack.productsURL + "/cache/sync")
        #expect(sync.status == 200)
        #expect(sync.object["cache_size"] as? Int == 1500)
        #expect(try await HTTP.get(stack.productsURL + "/products/\(mine.id)").status == 404, "deleted in the DB, dropped from the cache")
        let stats = try await HTTP.get(stack.productsURL + "/cache/stats").object
        #expect((stats["product_types"] as? [String: Int]) == ["bulk": 1500])
        await stack.stop()
    }

    @Test("journal off: writes are memory-only until persisted, and still reach the Database Service")
    func journalOff() async throws {
        let stack = try await Stack.started(["--journal", "off"])
        let product = try await stack.create("Volatile")
        try await stack.waitUntilPersisted()
        #expect(try await HTTP.get(stack.databaseURL + "/api/products/\(product.id)").status == 200)
        #expect(!FileManager.default.fileExists(atPath: stack.dataDirectory + "/journal"))
        let stats = try await HTTP.get(stack.productsURL + "/cache/stats").object
        #expect((stats["persistence"] as? [String: Any])?["journal"] as? String == "off")
        await stack.stop()
    }
}
