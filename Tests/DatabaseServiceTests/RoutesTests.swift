import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
@testable import DatabaseService
import Shared

@Suite("Database Service routes")
struct RoutesTests {
    func withApp(
        serviceToken: String? = nil, _ test: @escaping @Sendable (any TestClientProtocol, SQLiteStore) async throws -> Void
    ) async throws {
        let (store, directory) = try makeStore()
        defer { try? FileManager.default.removeItem(at: directory) }
        let app = try buildApplication(settings: DatabaseServiceSettings(serviceToken: serviceToken), store: store)
        try await app.test(.router) { client in try await test(client, store) }
    }

    func withApp(_ test: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        try await withApp(serviceToken: nil) { client, _ in try await test(client) }
    }

    @Test("PUT /api/writers/{node}/backlog keeps a replica's report (204), GET /api/writers/backlogs lists them; bad ones are 400 naming the param")
    func backlogReports() async throws {
        try await withApp { client async throws in
            func put(_ uri: String, _ json: String) async throws -> TestResponse {
                try await client.execute(uri: uri, method: .put, headers: [.contentType: "application/json"], body: ByteBuffer(string: json))
            }
            #expect(try await put("/api/writers/12/backlog", #"{"clear_through_ms":1780000000000}"#).status == .noContent)
            let listed = try await client.execute(uri: "/api/writers/backlogs", method: .get)
            let reports = try JSONDecoder().decode(WriterBacklogList.self, from: listed.body).data
            #expect(reports.map(\.node) == [12] && reports.first?.clearThroughMs == 1_780_000_000_000)
            for (uri, json, param) in [
                ("/api/writers/0/backlog", #"{"clear_through_ms":1}"#, "node"), ("/api/writers/1024/backlog", #"{"clear_through_ms":1}"#, "node"),
                ("/api/writers/x/backlog", #"{"clear_through_ms":1}"#, "node"), ("/api/writers/5/backlog", #"{"clear_through_ms":-1}"#, "clear_through_ms"),
                ("/api/writers/5/backlog", #"{"clear_through_ms":"1"}"#, "clear_through_ms"), ("/api/writers/5/backlog", #"{}"#, "clear_through_ms"),
                ("/api/writers/5/backlog", #"{"clear_through_ms":1,"x":2}"#, "x"),
            ] {
                let response = try await put(uri, json)
                let body = try JSONDecoder().decode(APIError.Body.self, from: response.body)
                #expect(response.status == .badRequest && body.param == param, "\(uri) \(json): \(response.status) \(String(buffer: response.body))")
            }
        }
    }

    @Test("with a service token, every /api route refuses a missing or wrong token, and answers the right one")
    func serviceToken() async throws {
        try await withApp(serviceToken: "t0ken-for-tests") { client, store async throws in
            for (method, uri) in [
                (HTTPRequest.Method.get, "/api/products"), (.get, "/api/products/p1"), (.delete, "/api/products/p1"),
                (.post, "/api/products/batch"), (.post, "/api/products"), (.get, "/api/keys/status"), (.post, "/api/keys/verify"),
                (.get, "/api/tenants"),
            ] {
                for headers: HTTPFields in [[:], [.authorization: "Bearer wrong"], [.authorization: "t0ken-for-tests"]] {
                    let response = try await client.execute(uri: uri, method: method, headers: headers)
                    #expect(response.status == .unauthorized, "\(method) \(uri)")
                    #expect(!String(buffer: response.body).contains("t0ken"), "the token is never echoed")
                }
            }
            #expect(try await client.execute(uri: "/health", method: .get).status == .ok, "health stays public")
            let authorized: HTTPFields = [.authorization: "Bearer t0ken-for-tests", .tenantID: "acme"]
            #expect(try await client.execute(uri: "/api/products", method: .get, headers: authorized).status == .ok)

            let (grant, key) = try await store.keys.createKey(tenant: "acme", scope: .readOnly)
            let status = try await client.execute(uri: "/api/keys/status", method: .get, headers: authorized)
            #expect(String(buffer: status.body) == #"{"active_keys":1}"#)
            let verify = try await post(client, "/api/keys/verify", #"{"key_hash":"\#(APIKey.hash(key))"}"#, headers: authorized)
            #expect(try JSONDecoder().decode(KeyGrant.self, from: verify.body) == grant)
            #expect(try await post(client, "/api/keys/verify", #"{"key_hash":"\#(APIKey.hash("sk_nope"))"}"#, headers: authorized).status == .notFound)
            #expect(try await post(client, "/api/keys/verify", #"{"key_hash":"\#(key)"}"#, headers: authorized).status == .badRequest)
            let tenants = try await client.execute(uri: "/api/tenants", method: .get, headers: authorized)
            #expect(String(buffer: tenants.body) == #"{"tenants":["acme"]}"#)
        }
    }

    @Test("GET /api/changes after a cursor the log does not reach (the database went back) is 410 cursor_ahead; at the head it is an empty page")
    func cursorAhead() async throws {
        try await withApp { client async throws in
            func changes(after cursor: String) async throws -> TestResponse {
                try await client.execute(uri: "/api/changes?after=\(cursor)&wait=0", method: .get)
            }
            #expect(try await changes(after: "0.0").status == .ok)
            let ahead = try await changes(after: "0.7")
            #expect(ahead.status == .gone)
            let error = try JSONDecoder().decode(APIError.Body.self, from: ahead.body)
            #expect(error.code == "cursor_ahead" && error.param == "after")

            let now = Timestamp.now()
            let product = #"{"id":"p1","name":"One","type":"shirt","description":null,"images":[],"active":true,"metadata":{},"created_at":"\#(now)","updated_at":"\#(now)","version":1}"#
            let batch = try await post(client, "/api/products/batch", #"{"operations":[{"op":"upsert","tenant":"default","product":\#(product)}]}"#)
            #expect(batch.status == .ok && String(buffer: batch.body).contains(#""outcome":"applied""#), "\(String(buffer: batch.body))")
            let head = try JSONDecoder().decode(ChangeHead.self, from: try await client.execute(uri: "/api/changes/head", method: .get).body).cursor
            #expect(head > .start)
            let atHead = try await changes(after: head.description)
            #expect(atHead.status == .ok && String(buffer: atHead.body).contains(#""changes":[]"#))
            let past = ChangeCursor(transaction: head.transaction, position: head.position + 1)
            #expect(try await changes(after: past.description).status == .gone)
            #expect(try await changes(after: ChangeCursor.start.description).status == .ok, "a cursor behind the head reads on")
        }
    }

    func post(_ client: some TestClientProtocol, _ uri: String, _ json: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        var headers = headers
        headers[.contentType] = "application/json"
        return try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: json))
    }

    @Test("POST /api/products/write: applied, replayed, key_reused, precondition_failed; an answer that no status could be is a 400")
    func coordinatedWrites() async throws {
        try await withApp { client async throws in
            let now = Timestamp.now()
            func write(_ name: String, key: String, fingerprint: String = "f1", status: Int = 201, expected: String = "") -> String {
                let product = #"{"id":"p1","name":"\#(name)","type":"t","description":null,"images":[],"active":true,"metadata":{},"created_at":"\#(now)","updated_at":"\#(now)","version":\#(name.count)}"#
                return #"{"operation":{"op":"upsert","tenant":"default","product":\#(product)},\#(expected)"#
                    + #""idempotency":{"key":"\#(key)","fingerprint":"\#(fingerprint)","status":\#(status),"body":"{}","etag":"e","created_at":\#(Timestamp.nowMilliseconds())}}"#
            }
            func outcome(_ json: String) async throws -> CoordinatedResult {
                let response = try await post(client, "/api/products/write", json)
                #expect(response.status == .ok, "\(String(buffer: response.body))")
                return try JSONDecoder().decode(CoordinatedResult.self, from: response.body)
            }
            #expect(try await outcome(write("One", key: "k1")).outcome == .applied)
            let replay = try await outcome(write("One", key: "k1"))
            #expect(replay.outcome == .replayed && replay.answer?.status == 201)
            #expect(try await outcome(write("One", key: "k1", fingerprint: "other")).outcome == .keyReused)
            let stale = try await outcome(write("Three", key: "k2", expected: #""expected_version":2,"#))
            #expect(stale.outcome == .preconditionFailed && stale.storedVersion == 3 && stale.deleted == false)
            #expect(try await outcome(write("Two", key: "k3", expected: #""expected_version":3,"#)).outcome == .stale, "the same version")
            let changes = try await client.execute(uri: "/api/changes", method: .get)
            #expect(try JSONDecoder().decode(ChangePage.self, from: changes.body).changes.count == 1, "only the applied write is logged")

            let bad = try await post(client, "/api/products/write", write("Five", key: "k4", status: -27_733_781_367_016_336))
            #expect(bad.status == .badRequest)
            #expect(try JSONDecoder().decode(APIError.Body.self, from: bad.body).param == "idempotency.status")
        }
    }

    @Test("POST upserts: 201 created, 200 on an idempotent retry or a newer version, 409 when older")
    func upsert() async throws {
        try await withApp { client async throws in
            #expect(try await post(client, "/api/products", #"{"id":"p1","name":"Lamp"}"#).status == .created)
            #expect(try await post(client, "/api/products", #"{"id":"p1","name":"Lamp"}"#).status == .ok)
            #expect(try await post(client, "/api/products", #"{"id":"p1","name":"Lamp 2","version":2}"#).status == .ok)
            let stale = try await post(client, "/api/products", #"{"id":"p1","name":"Old","version":1}"#)
            #expect(stale.status == .conflict)
            let fetched = try await client.execute(uri: "/api/products/p1", method: .get)
            #expect(try JSONDecoder().decode(Product.self, from: fetched.body).name == "Lamp 2")
        }
    }

    @Test("a batch applies valid operations in one go and reports invalid ones as rejected")
    func batch() async throws {
        try await withApp { client async throws in
            let now = Timestamp.now()
            let body = """
                {"operations":[
                  {"op":"upsert","tenant":"default","product":{"id":"a","name":"A","type":"t","description":null,"images":[],"active":true,"metadata":{},"created_at":"\(now)","updated_at":"\(now)","version":1}},
                  {"op":"upsert","tenant":"default","product":{"id":"b","name":" ","type":"t","description":null,"images":[],"active":true,"metadata":{},"created_at":"\(now)","updated_at":"\(now)","version":1}},
                  {"op":"upsert","tenant":"default","product":{"id":"a","name":"A0","type":"t","description":null,"images":[],"active":true,"metadata":{},"created_at":"\(now)","updated_at":"\(now)","version":1}},
                  {"op":"delete","tenant":"default","id":"c","version":2,"deleted_at":"\(now)"}
                ]}
                """
            let response = try await post(client, "/api/products/batch", body)
            #expect(response.status == .ok)
            let result = try JSONDecoder().decode(WriteBatchResult.self, from: response.body)
            #expect(result.results.map(\.outcome) == [.applied, .rejected, .stale, .applied])
            #expect(result.results[1].error?.contains("name") == true)
            let page = try await client.execute(uri: "/api/products", method: .get)
            #expect(try JSONDecoder().decode(ProductPage.self, from: page.body).products.map(\.id) == ["a"])
        }
    }

    @Test("after a tombstone purge, a batch's write recorded before the horizon for a product with no row is rejected as expired")
    func batchBeforeHorizon() async throws {
        try await withApp(serviceToken: nil) { client, store async throws in
            let now = Timestamp.now()
            let horizon = Timestamp.nowMilliseconds()
            _ = try await store.products.purgeTombstones(deletedBefore: horizon)
            func upsert(_ id: String, name: String = "A", recorded: String = "") -> String {
                #"{"op":"upsert","product":{"id":"\#(id)","name":"\#(name)","type":"t","description":null,"images":[],"active":true,"metadata":{},"created_at":"\#(now)","updated_at":"\#(now)","version":1}\#(recorded)}"#
            }
            let body = #"{"operations":[\#(upsert("bad", name: " ", recorded: #","recorded_at_ms":1"#)),\#(upsert("old", recorded: #","recorded_at_ms":\#(horizon - 1)"#)),\#(upsert("new", recorded: #","recorded_at_ms":\#(horizon)"#)),\#(upsert("untimed"))]}"#
            let response = try await post(client, "/api/products/batch", body)
            #expect(response.status == .ok)
            let result = try JSONDecoder().decode(WriteBatchResult.self, from: response.body)
            #expect(result.results.map(\.outcome) == [.rejected, .rejected, .applied, .applied])
            #expect(result.results[0].error?.contains("name") == true)
            #expect(result.results[1].error?.hasPrefix("expired: recorded before the tombstone horizon") == true)
            let page = try await client.execute(uri: "/api/products", method: .get)
            #expect(try JSONDecoder().decode(ProductPage.self, from: page.body).products.map(\.id) == ["new", "untimed"])

            let wrongType = try await post(client, "/api/products/batch", #"{"operations":[\#(upsert("x", recorded: #","recorded_at_ms":"soon""#))]}"#)
            #expect(wrongType.status == .badRequest)
            #expect(String(buffer: wrongType.body).contains(#""param":"operations[0][recorded_at_ms]""#))
        }
    }

    @Test("a batch body refuses unknown top-level fields, and more operations than the shared limit")
    func batchBoundaries() async throws {
        try await withApp { client async throws in
            let unknown = try await post(client, "/api/products/batch", #"{"operations":[],"dry_run":true}"#)
            #expect(unknown.status == .badRequest)
            #expect(String(buffer: unknown.body).contains(#""param":"dry_run""#))
            let now = Timestamp.now()
            let operation = #"{"op":"delete","tenant":"default","id":"x","version":2,"deleted_at":"\#(now)"}"#
            let operations = Array(repeating: operation, count: ServiceContract.maxBatchOperations + 1).joined(separator: ",")
            let tooMany = try await post(client, "/api/products/batch", #"{"operations":[\#(operations)]}"#)
            #expect(tooMany.status == .badRequest)
            #expect(String(buffer: tooMany.body).contains(#""param":"operations""#))
        }
    }

    @Test("ids in the path are percent-decoded: ids with spaces or % are reachable; a bad escape or U+0000 is a 400")
    func percentEncodedIDs() async throws {
        try await withApp { client async throws in
            #expect(try await post(client, "/api/products", #"{"id":"a b","name":"Spaced"}"#).status == .created)
            #expect(try await post(client, "/api/products", #"{"id":"50%off","name":"Sale"}"#).status == .created)
            let spaced = try await client.execute(uri: "/api/products/a%20b", method: .get)
            #expect(try JSONDecoder().decode(Product.self, from: spaced.body).name == "Spaced")
            #expect(try await client.execute(uri: "/api/products/50%25off", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/api/products/50%25off", method: .delete).status == .ok)
            for uri in ["/api/products/50%off", "/api/products/a%00b"] {
                let response = try await client.execute(uri: uri, method: .get)
                #expect(response.status == .badRequest, "\(uri)")
                #expect(String(buffer: response.body).contains(#""param":"id""#), "\(uri)")
            }
        }
    }

    @Test("U+0000 in a listing parameter is a 400, never a storage error (PostgreSQL refuses it even as a parameter)")
    func nulCharacters() async throws {
        try await withApp { client async throws in
            for uri in ["/api/products?type=a%00b", "/api/products?q=%00", "/api/products?ids=a%00", "/api/products?ending_before=%00"] {
                let response = try await client.execute(uri: uri, method: .get)
                #expect(response.status == .badRequest, "\(uri)")
                #expect(String(buffer: response.body).contains(#""code":"parameter_invalid""#), "\(uri)")
            }
        }
    }

    @Test("the tenant header scopes every route")
    func tenantHeader() async throws {
        try await withApp { client async throws in
            let acme: HTTPFields = [HTTPField.Name.tenantID: "acme"]
            #expect(try await post(client, "/api/products", #"{"id":"p1","name":"Acme lamp"}"#, headers: acme).status == .created)
            #expect(try await client.execute(uri: "/api/products/p1", method: .get).status == .notFound)
            #expect(try await client.execute(uri: "/api/products/p1", method: .get, headers: acme).status == .ok)
            let bad: HTTPFields = [HTTPField.Name.tenantID: "Not Valid"]
            #expect(try await client.execute(uri: "/api/products", method: .get, headers: bad).status == .badRequest)
        }
    }

    @Test("DELETE: 200 with the name, 404 when absent, 409 when the version is not newer")
    func delete() async throws {
        try await withApp { client async throws in
            _ = try await post(client, "/api/products", #"{"id":"p1","name":"Lamp","version":3}"#)
            #expect(try await client.execute(uri: "/api/products/p1?version=2", method: .delete).status == .conflict)
            let deleted = try await client.execute(uri: "/api/products/p1", method: .delete)
            #expect(deleted.status == .ok)
            #expect(String(buffer: deleted.body).contains(#""name":"Lamp""#))
            #expect(try await client.execute(uri: "/api/products/p1", method: .delete).status == .notFound)
            #expect(try await client.execute(uri: "/api/products/p1", method: .get).status == .notFound)
        }
    }

    @Test("health reports the backend")
    func health() async throws {
        try await withApp { client async throws in
            let response = try await client.execute(uri: "/health", method: .get)
            #expect(response.status == .ok)
            let health = try JSONDecoder().decode(DatabaseHealth.self, from: response.body)
            #expect(health.backend == "sqlite")
            #expect(health.status == "healthy")
        }
    }

    @Test("webhook endpoints: created with a secret shown once, at most 16 per tenant, strict input, per tenant")
    func webhookEndpoints() async throws {
        try await withApp { client async throws in
            let json: HTTPFields = [.contentType: "application/json", .tenantID: "acme"]
            // Without WEBHOOK_ALLOW_PRIVATE a loopback target is refused; the tests' private targets go through the flag.
            let refused = try await client.execute(
                uri: "/api/webhook_endpoints", method: .post, headers: json, body: ByteBuffer(string: #"{"url":"http://127.0.0.1/x","enabled_events":["*"]}"#))
            #expect(refused.status == .badRequest && String(buffer: refused.body).contains("url_not_allowed"))
            var ids: [String] = []
            for index in 0..<WebhookRules.maxEndpointsPerTenant {
                let created = try await client.execute(
                    uri: "/api/webhook_endpoints", method: .post, headers: json,
                    body: ByteBuffer(string: #"{"url":"https://203.0.113.\#(index)/hook","enabled_events":["product.created"]}"#))
                #expect(created.status == .created)
                let endpoint = try JSONDecoder().decode(WebhookEndpoint.self, from: created.body)
                #expect(endpoint.secret?.hasPrefix("whsec_") == true && endpoint.status == .enabled && endpoint.id.hasPrefix("we_"))
                ids.append(endpoint.id)
            }
            let tooMany = try await client.execute(
                uri: "/api/webhook_endpoints", method: .post, headers: json, body: ByteBuffer(string: #"{"url":"https://203.0.113.99/","enabled_events":["*"]}"#))
            #expect(tooMany.status == .badRequest && String(buffer: tooMany.body).contains("webhook_endpoint_limit"))
            let listed = try await client.execute(uri: "/api/webhook_endpoints", method: .get, headers: [.tenantID: "acme"])
            #expect(!String(buffer: listed.body).contains("whsec_"), "no secret in a listing")
            #expect(try await client.execute(uri: "/api/webhook_endpoints/\(ids[0])", method: .get, headers: [.tenantID: "globex"]).status == .notFound)
            let rotateWithField = try await client.execute(
                uri: "/api/webhook_endpoints/\(ids[0])/rotate_secret", method: .post, headers: json, body: ByteBuffer(string: #"{"secret":"mine"}"#))
            #expect(rotateWithField.status == .badRequest && String(buffer: rotateWithField.body).contains(#""param":"secret""#))
            let badStatus = try await client.execute(
                uri: "/api/webhook_endpoints/\(ids[0])", method: .patch, headers: json, body: ByteBuffer(string: #"{"status":"paused"}"#))
            #expect(badStatus.status == .badRequest && String(buffer: badStatus.body).contains(#""param":"status""#))
            let badLimit = try await client.execute(uri: "/api/webhook_endpoints/\(ids[0])/deliveries?limit=0", method: .get, headers: json)
            #expect(badLimit.status == .badRequest)
            let deleted = try await client.execute(uri: "/api/webhook_endpoints/\(ids[0])", method: .delete, headers: json)
            #expect(deleted.status == .ok && String(buffer: deleted.body).contains(#""deleted":true"#))
            #expect(try await client.execute(uri: "/api/webhook_endpoints/\(ids[0])", method: .delete, headers: json).status == .notFound)
            let events = try await client.execute(uri: "/api/events?type=order.created", method: .get, headers: json)
            #expect(events.status == .badRequest && String(buffer: events.body).contains(#""param":"type""#))
        }
    }
}
