import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Shared
import TestSupport
import Testing

/// An HTTP response as the tests see it.
struct HTTPResult: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var body: ByteBuffer

    var text: String { String(buffer: body) }

    func json<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        try JSONDecoder().decode(type, from: body)
    }

    /// The body as a JSON object.
    var object: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] ?? [:]
    }

    var error: APIError.Body? { try? json(APIError.Body.self) }
}

/// Plain HTTP calls over the shared client.
enum HTTP {
    static func send(
        _ method: HTTPMethod, _ url: String, body: String? = nil, bytes: [UInt8]? = nil, contentType: String? = "application/json",
        headers: [(String, String)] = []
    ) async throws -> HTTPResult {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let payload = body.map({ ByteBuffer(string: $0) }) ?? bytes.map({ ByteBuffer(bytes: $0) }) {
            if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
            request.body = .bytes(payload)
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        return HTTPResult(status: Int(response.status.code), headers: response.headers, body: try await response.body.collect(upTo: 100 << 20))
    }

    static func get(_ url: String) async throws -> HTTPResult { try await send(.GET, url) }

    static func post(_ url: String, json: String) async throws -> HTTPResult { try await send(.POST, url, body: json) }

    static func delete(_ url: String) async throws -> HTTPResult { try await send(.DELETE, url) }
}

/// The Database Service's storage in an integration test: SQLite always, PostgreSQL when `TEST_POSTGRES_URL`
/// names a server (`scripts/test` starts one).
enum Backend: String, Sendable, CustomTestStringConvertible {
    case sqlite, postgresql

    var testDescription: String { rawValue }

    static let postgresURL = ProcessInfo.processInfo.environment["TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    static var available: [Backend] { postgresURL == nil ? [.sqlite] : [.sqlite, .postgresql] }

    /// A new, empty database on the test server (with psql, which comes with the server); returns its URL.
    static func createPostgresDatabase() throws -> String {
        let admin = try #require(postgresURL)
        let name = "products_it_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["psql", admin, "-q", "-c", "CREATE DATABASE \(name)"]
        try process.run()
        try #require(process.waitForExit(timeout: .seconds(120)) == 0, "psql could not create a database")
        var components = try #require(URLComponents(string: admin))
        components.path = "/" + name
        // A full parallel run on two shared cores has kept a starting Database Service from its first answer for
        // more than the default 10 s: the tests' processes allow a minute, as the pool tests do.
        components.queryItems = (components.queryItems ?? []) + [URLQueryItem(name: "connect_timeout", value: "60")]
        return try #require(components.string)
    }
}

/// Both services for one test: the Database Service on a fixed port (so it can be restarted in place),
/// its storage (SQLite, or a fresh PostgreSQL database) and the journal in a private directory.
final class Stack: @unchecked Sendable {
    let directory: TemporaryDirectory
    let databasePort: Int
    let backend: Backend
    /// The PostgreSQL database, when the backend is PostgreSQL.
    let postgresURL: String?
    var database: ServiceProcess?
    var products: ServiceProcess?
    /// The shared secret both services are started with, if any.
    var serviceToken: String?

    var sqlitePath: String { directory.path + "/db/products.sqlite" }
    var dataDirectory: String { directory.path + "/products" }
    var databaseURL: String { "http://127.0.0.1:\(databasePort)" }
    var productsURL: String { products!.baseURL }

    /// A stack on `backend`; on PostgreSQL, on a fresh database of the test server unless `postgresURL` names one.
    init(_ backend: Backend = .sqlite, postgresURL: String? = nil) throws {
        directory = try TemporaryDirectory()
        databasePort = try freePort()
        self.backend = postgresURL == nil ? backend : .postgresql
        self.postgresURL = try postgresURL ?? (backend == .postgresql ? Backend.createPostgresDatabase() : nil)
    }

    /// The Database Service's `--database`.
    var databaseLocation: String { postgresURL ?? sqlitePath }

    @discardableResult
    func startDatabase(_ extra: [String] = [], environment: [String: String] = [:]) async throws -> ServiceProcess {
        let process = try await ServiceProcess.start(
            "database-service", ["--port", "\(databasePort)", "--database", databaseLocation] + tokenArguments + extra,
            environment: environment, in: directory)
        database = process
        return process
    }

    @discardableResult
    func startProducts(_ extra: [String] = []) async throws -> ServiceProcess {
        let process = try await ServiceProcess.start(
            "products-service",
            ["--port", "0", "--database-service-url", databaseURL, "--data-dir", dataDirectory, "--retry-max-delay", "0.5"]
                + tokenArguments + extra,
            in: directory)
        products = process
        return process
    }

    private var tokenArguments: [String] { serviceToken.map { ["--service-token", $0] } ?? [] }

    /// The Products Service's `/health`, in detail: with the service token when the stack has one.
    func health() async throws -> [String: Any] {
        try await HTTP.send(.GET, productsURL + "/health", headers: serviceToken.map { [("Authorization", "Bearer " + $0)] } ?? []).object
    }

    /// Runs `database-service keys ...` on this stack's database; returns its output.
    func keys(_ arguments: [String]) async throws -> String {
        let result = try await ServiceProcess.runToExit("database-service", ["keys"] + arguments + ["--database", databaseLocation], in: directory)
        try #require(result.status == 0, "keys \(arguments) exited \(result.status): \(result.output)")
        return result.output
    }

    /// Creates an API key with the CLI; returns its public id and the key.
    func createKey(tenant: String, readOnly: Bool = false) async throws -> (id: String, key: String) {
        let output = try await keys(["create", "--tenant", tenant] + (readOnly ? ["--read-only"] : []))
        let id = try #require(output.firstMatch(of: /key_[0-9A-Za-z]+/)).output
        let key = try #require(output.firstMatch(of: /sk_[0-9A-Za-z]{43}/)).output
        return (String(id), String(key))
    }

    /// Every log line both services wrote so far (the keys command's own output excluded: it prints keys by design).
    var serviceLogs: String {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasSuffix(".log") && !$0.contains("-exit-") }
            .compactMap { try? String(contentsOfFile: directory.path + "/" + $0, encoding: .utf8) }.joined(separator: "\n")
    }

    /// Starts both, and waits until the Products Service has loaded the catalog.
    static func started(_ productsArguments: [String] = [], backend: Backend = .sqlite) async throws -> Stack {
        let stack = try Stack(backend)
        try await stack.startDatabase()
        try await stack.startProducts(productsArguments)
        try await stack.waitForStatus("healthy")
        return stack
    }

    func waitForStatus(_ status: String, timeout: Duration = .seconds(120)) async throws {
        try await eventually("products-service /health is \(status)", timeout: timeout) {
            try await HTTP.get(self.productsURL + "/health").object["status"] as? String == status
        }
    }

    /// Waits until every acknowledged write has been confirmed by the Database Service.
    func waitUntilPersisted(key: String? = nil, timeout: Duration = .seconds(120)) async throws {
        try await eventually("no pending writes", timeout: timeout) {
            let stats = try await HTTP.send(.GET, self.productsURL + "/cache/stats", headers: key.map { [("Authorization", "Bearer " + $0)] } ?? [])
            return stats.object["pending_writes"] as? Int == 0
        }
    }

    /// Creates a product through the Products Service and returns it.
    func create(_ name: String, type: String? = nil, metadata: [String: String]? = nil) async throws -> Product {
        var body: [String: Any] = ["name": name]
        if let type { body["type"] = type }
        if let metadata { body["metadata"] = metadata }
        let json = String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)
        let response = try await HTTP.post(productsURL + "/products", json: json)
        try #require(response.status == 201, "create answered \(response.status): \(response.text)")
        return try response.json(Product.self)
    }

    /// Every live product the Database Service holds, through all pages.
    func databaseProducts() async throws -> [Product] {
        var products: [Product] = []
        var cursor = ""
        while true {
            let page = try await HTTP.get(databaseURL + "/api/products?limit=1000" + cursor).json(ProductPage.self)
            products += page.products
            guard page.hasMore, let last = page.products.last else { return products }
            cursor = "&starting_after=\(last.id)"
        }
    }

    /// The Products Service's listing (up to 1000).
    func listedProducts() async throws -> [Product] {
        try await HTTP.get(productsURL + "/products?limit=1000").json([Product].self)
    }

    func stop() async {
        if let products { _ = try? await products.terminate() }
        if let database { _ = try? await database.terminate() }
    }

    deinit {
        products?.kill()
        database?.kill()
    }
}
