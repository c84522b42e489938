import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing
@testable import DatabaseService
@testable import Shared

@Suite("Webhooks and events")
struct WebhookModelTests {
    @Test("signatures match the Standard Webhooks reference vector")
    func referenceSignature() {
        // From the Standard Webhooks libraries' tests.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        let body = Data(#"{"test": 2432232314}"#.utf8)
        let signature = WebhookSignature.sign(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: body, secret: secret)
        #expect(signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        #expect(WebhookSignature.verify(
            header: "v1,bm9wZQ== " + (signature ?? ""), id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: body, secret: secret))
        #expect(!WebhookSignature.verify(
            header: signature ?? "", id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_331, body: body, secret: secret))
    }

    @Test("a new secret is whsec_ and 32 random bytes")
    func secrets() throws {
        let secret = WebhookSignature.generateSecret()
        #expect(secret.hasPrefix("whsec_"))
        #expect(try #require(Data(base64Encoded: String(secret.dropFirst(6)))).count == 32)
        #expect(secret != WebhookSignature.generateSecret())
        let header = WebhookSignature.header(id: "evt_1", timestamp: 1, body: Data("{}".utf8), secrets: [secret, WebhookSignature.generateSecret()])
        #expect(header.split(separator: " ").count == 2)
    }

    @Test("internal addresses are recognised, IPv4 and IPv6", arguments: [
        ("127.0.0.1", true), ("10.0.0.5", true), ("172.16.0.1", true), ("172.31.255.255", true), ("172.32.0.1", false),
        ("192.168.1.1", true), ("169.254.169.254", true), ("100.64.0.1", true), ("0.0.0.0", true), ("224.0.0.1", true),
        ("8.8.8.8", false), ("93.184.216.34", false), ("::1", true), ("::", true), ("fe80::1", true), ("fd00:ec2::254", true),
        ("::ffff:127.0.0.1", true), ("::ffff:8.8.8.8", false), ("64:ff9b::a00:1", true), ("2606:4700::1111", false),
    ])
    func internalAddresses(address: String, expected: Bool) throws {
        #expect(WebhookTarget.isInternal(try SocketAddress(ipAddress: address, port: 0)) == expected)
    }

    @Test("a name is judged by what it resolves to")
    func resolvedNames() async throws {
        if case .success = try #require(await WebhookTarget.check(url: "http://localhost./hook")) { Issue.record("localhost. was allowed") }
        if case .failure = await WebhookTarget.check(url: "https://8.8.8.8/hook") { Issue.record("a public address was refused") }
        // This machine's own name resolves (through /etc/hosts) to its loopback or private address: refused
        // by what it resolves to, not by its name.
        let name = ProcessInfo.processInfo.hostName
        guard let addresses = await WebhookTarget.resolve(name, timeout: .seconds(3)), !addresses.isEmpty,
              addresses.allSatisfy(WebhookTarget.isInternal)
        else { return }
        guard case .failure(let refusal) = try #require(await WebhookTarget.check(url: "http://\(name):8080/hook")) else {
            Issue.record("\(name) resolves to \(addresses) but was allowed")
            return
        }
        #expect(refusal.description.contains("resolves to"))
    }

    @Test("DNS rebinding is refused: the name is resolved once, its first answer pinned; no answer in time is no target")
    func pinnedTargets() async throws {
        let answers = Mutex(["203.0.113.10", "127.0.0.1"])
        let calls = Atomic<Int>(0)
        let rebinding: WebhookTarget.Resolver = { _, _ in
            calls.wrappingAdd(1, ordering: .relaxed)
            let next = answers.withLock { $0.count > 1 ? $0.removeFirst() : $0[0] }
            return [try! SocketAddress(ipAddress: next, port: 0)]
        }
        let first = try #require(await WebhookTarget.check(url: "http://rebind.example:8080/hook", resolver: rebinding))
        #expect(try first.get() == WebhookTarget.Vetted(host: "rebind.example", address: "203.0.113.10"))
        #expect(calls.load(ordering: .relaxed) == 1, "one lookup per check: the try connects to what it vetted")
        // What the name says next (loopback) is refused, should it be asked again.
        guard case .failure = try #require(await WebhookTarget.check(url: "http://rebind.example:8080/hook", resolver: rebinding)) else {
            Issue.record("a loopback answer was allowed")
            return
        }
        let silent: WebhookTarget.Resolver = { _, _ in nil }
        #expect(await WebhookTarget.check(url: "http://slow.example/hook", resolver: silent) == nil, "no answer in time: no vetted target")
        let literal = try #require(await WebhookTarget.check(url: "https://8.8.8.8/hook", resolver: silent))
        #expect(try literal.get() == WebhookTarget.Vetted(host: "8.8.8.8", address: nil), "a literal address is connected to as it is")
    }

    @Test("a pinned client connects to its address, for a name no DNS knows, and the Host header keeps the name")
    func pinnedClient() async throws {
        let router = Router()
        router.get("hook") { request, _ -> String in request.head.authority ?? "" }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let port = try #require(client.port)
            // What is tested is where the client connects; a parallel test run on two cores can starve this process
            // for longer than a webhook's 10 s read timeout.
            var configuration = WebhookDeliveryService.clientConfiguration(WebhookSettings())
            configuration.timeout.read = .seconds(90)
            let pinned = PinnedClients(configuration: configuration)
            // Shut down on every path: a client dropped unshut stops a debug process.
            let answer: Result<String, any Error>
            do {
                let request = HTTPClientRequest(url: "http://rebind.invalid:\(port)/hook")
                let response = try await pinned.client(host: "rebind.invalid", address: "127.0.0.1").execute(request, timeout: .seconds(120))
                answer = .success(String(buffer: try await response.body.collect(upTo: 1024)))
            } catch {
                answer = .failure(error)
            }
            await pinned.shutdown()
            #expect(try answer.get() == "rebind.invalid:\(port)")
        }
    }

    @Test("event ids carry their cursor and sort in log order")
    func eventIDs() {
        let cursor = ChangeCursor(transaction: 7_000_123, position: 42)
        let id = EventID.make(cursor)
        #expect(id.count == 36 && id.hasPrefix("evt_"))
        #expect(EventID.cursor(id) == cursor)
        #expect(EventID.make(ChangeCursor(transaction: 7_000_123, position: 43)) > id)
        #expect(EventID.make(ChangeCursor(transaction: 7_000_124, position: 1)) > id)
        for bad in ["evt_", "evt_xyz", "prod_0000000000000000000000000000002a", "evt_" + String(repeating: "f", count: 32), "evt_" + String(repeating: "0", count: 31)] {
            #expect(EventID.cursor(bad) == nil, "\(bad)")
        }
    }

    @Test("event queries: type, cursors and limit, each fault naming its parameter")
    func eventQueries() throws {
        let id = EventID.make(ChangeCursor(transaction: 0, position: 9))
        let query = try EventQuery.parse(query: "limit=5&type=product.deleted&starting_after=\(id)")
        #expect(query.limit == 5 && query.type == .productDeleted && query.cursor == .startingAfter(ChangeCursor(transaction: 0, position: 9)))
        #expect(try EventQuery.parse(query: query.queryString(cursor: query.cursor)) == query)
        for (raw, param) in [("type=product.exploded", "type"), ("limit=0", "limit"), ("starting_after=evt_1", "starting_after"),
                             ("starting_after=\(id)&ending_before=\(id)", "ending_before"), ("colour=red", "colour")] {
            #expect(throws: APIError.self) { try EventQuery.parse(query: raw) }
            do { _ = try EventQuery.parse(query: raw) } catch { #expect(error.param == param, "\(raw)") }
        }
    }

    @Test("retry schedules parse from comma-separated seconds")
    func retrySchedules() {
        #expect(WebhookRetrySchedule(WebhookRetrySchedule.standard.description) == .standard)
        #expect(WebhookRetrySchedule.standard.maxAttempts == 8)
        #expect(WebhookRetrySchedule("0.2, 1,3")?.delays == [0.2, 1, 3])
        #expect(WebhookRetrySchedule("")?.delays == [])
        #expect(WebhookRetrySchedule("5,x") == nil)
        #expect(WebhookRetrySchedule("-1") == nil)
        #expect(WebhookRetrySchedule("5").map { ($0.delay(afterAttempt: 1), $0.delay(afterAttempt: 2)) }! == (5, nil))
    }

    @Test("endpoint input rules")
    func endpointRules() throws {
        #expect(try WebhookRules.validURL(.string("https://example.com/hook?x=1")) == "https://example.com/hook?x=1")
        for bad in ["ftp://example.com", "example.com/hook", "https://", "https://u:p@example.com/", "http://example.com/#x", ""] {
            #expect(throws: APIError.self, "\(bad)") { try WebhookRules.validURL(.string(bad)) }
        }
        #expect(try WebhookRules.validEvents(.array([.string("product.created"), .string("product.created")])) == ["product.created"])
        #expect(try WebhookRules.validEvents(.array([.string("product.created"), .string("*")])) == ["*"])
        #expect(throws: APIError.self) { try WebhookRules.validEvents(.array([.string("order.created")])) }
        #expect(throws: APIError.self) { try WebhookRules.validEvents(.array([])) }
        #expect(throws: APIError.self) { try WebhookRules.fields(.object(["url": .string("x"), "secret": .string("y")]), allowed: WebhookRules.createFields) }
    }
}
