import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@testable import ProductsService
import Shared
import TestSupport

@Suite("Products Service routes")
struct RoutesTests {
    /// Runs a test against the app on a fresh data directory and the given Database Service double.
    func withApp(
        database: FakeDatabaseService = FakeDatabaseService(), journal: Bool = true, sync: AppendOnlyFile.Sync? = nil,
        _ test: @escaping @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var settings = ProductsServiceSettings(dataDirectory: directory, journalEnabled: journal)
        settings.persistence.retryBaseDelay = .milliseconds(10)
        settings.persistence.retryMaxDelay = .milliseconds(50)
        settings.syncFlushTimeout = .milliseconds(500)
        if let sync { settings.journalSync = sync }
        let app = try buildApplication(settings: settings, database: database)
        try await app.test(.router, test)
    }

    func create(_ client: some TestClientProtocol, _ json: String) async throws -> TestResponse {
        try await client.execute(uri: "/products", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: json))
    }

    func stats(_ client: some TestClientProtocol) async throws -> [String: Any] {
        let response = try await client.execute(uri: "/cache/stats", method: .get)
        return try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as! [String: Any]
    }

    @Test("create, read, list and delete, persisted to the Database Service in the background")
    func lifecycle() async throws {
        let database = FakeDatabaseService()
        try await withApp(database: database) { client async throws in
            let created = try await create(client, #"{"name":"Lamp","type":"lighting","metadata":{"watts":"60"}}"#)
            #expect(created.status == .created)
            let product = try JSONDecoder().decode(Product.self, from: created.body)
            #expect(product.type == "lighting" && product.version == 1)

            let fetched = try await client.execute(uri: "/products/\(product.id)", method: .get)
            #expect(try JSONDecoder().decode(Product.self, from: fetched.body) == product)
            let listed = try await client.execute(uri: "/products?type=lighting", method: .get)
            #expect(try JSONDecoder().decode([Product].self, from: listed.body) == [product])

            try await eventually("persisted") { database.live(product.id) == product }
            let deleted = try await client.execute(uri: "/products/\(product.id)", method: .delete)
            #expect(deleted.status == .ok)
            try await eventually("delete persisted") { database.live(product.id) == nil && database.batchCount >= 2 }
            #expect(try await client.execute(uri: "/products/\(product.id)", method: .get).status == .notFound)
        }
    }

    @Test("while the Database Service is down, writes are accepted and counted, then drained")
    func outage() async throws {
        let database = FakeDatabaseService()
        database.isDown = true
        try await withApp(database: database) { client async throws in
            for index in 0..<10 { #expect(try await create(client, #"{"name":"P\#(index)"}"#).status == .created) }
            try await eventually("failures counted") {
                let persistence = try await stats(client)["persistence"] as? [String: Any]
                return (persistence?["consecutive_failures"] as? Int ?? 0) >= 2
            }
            let before = try await stats(client)
            #expect(before["pending_writes"] as? Int == 10)
            #expect((before["persistence"] as? [String: Any])?["last_error"] as? String != nil)
            let sync = try await client.execute(uri: "/cache/sync", method: .post)
            #expect(sync.status == .serviceUnavailable, "sync cannot flush while the Database Service is down")
            #expect(sync.headers[.retryAfter] != nil)

            database.isDown = false
            try await eventually("drained") { database.liveCount == 10 }
            try await eventually("no pending") { try await stats(client)["pending_writes"] as? Int == 0 }
            #expect(try await client.execute(uri: "/cache/sync", method: .post).status == .ok)
        }
    }

    @Test("writes the Database Service rejects are dead-lettered and do not wedge the queue")
    func deadLetters() async throws {
        for wholeBatch in [false, true] {
            let database = FakeDatabaseService()
            database.reject(name: "Poison")
            if wholeBatch { database.refuseBatchesWhole() }
            database.isDown = true
            try await withApp(database: database) { client async throws in
                _ = try await create(client, #"{"name":"Good 1"}"#)
                _ = try await create(client, #"{"name":"Poison"}"#)
                _ = try await create(client, #"{"name":"Good 2"}"#)
                database.isDown = false
                try await eventually("good ones persisted") { database.liveCount == 2 }
                try await eventually("queue empty") { try await stats(client)["pending_writes"] as? Int == 0 }
                let letters = (try await stats(client)["persistence"] as? [String: Any])?["dead_letters"] as? [String: Any]
                #expect(letters?["count"] as? Int == 1, "whole batch refused: \(wholeBatch)")
                let recent = letters?["recent"] as? [[String: Any]]
                #expect((recent?.first?["operation"] as? [String: Any])?["op"] as? String == "upsert")
                #expect(recent?.first?["error"] as? String != nil)
                let listed = try await client.execute(uri: "/products", method: .get)
                #expect(try JSONDecoder().decode([Product].self, from: listed.body).map(\.name) == ["Good 1", "Good 2"], "refused write evicted")
            }
        }
    }

    @Test("a product only the Database Service has is read through, listed, and deletable")
    func readThroughAndUncachedDelete() async throws {
        let database = FakeDatabaseService()
        let now = Timestamp.now()
        let stored = Product(id: "prod_stored", name: "Stored", type: "physical", metadata: [:], createdAt: now, updatedAt: now, version: 4)
        try await withApp(database: database) { client async throws in
            try await eventually("loaded") {
                let health = try await client.execute(uri: "/health", method: .get)
                return String(buffer: health.body).contains(#""status":"healthy""#)
            }
            database.seed(stored)
            let fetched = try await client.execute(uri: "/products/prod_stored", method: .get)
            #expect(fetched.status == .ok)
            let deleted = try await client.execute(uri: "/products/prod_stored", method: .delete)
            #expect(deleted.status == .ok)
            database.seed(Product(id: "prod_other", name: "Other", type: "physical", metadata: [:], createdAt: now, updatedAt: now, version: 1))
            let deletedUncached = try await client.execute(uri: "/products/prod_other", method: .delete)
            #expect(deletedUncached.status == .ok)
            #expect(String(buffer: deletedUncached.body).contains(#""name":"Other""#))
            try await eventually("deletes persisted") { database.liveCount == 0 }
        }
    }

    @Test("health: starting until loaded, degraded when the Database Service is unreachable")
    func health() async throws {
        let database = FakeDatabaseService()
        database.isDown = true
        try await withApp(database: database) { client async throws in
            let starting = try await client.execute(uri: "/health", method: .get)
            #expect(String(buffer: starting.body).contains(#""status":"starting""#))
            #expect(String(buffer: starting.body).contains(#""status":"unreachable""#))
            #expect(String(buffer: starting.body).contains(#""reasons":["catalog_loading","database_unreachable"]"#))
            database.isDown = false
            try await eventually("healthy") {
                String(buffer: try await client.execute(uri: "/health", method: .get).body).contains(#""status":"healthy""#)
            }
            #expect(String(buffer: try await client.execute(uri: "/health", method: .get).body).contains(#""reasons":[]"#))
            database.isDown = true
            // The probe is at most a second old. (A starved run may see the feed fall behind as well.)
            try await eventually("degraded") {
                let body = String(buffer: try await client.execute(uri: "/health", method: .get).body)
                return body.contains(#""status":"degraded""#) && body.contains(#""reasons":["database_unreachable""#)
            }
        }
    }

    @Test("syncs racing with creates never drop an acknowledged product from the cache")
    func syncRacingCreates() async throws {
        let database = FakeDatabaseService()
        try await withApp(database: database) { client async throws in
            let created = try await withThrowingTaskGroup(of: [String].self) { group in
                for worker in 0..<4 {
                    group.addTask {
                        var ids: [String] = []
                        for index in 0..<100 {
                            let response = try await create(client, #"{"name":"W\#(worker) \#(index)"}"#)
                            ids.append(try JSONDecoder().decode(Product.self, from: response.body).id)
                        }
                        return ids
                    }
                }
                group.addTask {
                    for _ in 0..<100 { _ = try await client.execute(uri: "/cache/sync", method: .post) }
                    return []
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            let listed = try await client.execute(uri: "/products?limit=1000", method: .get)
            let ids = Set(try JSONDecoder().decode([Product].self, from: listed.body).map(\.id))
            #expect(ids == Set(created))
        }
    }

    @Test("the journal-off mode answers the same way")
    func journalOff() async throws {
        let database = FakeDatabaseService()
        try await withApp(database: database, journal: false) { client async throws in
            #expect(try await create(client, #"{"name":"Volatile"}"#).status == .created)
            try await eventually("persisted") { database.liveCount == 1 }
            let persistence = try await stats(client)["persistence"] as? [String: Any]
            #expect(persistence?["journal"] as? String == "off")
        }
    }

    @Test("after a journal failure, writes are 503, the failed write is nowhere, /health and /readyz say so; once the disk works, writes resume")
    func writeFailure() async throws {
        let faults = SyncFaults()
        try await withApp(sync: faults.sync) { client async throws in
            try await eventually("ready") { try await client.execute(uri: "/readyz", method: .get).status == .ok }
            #expect(try await create(client, #"{"name":"Before"}"#).status == .created)
            faults.failing = true
            let failed = try await create(client, #"{"name":"Phantom"}"#)
            #expect(failed.status == .serviceUnavailable)
            #expect(String(buffer: failed.body).contains(#""code":"journal_unavailable""#))
            let listed = try await client.execute(uri: "/products", method: .get)
            #expect(try JSONDecoder().decode([Product].self, from: listed.body).map(\.name) == ["Before"])
            #expect(try await create(client, #"{"name":"Still failing"}"#).status == .serviceUnavailable, "refused while the fault lasts")
            let health = try await client.execute(uri: "/health", method: .get)
            #expect(health.status == .serviceUnavailable)
            #expect(String(buffer: health.body).contains(#""status":"unhealthy""#))
            #expect(String(buffer: health.body).contains(#""journal_error":"#))
            #expect(String(buffer: health.body).contains(#""journal_unavailable""#))
            let ready = try await client.execute(uri: "/readyz", method: .get)
            #expect(ready.status == .serviceUnavailable)
            #expect(String(buffer: ready.body).contains(#""code":"journal_unavailable""#))

            // The fault gone, the journal takes writes again by itself, and /readyz follows. (How soon is a figure for
            // a quiet machine, not for a test sharing two cores with the whole suite.)
            faults.failing = false
            try await eventually("ready again") { try await client.execute(uri: "/readyz", method: .get).status == .ok }
            #expect(try await create(client, #"{"name":"After"}"#).status == .created)
            let names = try JSONDecoder().decode([Product].self, from: try await client.execute(uri: "/products", method: .get).body).map(\.name)
            #expect(names == ["Before", "After"])
        }
    }

    @Test("ids in the path are percent-decoded, so a product with a space in its id is read through, and deleted")
    func percentEncodedIDs() async throws {
        let database = FakeDatabaseService()
        let now = Timestamp.now()
        database.seed(Product(id: "a b", name: "Spaced", type: "physical", metadata: [:], createdAt: now, updatedAt: now, version: 1))
        try await withApp(database: database) { client async throws in
            let fetched = try await client.execute(uri: "/products/a%20b", method: .get)
            #expect(fetched.status == .ok)
            #expect(String(buffer: fetched.body).contains(#""name":"Spaced""#))
            #expect(try await client.execute(uri: "/products/a%20b", method: .delete).status == .ok)
            #expect(try await client.execute(uri: "/products/a%zzb", method: .get).status == .badRequest)
        }
    }

    @Test("U+0000 in a listing parameter is a 400, also before the catalog is loaded with the Database Service down")
    func nulCharacters() async throws {
        let database = FakeDatabaseService()
        database.isDown = true
        try await withApp(database: database) { client async throws in
            for uri in ["/products?type=a%00b", "/products?q=x%00"] {
                let response = try await client.execute(uri: uri, method: .get)
                #expect(response.status == .badRequest, "\(uri)")
                #expect(String(buffer: response.body).contains(#""code":"parameter_invalid""#), "\(uri)")
            }
        }
    }

    @Test("tags: trimmed, repeats dropped, filtered with ?tag= (any of) on listings and exports, cleared by PATCH null, validated by name")
    func tags() async throws {
        let database = FakeDatabaseService()
        try await withApp(database: database) { client async throws in
            func send(_ method: HTTPRequest.Method, _ uri: String, _ body: String) async throws -> TestResponse {
                try await client.execute(uri: uri, method: method, headers: [.contentType: "application/json"], body: ByteBuffer(string: body))
            }
            func listed(_ query: String) async throws -> [String] {
                try JSONDecoder().decode([Product].self, from: try await client.execute(uri: "/products?" + query, method: .get).body).map(\.name)
            }
            let shirt = try JSONDecoder().decode(Product.self, from: try await create(client, #"{"name":"Shirt","tags":[" summer ","sale","summer"]}"#).body)
            #expect(shirt.tags == ["summer", "sale"])
            _ = try await create(client, #"{"name":"Hat","tags":["winter"]}"#)
            _ = try await create(client, #"{"name":"Plain"}"#)
            #expect(try await listed("tag=sale") == ["Shirt"])
            #expect(try await listed("tag=winter,sale") == ["Shirt", "Hat"])
            #expect(try await listed("tag=winter,sale&q=ha") == ["Hat"])
            #expect(try await listed("tag=Sale").isEmpty, "tags compare exactly")
            let export = try await client.execute(uri: "/exports/products.jsonl?tag=winter", method: .get)
            #expect(String(buffer: export.body).split(separator: "\n").count == 1 && String(buffer: export.body).contains("\"Hat\""))

            let patched = try await send(.patch, "/products/\(shirt.id)", #"{"tags":null}"#)
            #expect(try JSONDecoder().decode(Product.self, from: patched.body).tags.isEmpty)
            #expect(try await listed("tag=sale").isEmpty)
            let replaced = try await send(.put, "/products/\(shirt.id)", #"{"name":"Shirt","tags":["sale"]}"#)
            #expect(try JSONDecoder().decode(Product.self, from: replaced.body).tags == ["sale"])
            try await eventually("persisted") { database.live(shirt.id)?.tags == ["sale"] }

            let many = (0...64).map { #""t\#($0)""# }.joined(separator: ",")
            for (body, param) in [
                (#"{"name":"x","tags":"sale"}"#, "tags"), (#"{"name":"x","tags":["a,b"]}"#, "tags[0]"), (#"{"name":"x","tags":["ok","  "]}"#, "tags[1]"),
                (#"{"name":"x","tags":[1]}"#, "tags[0]"), (#"{"name":"x","tags":[\#(many)]}"#, "tags"),
                (#"{"name":"x","tags":["\#(String(repeating: "t", count: 65))"]}"#, "tags[0]"), (#"{"name":"x","tags":null}"#, "tags"),
            ] {
                let response = try await create(client, body)
                #expect(response.status == .badRequest, "\(body)")
                #expect(try JSONDecoder().decode(APIError.Body.self, from: response.body).param == param, "\(body)")
            }
            for query in ["tag=", "tag=a,,b", "tag=%20"] {
                let response = try await client.execute(uri: "/products?" + query, method: .get)
                #expect(response.status == .badRequest, "\(query)")
                #expect(try JSONDecoder().decode(APIError.Body.self, from: response.body).param == "tag", "\(query)")
            }
        }
    }

    @Test("description, images and active: set on create, kept by PATCH, reset by PUT, filtered with ?active=, validated by name")
    func richFields() async throws {
        let database = FakeDatabaseService()
        try await withApp(database: database) { client async throws in
            let json = #"{"name":"Vase","description":"Blown glass.\nDishwasher safe.","images":["https://cdn.example/v1.jpg","HTTP://cdn.example/v2.jpg?w=200"],"active":false}"#
            let created = try await create(client, json)
            #expect(created.status == .created)
            let product = try JSONDecoder().decode(Product.self, from: created.body)
            #expect(product.description == "Blown glass.\nDishwasher safe." && product.images.count == 2 && !product.active)
            let plain = try JSONDecoder().decode(Product.self, from: try await create(client, #"{"name":"Plain"}"#).body)
            #expect(plain.description == nil && plain.images.isEmpty && plain.active)
            #expect(String(buffer: try await client.execute(uri: "/products/\(plain.id)", method: .get).body)
                .contains(#""description":null,"images":[],"tags":[],"active":true"#))

            let inactive = try await client.execute(uri: "/products?active=false", method: .get)
            #expect(try JSONDecoder().decode([Product].self, from: inactive.body).map(\.id) == [product.id])
            let active = try await client.execute(uri: "/products?active=true", method: .get)
            #expect(try JSONDecoder().decode([Product].self, from: active.body).map(\.id) == [plain.id])
            #expect(try await client.execute(uri: "/products?active=yes", method: .get).status == .badRequest)

            let patched = try await client.execute(
                uri: "/products/\(product.id)", method: .patch, headers: [.contentType: "application/json"],
                body: ByteBuffer(string: #"{"active":true,"description":null}"#))
            let afterPatch = try JSONDecoder().decode(Product.self, from: patched.body)
            #expect(afterPatch.active && afterPatch.description == nil && afterPatch.images == product.images)
            let cleared = try await client.execute(
                uri: "/products/\(product.id)", method: .patch, headers: [.contentType: "application/json"],
                body: ByteBuffer(string: #"{"images":null}"#))
            #expect(try JSONDecoder().decode(Product.self, from: cleared.body).images.isEmpty)
            let replaced = try await client.execute(
                uri: "/products/\(plain.id)", method: .put, headers: [.contentType: "application/json"],
                body: ByteBuffer(string: #"{"name":"Plain","images":["https://cdn.example/p.png"]}"#))
            #expect(try JSONDecoder().decode(Product.self, from: replaced.body).images == ["https://cdn.example/p.png"])
            try await eventually("persisted") { database.live(plain.id)?.images == ["https://cdn.example/p.png"] }

            let nine = (0..<9).map { #""https://cdn.example/\#($0).png""# }.joined(separator: ",")
            let longURL = "https://cdn.example/" + String(repeating: "a", count: 2_030)
            for (body, param) in [
                (#"{"name":"X","images":[\#(nine)]}"#, "images"),
                (#"{"name":"X","images":["https://ok.example/a.png","ftp://cdn.example/a.png"]}"#, "images[1]"),
                (#"{"name":"X","images":["https:///path"]}"#, "images[0]"),
                (#"{"name":"X","images":["http://[abc/x.png"]}"#, "images[0]"),
                (#"{"name":"X","images":["https://cdn.example/a b.png"]}"#, "images[0]"),
                (#"{"name":"X","images":["\#(longURL)"]}"#, "images[0]"),
                (#"{"name":"X","images":[1]}"#, "images[0]"),
                (#"{"name":"X","images":"https://cdn.example/a.png"}"#, "images"),
                (#"{"name":"X","description":"\#(String(repeating: "é", count: 40_001))"}"#, "description"),
                (#"{"name":"X","description":"a\u0000b"}"#, "description"),
                (#"{"name":"X","active":"yes"}"#, "active"),
                (#"{"name":"X","active":null}"#, "active"),
            ] {
                let response = try await create(client, body)
                #expect(response.status == .badRequest, "\(param)")
                let error = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]
                #expect(error?["param"] as? String == param, "\(body.prefix(80))")
            }
            #expect(try await create(client, #"{"name":"X","description":"\#(String(repeating: "é", count: 40_000))"}"#).status == .created)
        }
    }
}
