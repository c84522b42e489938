import AsyncHTTPClient
import Foundation
import HTTPTypes
import Metrics
import NIOCore
import NIOHTTP1
import Shared

/// The Database Service client over HTTP, on one long-lived, pooled `HTTPClient`.
struct HTTPDatabaseServiceClient: DatabaseServiceClient {
    let http: HTTPClient
    let baseURL: String
    /// Sent as `Authorization: Bearer` on every call; the Database Service trusts the tenant header only with it.
    let serviceToken: String?
    /// Deadline for single reads on the request path (read-through on a cache miss, health).
    let readTimeout: TimeAmount
    /// Deadline for bulk calls (catalog pages, write batches).
    let bulkTimeout: TimeAmount
    /// Deadline for a coordinated write (`If-Match`, `Idempotency-Key`), which its client waits on: a write
    /// waiting on a busy database deserves longer than a read, and a 503 after it may still have been applied.
    let writeTimeout: TimeAmount

    init(
        http: HTTPClient, baseURL: String, serviceToken: String? = nil, readTimeout: TimeAmount = .seconds(2),
        bulkTimeout: TimeAmount = .seconds(30), writeTimeout: TimeAmount = .seconds(10)
    ) {
        self.http = http
        self.serviceToken = serviceToken
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.readTimeout = readTimeout
        self.bulkTimeout = bulkTimeout
        self.writeTimeout = writeTimeout
    }

    func product(tenant: String, id: String) async throws(DatabaseClientError) -> Product? {
        let response = try await send(.GET, "/api/products/\(Self.escape(id))", route: "/api/products/{id}", tenant: tenant, timeout: readTimeout, accepting: [200, 404])
        return response.status == 404 ? nil : try decode(Product.self, response.body)
    }

    func listProducts(tenant: String, query: ProductQuery) async throws(DatabaseClientError) -> ProductPage {
        let body = try await listProductsJSON(tenant: tenant, query: query)
        do { return try ProductPage(json: body) } catch { throw .invalidResponse("ProductPage: \(error)") }
    }

    func listProductsJSON(tenant: String, query: ProductQuery) async throws(DatabaseClientError) -> ByteBuffer {
        let path = "/api/products?" + query.queryString(cursor: query.cursor)
        return try await send(.GET, path, route: "/api/products", tenant: tenant, timeout: bulkTimeout).body
    }

    func apply(json body: ByteBuffer, count: Int) async throws(DatabaseClientError) -> WriteBatchResult {
        let response = try await send(.POST, "/api/products/batch", route: "/api/products/batch", tenant: nil, body: body, timeout: bulkTimeout)
        let result: WriteBatchResult
        do { result = try WriteBatchResult(json: response.body) } catch { throw .invalidResponse("WriteBatchResult: \(error)") }
        guard result.results.count == count else {
            throw .invalidResponse("batch of \(count) answered with \(result.results.count) results")
        }
        return result
    }

    func write(_ write: CoordinatedWrite) async throws(DatabaseClientError) -> CoordinatedResult {
        let body: ByteBuffer
        do { body = ByteBuffer(bytes: try JSONCoding.encoder.encode(write)) } catch { throw .invalidResponse("encoding the write: \(error)") }
        let response = try await send(.POST, "/api/products/write", route: "/api/products/write", tenant: nil, body: body, timeout: writeTimeout)
        return try decode(CoordinatedResult.self, response.body)
    }

    func health() async throws(DatabaseClientError) -> DatabaseHealth {
        let response = try await send(.GET, "/health", route: "/health", tenant: nil, timeout: readTimeout)
        return try decode(DatabaseHealth.self, response.body)
    }

    func verifyKey(hash: String) async throws(DatabaseClientError) -> KeyGrant? {
        var body = ByteBuffer(string: #"{"key_hash":"#)
        JSONWriter.writeString(hash, into: &body)
        body.writeString("}")
        let response = try await send(.POST, "/api/keys/verify", route: "/api/keys/verify", tenant: nil, body: body, timeout: readTimeout, accepting: [200, 404])
        return response.status == 404 ? nil : try decode(KeyGrant.self, response.body)
    }

    func keyStatus() async throws(DatabaseClientError) -> KeyStatus {
        try decode(KeyStatus.self, try await send(.GET, "/api/keys/status", route: "/api/keys/status", tenant: nil, timeout: readTimeout).body)
    }

    func tenants() async throws(DatabaseClientError) -> [String] {
        try decode(TenantList.self, try await send(.GET, "/api/tenants", route: "/api/tenants", tenant: nil, timeout: bulkTimeout).body).tenants
    }

    func changes(after cursor: ChangeCursor, limit: Int, wait: Duration) async throws(DatabaseClientError) -> ChangeFeedRead {
        let seconds = Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18
        let response = try await send(
            .GET, "/api/changes?after=\(cursor)&limit=\(limit)&wait=\(seconds)", route: "/api/changes", tenant: nil,
            timeout: bulkTimeout + .nanoseconds(Int64(seconds * 1e9)), accepting: [200, 410])
        guard response.status != 410 else {
            let code = (try? JSONCoding.decoder.decode(APIError.Body.self, from: response.body))?.code
            return code == "cursor_ahead" ? .wentBack : .expired
        }
        do { return .page(try ChangePage(json: response.body)) } catch { throw .invalidResponse("ChangePage: \(error)") }
    }

    func changeHead() async throws(DatabaseClientError) -> ChangeCursor {
        try decode(ChangeHead.self, try await send(.GET, "/api/changes/head", route: "/api/changes/head", tenant: nil, timeout: readTimeout).body).cursor
    }

    func writerNode(replicaID: String, preferred: Int64?) async throws(DatabaseClientError) -> Int64 {
        var body = ByteBuffer(string: #"{"replica_id":"#)
        JSONWriter.writeString(replicaID, into: &body)
        if let preferred { body.writeString(",\"preferred\":\(preferred)") }
        body.writeString("}")
        return try decode(WriterRegistration.self, try await send(.POST, "/api/writers", route: "/api/writers", tenant: nil, body: body, timeout: readTimeout).body).node
    }

    func reportBacklog(node: Int64, _ report: BacklogReport) async throws(DatabaseClientError) {
        let body = ByteBuffer(string: #"{"clear_through_ms":\#(report.clearThroughMs)}"#)
        _ = try await send(.PUT, "/api/writers/\(node)/backlog", route: "/api/writers/{node}/backlog", tenant: nil, body: body, timeout: readTimeout, accepting: [204])
    }

    func writerBacklogs() async throws(DatabaseClientError) -> [WriterBacklog] {
        try decode(WriterBacklogList.self, try await send(.GET, "/api/writers/backlogs", route: "/api/writers/backlogs", tenant: nil, timeout: readTimeout).body).data
    }

    func forward(
        _ method: HTTPRequest.Method, _ route: DatabaseRoute, tenant: String, body: ByteBuffer?
    ) async throws(DatabaseClientError) -> ForwardedResponse {
        // Creating or changing a webhook endpoint resolves its host: allow for a slow resolver.
        let response = try await send(
            HTTPMethod(rawValue: method.rawValue), route.target, route: route.name, tenant: tenant, body: body, timeout: bulkTimeout,
            accepting: Set(100..<600))
        return ForwardedResponse(status: response.status, headers: response.headers.map { ($0.name, $0.value) }, body: response.body)
    }

    private func send(
        _ method: HTTPMethod, _ path: String, route: String, tenant: String?, body: ByteBuffer? = nil, timeout: TimeAmount,
        accepting accepted: Set<Int> = [200, 201]
    ) async throws(DatabaseClientError) -> (status: Int, body: ByteBuffer, headers: HTTPHeaders) {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let tenant { request.headers.add(name: HTTPField.Name.tenantID.rawName, value: tenant) }
        if let serviceToken { request.headers.add(name: HTTPField.Name.authorization.rawName, value: "Bearer " + serviceToken) }
        // The request this call is made for (none for background work: then a trace of its own).
        let trace = RequestTrace.current ?? RequestTrace(headers: [:])
        request.headers.add(name: HTTPField.Name.xRequestID.rawName, value: trace.requestID)
        request.headers.add(name: "traceparent", value: trace.outgoingTraceparent())
        if let body {
            request.headers.add(name: HTTPField.Name.contentType.rawName, value: "application/json")
            request.body = .bytes(body)
        }
        let status: Int
        let bytes: ByteBuffer
        let headers: HTTPHeaders
        let started = ContinuousClock.now
        let operation = "\(method.rawValue) \(route)"
        do {
            let response = try await http.execute(request, timeout: timeout)
            status = Int(response.status.code)
            headers = response.headers
            bytes = try await response.body.collect(upTo: 64 * 1024 * 1024)
        } catch {
            Self.callDuration(operation, outcome: "unreachable").recordInterval(since: started)
            throw .unreachable(String(describing: error))
        }
        guard accepted.contains(status) else {
            Self.callDuration(operation, outcome: "http_\(status)").recordInterval(since: started)
            throw .rejected(status: status, body: try? JSONCoding.decoder.decode(APIError.Body.self, from: bytes))
        }
        Self.callDuration(operation, outcome: "ok").recordInterval(since: started)
        return (status, bytes, headers)
    }

    private func decode<T: Decodable>(_ type: T.Type, _ buffer: ByteBuffer) throws(DatabaseClientError) -> T {
        do { return try JSONCoding.decoder.decode(type, from: buffer) } catch { throw .invalidResponse("\(T.self): \(error)") }
    }

    /// `products_database_call_duration_seconds{operation, outcome}`: every call to the Database Service.
    private static func callDuration(_ operation: String, outcome: String) -> Metrics.Timer {
        Metrics.Timer(label: "products_database_call_duration", dimensions: [("operation", operation), ("outcome", outcome)])
    }

    private static func escape(_ component: String) -> String {
        component.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/", "?", "&", "="])) ?? component
    }
}
