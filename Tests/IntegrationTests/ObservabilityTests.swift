import AsyncHTTPClient
import Foundation
import NIOHTTP1
import Shared
import TestSupport
import Testing

/// Metrics, request correlation, health and readiness, JSON logs, and PostgreSQL shared by several processes.
@Suite("Observability and scale-out")
struct ObservabilityTests {
    /// Prometheus text: the value of each sample line, keyed by `name{labels}`.
    static func samples(_ text: String) throws -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") && !line.isEmpty {
            let space = try #require(line.lastIndex(of: " "), "a sample line: \(line)")
            let value = try #require(Double(line[line.index(after: space)...]), "a numeric value: \(line)")
            samples[String(line[..<space])] = value
        }
        return samples
    }

    static func sum(_ samples: [String: Double], _ prefix: String, containing parts: [String] = []) -> Double {
        samples.filter { key, _ in key.hasPrefix(prefix) && parts.allSatisfy { key.contains($0) } }.values.reduce(0, +)
    }

    @Test("/metrics on both services is Prometheus text whose counters move with traffic", arguments: Backend.available)
    func metrics(backend: Backend) async throws {
        let stack = try await Stack.started(backend: backend)
        let before = try Self.samples(try await HTTP.get(stack.productsURL + "/metrics").text)
        for index in 0..<3 { _ = try await stack.create("Metered \(index)") }
        _ = try await HTTP.get(stack.productsURL + "/products/prod_missing")
        try await stack.waitUntilPersisted()
        let response = try await HTTP.get(stack.productsURL + "/metrics")
        #expect(response.headers.first(name: "Content-Type")?.hasPrefix("text/plain") == true)
        let after = try Self.samples(response.text)
        let route = #"http_route="/products""#
        #expect(Self.sum(after, "hb_requests", containing: [route, #""POST""#, #""201""#])
            - Self.sum(before, "hb_requests", containing: [route, #""POST""#, #""201""#]) == 3, "requests by route and status")
        #expect(Self.sum(after, "http_server_request_duration", containing: [route, "_count"]) >= 3, "latency histogram")
        #expect(after["products_cache_products"] == 3)
        #expect(after["products_journal_pending_writes"] == 0)
        #expect(Self.sum(after, "products_cache_misses") >= 1 && Self.sum(after, "products_cache_hits") >= 0)
        #expect(Self.sum(after, "products_flush_duration", containing: ["persisted", "_count"]) >= 1, "flush latency")
        #expect(Self.sum(after, "products_flush_batch_operations", containing: ["_count"]) >= 1, "flush batch sizes")
        #expect(Self.sum(after, "products_database_call_duration", containing: ["POST /api/products/batch", "ok", "_count"]) >= 1)
        #expect(Self.sum(after, "products_database_call_duration", containing: ["/api/products/{id}", "_count"]) >= 1, "the read-through")

        let database = try Self.samples(try await HTTP.get(stack.databaseURL + "/metrics").text)
        #expect(Self.sum(database, "database_storage_query_duration", containing: [#"operation="apply""#, backend.rawValue, "_count"]) >= 1)
        #expect(Self.sum(database, "hb_requests", containing: [#""/api/products/batch""#]) >= 1)
        await stack.stop()
    }

    @Test("X-Request-ID and traceparent reach both services' logs; errors carry request_id")
    func correlation() async throws {
        let stack = try await Stack.started()
        let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
        let response = try await HTTP.send(
            .GET, stack.productsURL + "/products/prod_not_here",
            headers: [("X-Request-ID", "it-correlate-1"), ("traceparent", "00-\(traceID)-00f067aa0ba902b7-01")])
        #expect(response.status == 404)
        #expect(response.headers.first(name: "X-Request-ID") == "it-correlate-1")
        #expect(response.error?.requestID == "it-correlate-1")
        let generated = try await HTTP.get(stack.productsURL + "/livez")
        #expect(generated.headers.first(name: "X-Request-ID")?.count == 32, "one is made up when none is sent")
        for unsafe in ["has spaces", String(repeating: "x", count: 129), "quote\"d"] {
            let response = try await HTTP.send(.GET, stack.productsURL + "/livez", headers: [("X-Request-ID", unsafe)])
            #expect(response.headers.first(name: "X-Request-ID")?.count == 32, "an id unsafe to log is replaced: \(unsafe)")
        }
        await stack.stop()
        let products = stack.products!.log
        let database = stack.database!.log
        #expect(products.contains("request_id=it-correlate-1") && products.contains("trace_id=\(traceID)"))
        #expect(database.contains("request_id=it-correlate-1"), "the Database Service logs the same request id")
        #expect(database.contains("trace_id=\(traceID)"), "and the same trace")
        let lines = products.split(separator: "\n").filter { $0.contains("request_id=it-correlate-1") && $0.hasSuffix(" request") }
        #expect(lines.count == 1, "each request is logged once at the default level: \(lines)")
    }

    @Test("an idle stack is quiet: probes and the key-status poll log at debug, client requests at info")
    func quietWhenIdle() async throws {
        let stack = try await Stack.started()
        for path in ["/livez", "/readyz", "/health", "/metrics"] { _ = try await HTTP.get(stack.productsURL + path) }
        _ = try await HTTP.get(stack.productsURL + "/products")
        // The Products Service asks the Database Service for the key status every 2 s: wait until it has, by the
        // Database Service's own request count for that route.
        try await eventually("the key-status poll reached the Database Service") {
            try await HTTP.get(stack.databaseURL + "/metrics").text.contains(#"http_route="/api/keys/status""#)
        }
        await stack.stop()
        let requestLines = (stack.products!.log + stack.database!.log).split(separator: "\n").filter { $0.contains(" request") }
        for probe in ["/livez", "/readyz", "/health", "/metrics", "/api/keys/status"] {
            #expect(!requestLines.contains { $0.contains("path=\(probe) ") }, "\(probe) is not logged at info")
        }
        #expect(requestLines.contains { $0.contains("path=/products ") }, "a client request is")
    }

    @Test("--log-format json writes one JSON object per line")
    func jsonLogs() async throws {
        let stack = try Stack()
        try await stack.startDatabase()
        try await stack.startProducts(["--log-format", "json"])
        try await stack.waitForStatus("healthy")
        _ = try await HTTP.send(.GET, stack.productsURL + "/products", headers: [("X-Request-ID", "json-1")])
        await stack.stop()
        let lines = stack.products!.log.split(separator: "\n")
        #expect(lines.count >= 3)
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["level"] is String && object?["message"] is String && object?["timestamp"] is String, "\(line)")
        }
        #expect(lines.contains { $0.contains(#""request_id":"json-1""#) })
    }

    @Test("/livez answers at once; /readyz is 503 until the catalog is loaded; /health says why")
    func readiness() async throws {
        let stack = try Stack()
        try await stack.startProducts()
        #expect(try await HTTP.get(stack.productsURL + "/livez").status == 200)
        let notReady = try await HTTP.get(stack.productsURL + "/readyz")
        #expect(notReady.status == 503 && notReady.error?.code == "not_ready")
        let health = try await HTTP.get(stack.productsURL + "/health").object
        #expect(health["cache_ready"] as? Bool == false)
        #expect((health["database_service"] as? [String: Any])?["status"] as? String == "unreachable")
        try await stack.startDatabase()
        try await eventually("ready once the catalog loads") { try await HTTP.get(stack.productsURL + "/readyz").status == 200 }
        let healthy = try await HTTP.get(stack.productsURL + "/health").object
        let database = try #require(healthy["database_service"] as? [String: Any])
        #expect(database["version"] as? String == ServiceVersion.current && database["backend"] as? String == "sqlite")
        #expect(healthy["version"] as? String == ServiceVersion.current && healthy["cache_ready"] as? Bool == true)
        let storage = try await HTTP.get(stack.databaseURL + "/health").object
        #expect(storage["schema_version"] as? String == "v4-writer-backlogs" && storage["pool"] is String)
        #expect(try await HTTP.get(stack.databaseURL + "/readyz").status == 200)
        await stack.stop()
    }

    @Test("two Database Service processes over one PostgreSQL, applying interleaved batches for the same products, end at the newest",
          .enabled(if: Backend.postgresURL != nil))
    func twoProcessesOnePostgres() async throws {
        let stack = try Stack(.postgresql)
        try await stack.startDatabase()
        let second = try await ServiceProcess.start(
            "database-service", ["--port", "0", "--database", stack.databaseLocation], in: stack.directory)
        defer { second.kill() }
        let urls = [stack.databaseURL, second.baseURL]
        func batch(_ version: Int) -> String {
            let operations = (0..<20).map { index in
                #"{"op":"upsert","tenant":"default","product":{"id":"shared-\#(index)","name":"v\#(version)","type":"physical","description":null,"images":[],"active":true,"metadata":{},"created_at":"2026-01-01T00:00:00.000Z","updated_at":"2026-01-01T00:00:00.000Z","version":\#(version)}}"#
            }
            return #"{"operations":[\#(operations.shuffled().joined(separator: ","))]}"#
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (processIndex, url) in urls.enumerated() {
                group.addTask {
                    // Each process gets every other version, so each product's versions alternate between them.
                    for version in stride(from: 1 + processIndex, through: 60, by: 2) {
                        let response = try await HTTP.post(url + "/api/products/batch", json: batch(version))
                        try #require(response.status == 200, "\(response.text)")
                    }
                }
            }
            try await group.waitForAll()
        }
        let stored = try await HTTP.get(stack.databaseURL + "/api/products?limit=100").json(ProductPage.self).products
        #expect(stored.count == 20)
        #expect(stored.allSatisfy { $0.version == 60 && $0.name == "v60" }, "\(stored.map { "\($0.id)@\($0.version)" })")
        await stack.stop()
    }
}
