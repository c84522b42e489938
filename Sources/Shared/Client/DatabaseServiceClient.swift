import Foundation
import HTTPTypes
import NIOCore

/// The calls the Products Service makes to the Database Service.
package protocol DatabaseServiceClient: Sendable {
    /// The product, or nil when the Database Service has none (or only a tombstone).
    func product(tenant: String, id: String) async throws(DatabaseClientError) -> Product?
    /// One page of live products in id order, filtered and paged as the query says.
    func listProducts(tenant: String, query: ProductQuery) async throws(DatabaseClientError) -> ProductPage
    /// The same page as the Database Service wrote it, `{"products":[...],"has_more":...}`: for a caller that
    /// keeps products as JSON and need not decode them.
    func listProductsJSON(tenant: String, query: ProductQuery) async throws(DatabaseClientError) -> ByteBuffer
    /// One write decided by the Database Service, with its precondition and idempotency key.
    func write(_ write: CoordinatedWrite) async throws(DatabaseClientError) -> CoordinatedResult
    /// Applies a batch of versioned writes in one transaction.
    func apply(_ batch: WriteBatch) async throws(DatabaseClientError) -> WriteBatchResult
    /// The same for a batch already written as `{"operations":[...]}` with `count` operations, by a caller that
    /// holds its writes as JSON.
    func apply(json body: ByteBuffer, count: Int) async throws(DatabaseClientError) -> WriteBatchResult
    /// The Database Service's health report.
    func health() async throws(DatabaseClientError) -> DatabaseHealth
    /// The grant of the active API key with this SHA-256, or nil when there is none.
    func verifyKey(hash: String) async throws(DatabaseClientError) -> KeyGrant?
    /// How many API keys are active.
    func keyStatus() async throws(DatabaseClientError) -> KeyStatus
    /// Every tenant with live products or an active key.
    func tenants() async throws(DatabaseClientError) -> [String]
    /// Changes after `cursor`, oldest first, waiting up to `wait` for one; nil when the cursor is past the
    /// log's retention (the caller reloads in full).
    func changes(after cursor: ChangeCursor, limit: Int, wait: Duration) async throws(DatabaseClientError) -> ChangePage?
    /// The newest change's cursor.
    func changeHead() async throws(DatabaseClientError) -> ChangeCursor
    /// This replica's writer number (`preferred` if free).
    func writerNode(replicaID: String, preferred: Int64?) async throws(DatabaseClientError) -> Int64
    /// A public API call the Database Service answers itself (events, webhook endpoints), for a tenant; its
    /// answer as given, whatever the status.
    func forward(_ method: HTTPRequest.Method, path: String, tenant: String, body: ByteBuffer?) async throws(DatabaseClientError) -> ForwardedResponse
}

extension DatabaseServiceClient {
    package func apply(json body: ByteBuffer, count: Int) async throws(DatabaseClientError) -> WriteBatchResult {
        let batch: WriteBatch
        do { batch = try WriteBatch(json: body) } catch { throw .invalidResponse("the batch to send: \(error)") }
        return try await apply(batch)
    }

    package func listProductsJSON(tenant: String, query: ProductQuery) async throws(DatabaseClientError) -> ByteBuffer {
        try await listProducts(tenant: tenant, query: query).json
    }
}

/// The Database Service's answer to a forwarded call.
package struct ForwardedResponse: Sendable {
    package var status: Int
    package var headers: [(name: String, value: String)]
    package var body: ByteBuffer

    package init(status: Int, headers: [(name: String, value: String)] = [], body: ByteBuffer) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    package func header(_ name: String) -> String? { headers.first { $0.name.lowercased() == name.lowercased() }?.value }
}

/// Why a call to the Database Service failed.
package enum DatabaseClientError: Error, Sendable, CustomStringConvertible {
    /// No answer: connection refused, timeout, reset. Worth retrying.
    case unreachable(String)
    /// An answer with an error status; 4xx means the request itself is at fault.
    case rejected(status: Int, body: APIError.Body?)
    /// An answer that could not be understood.
    case invalidResponse(String)

    package var isClientError: Bool {
        if case .rejected(let status, _) = self { return (400..<500).contains(status) && status != 408 && status != 429 }
        return false
    }

    package var description: String {
        switch self {
        case .unreachable(let reason): "unreachable: \(reason)"
        case .rejected(let status, let body): "HTTP \(status)\(body.map { ": \($0.code): \($0.error)" } ?? "")"
        case .invalidResponse(let reason): "invalid response: \(reason)"
        }
    }
}

/// The Database Service's `GET /health` body.
package struct DatabaseHealth: Codable, Sendable, Equatable {
    package var status: String
    package var service: String
    package var version: String?
    package var backend: String
    package var schemaVersion: String?
    package var pool: String?
    package var lastError: String?
    package var timestamp: String

    package init(
        status: String, service: String, version: String? = ServiceVersion.current, backend: String, schemaVersion: String? = nil,
        pool: String? = nil, lastError: String? = nil, timestamp: String
    ) {
        self.status = status
        self.service = service
        self.version = version
        self.backend = backend
        self.schemaVersion = schemaVersion
        self.pool = pool
        self.lastError = lastError
        self.timestamp = timestamp
    }

    enum CodingKeys: String, CodingKey {
        case status, service, version, backend, pool, timestamp
        case schemaVersion = "schema_version"
        case lastError = "last_error"
    }
}

/// The version both services report.
package enum ServiceVersion {
    package static let current = "1.0.0"
}
