import Foundation
import NIOHTTP1
import Shared
import TestSupport
import Testing

/// Events and webhooks, end to end: real processes, and a real HTTP receiver on a loopback port (allowed with
/// `WEBHOOK_ALLOW_PRIVATE=1`, as a user's local receiver would be).
@Suite("Webhooks")
struct WebhookTests {
    static let allowPrivate = ["WEBHOOK_ALLOW_PRIVATE": "1"]

    /// A stack whose Database Service may deliver to loopback, with a fast retry schedule.
    static func stack(_ backend: Backend, schedule: String = "0.3,0.3,0.3", databaseArguments: [String] = []) async throws -> Stack {
        let stack = try Stack(backend)
        try await stack.startDatabase(databaseArguments, environment: allowPrivate.merging(["WEBHOOK_RETRY_SCHEDULE": schedule]) { $1 })
        try await stack.startProducts()
        try await stack.waitForStatus("healthy")
        return stack
    }

    /// Creates an endpoint through the Products Service; returns its id and secret.
    static func endpoint(
        _ stack: Stack, url: String, events: [String] = ["*"], key: String? = nil
    ) async throws -> (id: String, secret: String) {
        let body = String(decoding: try JSONSerialization.data(withJSONObject: ["url": url, "enabled_events": events]), as: UTF8.self)
        let response = try await HTTP.send(.POST, stack.productsURL + "/webhook_endpoints", body: body, headers: auth(key))
        try #require(response.status == 201, "creating an endpoint answered \(response.status): \(response.text)")
        let object = response.object
        return (try #require(object["id"] as? String), try #require(object["secret"] as? String))
    }

    static func auth(_ key: String?) -> [(String, String)] { key.map { [("Authorization", "Bearer " + $0)] } ?? [] }

    static func waitForDeliveries(_ receiver: WebhookReceiver, _ path: String, count: Int, timeout: Duration = .seconds(120)) async throws {
        try await eventually("\(count) deliveries to \(path)", timeout: timeout) { receiver.deliveries(to: path).count >= count }
    }

    /// Waits until `count` distinct events reached `path`.
    static func waitForEvents(_ receiver: WebhookReceiver, _ path: String, count: Int, timeout: Duration = .seconds(120)) async throws {
        try await eventually("\(count) events at \(path)", timeout: timeout) { receiver.events(to: path).count >= count }
    }

    @Test("every kind of change is delivered, signed, and listed as an event", arguments: Backend.available)
    func everyChangeDelivered(backend: Backend) async throws {
        let stack = try await Self.stack(backend)
        let receiver = WebhookReceiver()
        try await receiver.run { base in
            let (endpointID, secret) = try await Self.endpoint(stack, url: base + "/all")
            #expect(secret.hasPrefix("whsec_"))
            let shown = try await HTTP.get(stack.productsURL + "/webhook_endpoints/\(endpointID)")
            #expect(shown.status == 200 && shown.object["secret"] == nil && shown.object["status"] as? String == "enabled")

            // Each write reaches the Database Service before the next is made, so none is coalesced: three events.
            let product = try await stack.create("Lamp")
            try await stack.waitUntilPersisted()
            let updated = try await HTTP.send(.PATCH, stack.productsURL + "/products/\(product.id)", body: #"{"name":"Desk lamp"}"#)
            try #require(updated.status == 200)
            try await stack.waitUntilPersisted()
            try #require(try await HTTP.delete(stack.productsURL + "/products/\(product.id)").status == 200)

            try await Self.waitForEvents(receiver, "/all", count: 3)
            let deliveries = receiver.events(to: "/all").sorted { $0.id < $1.id }
            #expect(deliveries.map(\.type) == ["product.created", "product.updated", "product.deleted"])
            for delivery in deliveries {
                #expect(delivery.verifies(with: secret), "signature of \(delivery.id)")
                #expect(delivery.event["id"] as? String == delivery.id)
                #expect(delivery.id.hasPrefix("evt_"))
            }
            #expect(deliveries[0].object["name"] as? String == "Lamp")
            #expect(deliveries[1].object["name"] as? String == "Desk lamp")
            #expect(deliveries[2].object["deleted"] as? Bool == true && deliveries[2].object["id"] as? String == product.id)
            #expect((deliveries[2].object["version"] as? Int64 ?? 0) > (deliveries[1].object["version"] as? Int64 ?? .max))
            // A tampered body does not verify.
            var forged = deliveries[0]
            forged.body = Data(String(decoding: forged.body, as: UTF8.self).replacingOccurrences(of: "Lamp", with: "Lamp!").utf8)
            #expect(!forged.verifies(with: secret))

            // GET /events lists the same events, oldest first, with a type filter and paging.
            let events = try await HTTP.get(stack.productsURL + "/events").json([EventBody].self)
            #expect(events.map(\.id) == deliveries.map(\.id))
            let deleted = try await HTTP.get(stack.productsURL + "/events?type=product.deleted").json([EventBody].self)
            #expect(deleted.map(\.id) == [deliveries[2].id])
            let firstPage = try await HTTP.get(stack.productsURL + "/events?limit=2")
            #expect(try firstPage.json([EventBody].self).count == 2)
            #expect(firstPage.headers.first(name: "Link")?.contains("starting_after=\(deliveries[1].id)") == true)
            let before = try await HTTP.get(stack.productsURL + "/events?ending_before=\(deliveries[2].id)").json([EventBody].self)
            #expect(before.map(\.id) == [deliveries[0].id, deliveries[1].id])
            let badType = try await HTTP.get(stack.productsURL + "/events?type=product.exploded")
            #expect(badType.status == 400 && badType.error?.param == "type")

            #expect(!stack.serviceLogs.contains(secret), "the secret is never logged")
            // Each try is listed with its outcome.
            try await eventually("three successful tries listed") {
                let tries = try await HTTP.get(stack.productsURL + "/webhook_endpoints/\(endpointID)/deliveries").json([WebhookAttempt].self)
                return tries.count == 3 && tries.allSatisfy { $0.status == "succeeded" && $0.responseCode == 200 }
            }
        }
        await stack.stop()
    }

    @Test("a receiver answering 500 twice gets the third try with the same webhook-id")
    func retriesKeepTheID() async throws {
        let stack = try await Self.stack(.sqlite)
        let receiver = WebhookReceiver()
        receiver.answer("/flaky", with: [500, 500])
        try await receiver.run { base in
            let (endpointID, secret) = try await Self.endpoint(stack, url: base + "/flaky")
            _ = try await stack.create("Mug")
            try await Self.waitForDeliveries(receiver, "/flaky", count: 3)
            let tries = receiver.deliveries(to: "/flaky")
            #expect(Set(tries.map(\.id)).count == 1)
            #expect(tries.allSatisfy { $0.verifies(with: secret) })
            try await eventually("the tries are listed: two failed, then one succeeded") {
                let listed = try await HTTP.get(stack.productsURL + "/webhook_endpoints/\(endpointID)/deliveries").json([WebhookAttempt].self)
                return listed.map(\.status) == ["succeeded", "failed", "failed"] && listed.map(\.responseCode) == [200, 500, 500]
                    && listed.map(\.attempt) == [3, 2, 1] && listed[0].deliveryStatus == "succeeded"
            }
            // No fourth try comes: a later event, delivered after it, finds the first one's three tries still three.
            // The failed tries were logged, the secret never.
            let later = try await stack.create("Later")
            try await eventually("the later product's delivery") {
                receiver.deliveries(to: "/flaky").contains { $0.object["id"] as? String == later.id }
            }
            #expect(receiver.deliveries(to: "/flaky").filter { $0.id == tries[0].id }.count == 3)
            #expect(stack.serviceLogs.contains("webhook try failed") && !stack.serviceLogs.contains(secret))
        }
        await stack.stop()
    }

    @Test("delivery resumes after the Database Service is killed and restarted", arguments: Backend.available)
    func resumesAfterDatabaseKill(backend: Backend) async throws {
        // A try cut short by the kill is leased for four times the timeout and 5 s: 13 s here.
        let stack = try await Self.stack(backend, schedule: "1,1,1,1,1,1,1,1,1,1", databaseArguments: ["--webhook-timeout", "2"])
        let receiver = WebhookReceiver()
        // The first tries fail, so a delivery is pending when the Database Service dies.
        receiver.answer("/resume", with: [503, 503])
        try await receiver.run { base in
            let (_, secret) = try await Self.endpoint(stack, url: base + "/resume")
            let first = try await stack.create("Before the kill")
            try await Self.waitForDeliveries(receiver, "/resume", count: 1)
            stack.database?.kill()
            // Acknowledged while the Database Service is down: journaled, persisted once it is back.
            let second = try await stack.create("During the outage")
            try await stack.startDatabase(
                ["--webhook-timeout", "2"], environment: Self.allowPrivate.merging(["WEBHOOK_RETRY_SCHEDULE": "1,1,1,1,1,1,1,1,1,1"]) { $1 })
            try await eventually("both products delivered") {
                let succeeded = Set(receiver.deliveries(to: "/resume").map { $0.object["id"] as? String ?? "" })
                return succeeded.isSuperset(of: [first.id, second.id]) && receiver.deliveries(to: "/resume").count >= 4
            }
            #expect(receiver.deliveries(to: "/resume").allSatisfy { $0.verifies(with: secret) })
        }
        await stack.stop()
    }

    @Test("endpoints of one tenant never see another's events; read-only keys cannot manage endpoints")
    func tenantIsolation() async throws {
        let stack = try await Self.stack(.sqlite)
        let acme = try await stack.createKey(tenant: "acme").key
        let globex = try await stack.createKey(tenant: "globex").key
        let reader = try await stack.createKey(tenant: "acme", readOnly: true).key
        let receiver = WebhookReceiver()
        try await receiver.run { base in
            let acmeEndpoint = try await Self.endpoint(stack, url: base + "/acme", key: acme)
            _ = try await Self.endpoint(stack, url: base + "/globex", key: globex)
            let created = try await HTTP.send(.POST, stack.productsURL + "/products", body: #"{"name":"Anvil"}"#, headers: Self.auth(acme))
            try #require(created.status == 201)
            try await Self.waitForEvents(receiver, "/acme", count: 1)
            // Globex's own write, delivered to its endpoint after acme's: nothing of acme's came before it.
            let own = try await HTTP.send(.POST, stack.productsURL + "/products", body: #"{"name":"Rocket"}"#, headers: Self.auth(globex))
            try #require(own.status == 201)
            try await Self.waitForEvents(receiver, "/globex", count: 1)
            #expect(receiver.events(to: "/globex").map { $0.object["name"] as? String } == ["Rocket"])
            #expect(receiver.events(to: "/acme").count == 1, "nor does acme see globex's")
            #expect(try await HTTP.send(.GET, stack.productsURL + "/events", headers: Self.auth(globex)).json([EventBody].self).count == 1)
            #expect(try await HTTP.send(.GET, stack.productsURL + "/events", headers: Self.auth(acme)).json([EventBody].self).count == 1)
            let foreign = try await HTTP.send(.GET, stack.productsURL + "/webhook_endpoints/\(acmeEndpoint.id)", headers: Self.auth(globex))
            #expect(foreign.status == 404)
            let foreignDelete = try await HTTP.send(.DELETE, stack.productsURL + "/webhook_endpoints/\(acmeEndpoint.id)", headers: Self.auth(globex))
            #expect(foreignDelete.status == 404)
            let listed = try await HTTP.send(.GET, stack.productsURL + "/webhook_endpoints", headers: Self.auth(globex)).json([WebhookEndpoint].self)
            #expect(listed.map(\.url) == [base + "/globex"])
            // A read-only key reads endpoints but cannot create, change or delete them.
            #expect(try await HTTP.send(.GET, stack.productsURL + "/webhook_endpoints", headers: Self.auth(reader)).status == 200)
            let refused = try await HTTP.send(
                .POST, stack.productsURL + "/webhook_endpoints", body: #"{"url":"\#(base)/x","enabled_events":["*"]}"#, headers: Self.auth(reader))
            #expect(refused.status == 403)
            let refusedRotate = try await HTTP.send(
                .POST, stack.productsURL + "/webhook_endpoints/\(acmeEndpoint.id)/rotate_secret", headers: Self.auth(reader))
            #expect(refusedRotate.status == 403)
        }
        await stack.stop()
    }

    @Test("enabled_events filters what is sent; PATCH changes it")
    func enabledEventsFilter() async throws {
        let stack = try await Self.stack(.sqlite)
        let receiver = WebhookReceiver()
        try await receiver.run { base in
            let (id, _) = try await Self.endpoint(stack, url: base + "/deletes", events: ["product.deleted"])
            // Hears everything: once it has a change, every endpoint's deliveries of that change were made.
            _ = try await Self.endpoint(stack, url: base + "/witness")
            let kept = try await stack.create("Kept")
            let gone = try await stack.create("Gone")
            try await stack.waitUntilPersisted()
            try #require(try await HTTP.delete(stack.productsURL + "/products/\(gone.id)").status == 200)
            try await Self.waitForEvents(receiver, "/deletes", count: 1)
            #expect(receiver.events(to: "/deletes").first?.object["id"] as? String == gone.id)

            let patched = try await HTTP.send(
                .PATCH, stack.productsURL + "/webhook_endpoints/\(id)", body: #"{"enabled_events":["product.updated"],"description":"updates"}"#)
            #expect(patched.status == 200 && patched.object["enabled_events"] as? [String] == ["product.updated"])
            try #require(try await HTTP.send(.PATCH, stack.productsURL + "/products/\(kept.id)", body: #"{"name":"Kept still"}"#).status == 200)
            try await Self.waitForEvents(receiver, "/deletes", count: 2)
            // The creates, made before the delete, were never delivered: the update came after it, and alone.
            #expect(receiver.events(to: "/deletes").map(\.type) == ["product.deleted", "product.updated"])

            // A disabled endpoint gets nothing.
            #expect(try await HTTP.send(.PATCH, stack.productsURL + "/webhook_endpoints/\(id)", body: #"{"status":"disabled"}"#).status == 200)
            try #require(try await HTTP.send(.PATCH, stack.productsURL + "/products/\(kept.id)", body: #"{"name":"Unheard"}"#).status == 200)
            try await eventually("the witness hears the update made while the endpoint was disabled") {
                receiver.deliveries(to: "/witness").contains { $0.object["name"] as? String == "Unheard" }
            }
            #expect(receiver.events(to: "/deletes").count == 2)
        }
        await stack.stop()
    }

    @Test("a rotated secret signs beside the new one")
    func rotationSignsTwice() async throws {
        let stack = try await Self.stack(.sqlite)
        let receiver = WebhookReceiver()
        try await receiver.run { base in
            let (id, oldSecret) = try await Self.endpoint(stack, url: base + "/rotate")
            let rotated = try await HTTP.send(.POST, stack.productsURL + "/webhook_endpoints/\(id)/rotate_secret")
            try #require(rotated.status == 200)
            let newSecret = try #require(rotated.object["secret"] as? String)
            #expect(newSecret != oldSecret && newSecret.hasPrefix("whsec_"))
            _ = try await stack.create("Rotated")
            try await Self.waitForDeliveries(receiver, "/rotate", count: 1)
            let delivery = try #require(receiver.deliveries(to: "/rotate").first)
            let signatures = delivery.signature.split(separator: " ")
            #expect(signatures.count == 2 && signatures.allSatisfy { $0.hasPrefix("v1,") })
            #expect(delivery.verifies(with: oldSecret) && delivery.verifies(with: newSecret))
            #expect(!delivery.verifies(with: "whsec_" + Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()))
        }
        await stack.stop()
    }

    @Test("private targets are refused without WEBHOOK_ALLOW_PRIVATE, and bad input names its field")
    func privateTargetsRefused() async throws {
        let stack = try await Stack.started()
        // "localhost." skips the name check and is refused on what it resolves to.
        for url in ["http://127.0.0.1:9/hook", "http://localhost/hook", "http://localhost./hook", "http://[::1]/hook", "http://10.1.2.3/",
                    "http://169.254.169.254/latest/meta-data", "https://192.168.0.10/hook", "http://[::ffff:127.0.0.1]/hook"]
        {
            let response = try await HTTP.post(stack.productsURL + "/webhook_endpoints", json: #"{"url":"\#(url)","enabled_events":["*"]}"#)
            #expect(response.status == 400, "\(url)")
            #expect(response.error?.param == "url" && response.error?.code == "url_not_allowed", "\(url): \(response.text)")
        }
        for (body, param) in [
            (#"{"url":"ftp://example.com/hook","enabled_events":["*"]}"#, "url"),
            (#"{"url":"https://example.com/hook","enabled_events":["product.exploded"]}"#, "enabled_events"),
            (#"{"url":"https://example.com/hook","enabled_events":[]}"#, "enabled_events"),
            (#"{"url":"https://example.com/hook","enabled_events":["*"],"colour":"red"}"#, "colour"),
            (#"{"enabled_events":["*"]}"#, "url"),
            (#"{"url":"https://user:pw@example.com/hook","enabled_events":["*"]}"#, "url"),
        ] {
            let response = try await HTTP.post(stack.productsURL + "/webhook_endpoints", json: body)
            #expect(response.status == 400 && response.error?.param == param, "\(body): \(response.text)")
        }
        let missing = try await HTTP.get(stack.productsURL + "/webhook_endpoints/we_nosuch")
        #expect(missing.status == 404 && missing.error?.code == "resource_missing")
        let badStatus = try await HTTP.send(.PATCH, stack.productsURL + "/webhook_endpoints/we_nosuch", body: #"{"status":"paused"}"#)
        #expect(badStatus.status == 404)
        await stack.stop()
    }

    @Test("two Database Service processes on PostgreSQL deliver each event exactly once", .enabled(if: Backend.postgresURL != nil))
    func oneDeliveryPerEventWithTwoProcesses() async throws {
        let stack = try Stack(.postgresql)
        try await stack.startDatabase([], environment: Self.allowPrivate)
        let second = try await ServiceProcess.start(
            "database-service", ["--port", "0", "--database", stack.databaseLocation], environment: Self.allowPrivate, in: stack.directory)
        defer { second.kill() }
        try await stack.startProducts()
        try await stack.waitForStatus("healthy")
        let receiver = WebhookReceiver()
        try await receiver.run { base in
            _ = try await Self.endpoint(stack, url: base + "/once")
            // Writes go through both processes: the replica's, and the second one directly.
            var ids: [String] = []
            for index in 0..<40 { ids.append(try await stack.create("Product \(index)").id) }
            for index in 0..<20 {
                let product = Product(
                    id: "prod_direct\(index)", name: "Direct \(index)", type: "physical", metadata: [:], createdAt: Timestamp.now(),
                    updatedAt: Timestamp.now(), version: 1)
                let response = try await HTTP.send(.POST, second.baseURL + "/api/products", body: String(buffer: product.json))
                try #require(response.status == 201, "\(response.text)")
                ids.append(product.id)
            }
            try await Self.waitForDeliveries(receiver, "/once", count: ids.count, timeout: .seconds(180))
            // A last write, delivered after every other: no second delivery of any of them came before it.
            let last = try await stack.create("Last")
            try await eventually("the last product's delivery") {
                receiver.deliveries(to: "/once").contains { $0.object["id"] as? String == last.id }
            }
            let deliveries = receiver.deliveries(to: "/once").filter { $0.object["id"] as? String != last.id }
            #expect(deliveries.count == ids.count)
            #expect(Set(deliveries.map(\.id)).count == ids.count)
            #expect(Set(deliveries.compactMap { $0.object["id"] as? String }) == Set(ids))
        }
        await stack.stop()
    }
}

/// An event as `GET /events` lists it.
struct EventBody: Decodable {
    var id: String
    var type: String
    var createdAt: String

    enum CodingKeys: String, CodingKey {
        case id, type
        case createdAt = "created_at"
    }
}
