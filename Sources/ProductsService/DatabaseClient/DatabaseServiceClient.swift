import Foundation
import HTTPTypes
import NIOCore
import Shared

/// The calls the Products Service makes to the Database Service.
protocol DatabaseServiceClient: Sendable {
    /// The product, or nil when the Database Service has none (or only a tombstone).
    func product(tenant: String, id: String) async throws(DatabaseClientError) -> Product?
    /// One page of live products in id order, filtered and paged as the query says.
    func listProducts(tenant: String, query: ProductQuery) async throws(DatabaseClientError) -> ProductPage
    /// The same page as the Database Service wrote it, `{"products":[...],"has_more":...}`: for a caller that
    /// keeps products as JSON and need not decode them.
    func listProductsJSON(tenant: String, query: ProductQuery) async throws(DatabaseClientError) -> ByteBuffer
    /// One write decided by the Database Service, with its precondition and idempotency key.
    func write(_ write: CoordinatedWrite) async throws(DatabaseClientError) -> CoordinatedResult
    /// Applies a batch of versioned writes in one transaction: `{"operations":[...]}` with `count` operations, as
    /// the journal's lines or an import's rows already hold them.
    func apply(json body: ByteBuffer, count: Int) async throws(DatabaseClientError) -> WriteBatchResult
    /// The Database Service's health report.
    func health() async throws(DatabaseClientError) -> DatabaseHealth
    /// The grant of the active API key with this SHA-256, or nil when there is none.
    func verifyKey(hash: String) async throws(DatabaseClientError) -> KeyGrant?
    /// How many API keys are active.
    func keyStatus() async throws(DatabaseClientError) -> KeyStatus
    /// Every tenant with live products or an active key.
    func tenants() async throws(DatabaseClientError) -> [String]
    /// Changes after `cursor`, oldest first, waiting up to `wait` for one; or why the log cannot go on from the
    /// cursor (the caller reloads in full).
    func changes(after cursor: ChangeCursor, limit: Int, wait: Duration) async throws(DatabaseClientError) -> ChangeFeedRead
    /// The newest change's cursor.
    func changeHead() async throws(DatabaseClientError) -> ChangeCursor
    /// This replica's writer number (`preferred` if free).
    func writerNode(replicaID: String, preferred: Int64?) async throws(DatabaseClientError) -> Int64
    /// Tells the Database Service what this replica's writes are confirmed through (`BacklogReport`).
    func reportBacklog(node: Int64, _ report: BacklogReport) async throws(DatabaseClientError)
    /// Every replica's last backlog report of the past hour.
    func writerBacklogs() async throws(DatabaseClientError) -> [WriterBacklog]
    /// A call the Database Service answers itself for a tenant (events, webhook endpoints, history and restore,
    /// import jobs); its answer as given, whatever the status.
    func forward(_ method: HTTPRequest.Method, _ route: DatabaseRoute, tenant: String, body: ByteBuffer?) async throws(DatabaseClientError) -> ForwardedResponse
}

/// The Database Service routes a tenant's call is passed to and answered from as they are. Only the client
/// turns them into paths.
enum DatabaseRoute: Sendable, Equatable {
    /// `/api/events?…`
    case events(query: String)
    /// `/api/webhook_endpoints` and below it (`subpath`: empty, `/{id}`, `/{id}/rotate_secret`, `/{id}/deliveries`).
    case webhookEndpoints(subpath: String, query: String?)
    /// `/api/categories` and below it (`subpath`: empty, `/{id}`, `/{id}/subtree`).
    case categories(subpath: String, query: String?)
    /// `/api/products/{id}/versions?…`
    case productVersions(id: String, query: String)
    /// `/api/products/{id}/restore`
    case restoreProduct(id: String)
    /// `/api/imports`, listed by the replica running them (`replicaID`) or created.
    case importJobs(replicaID: String?)
    /// `/api/imports/{id}`
    case importJob(id: String)
    /// `/api/imports/{id}/errors[?…]`
    case importErrors(id: String, query: String?)

    /// The path and query string.
    var target: String {
        func escape(_ component: String) -> String {
            component.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/", "?", "&", "="])) ?? component
        }
        func withQuery(_ path: String, _ query: String?) -> String { query.map { $0.isEmpty ? path : path + "?" + $0 } ?? path }
        return switch self {
        case .events(let query): withQuery("/api/events", query)
        case .webhookEndpoints(let subpath, let query): withQuery("/api/webhook_endpoints" + subpath, query)
        case .categories(let subpath, let query): withQuery("/api/categories" + subpath, query)
        case .productVersions(let id, let query): withQuery("/api/products/\(escape(id))/versions", query)
        case .restoreProduct(let id): "/api/products/\(escape(id))/restore"
        case .importJobs(let replicaID): withQuery("/api/imports", replicaID.map { "replica_id=" + escape($0) })
        case .importJob(let id): "/api/imports/\(escape(id))"
        case .importErrors(let id, let query): withQuery("/api/imports/\(escape(id))/errors", query)
        }
    }

    /// The route's name for metrics: no ids, no query.
    var name: String {
        switch self {
        case .events: "/api/events"
        case .webhookEndpoints: "/api/webhook_endpoints"
        case .categories: "/api/categories"
        case .productVersions: "/api/products/{id}/versions"
        case .restoreProduct: "/api/products/{id}/restore"
        case .importJobs: "/api/imports"
        case .importJob: "/api/imports/{id}"
        case .importErrors: "/api/imports/{id}/errors"
        }
    }
}

extension DatabaseServiceClient {
    func listProductsJSON(tenant: String, query: ProductQuery) async throws(DatabaseClientError) -> ByteBuffer {
        try await listProducts(tenant: tenant, query: query).json
    }
}

/// The Database Service's answer to a forwarded call.
struct ForwardedResponse: Sendable {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: ByteBuffer

    init(status: Int, headers: [(name: String, value: String)] = [], body: ByteBuffer) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    func header(_ name: String) -> String? { headers.first { $0.name.lowercased() == name.lowercased() }?.value }
}

/// Why a call to the Database Service failed.
enum DatabaseClientError: Error, Sendable, CustomStringConvertible {
    /// No answer: connection refused, timeout, reset. Worth retrying.
    case unreachable(String)
    /// An answer with an error status; 4xx means the request itself is at fault.
    case rejected(status: Int, body: APIError.Body?)
    /// An answer that could not be understood.
    case invalidResponse(String)

    var isClientError: Bool {
        if case .rejected(let status, _) = self { return (400..<500).contains(status) && status != 408 && status != 429 }
        return false
    }

    var description: String {
        switch self {
        case .unreachable(let reason): "unreachable: \(reason)"
        case .rejected(let status, let body): "HTTP \(status)\(body.map { ": \($0.code): \($0.error)" } ?? "")"
        case .invalidResponse(let reason): "invalid response: \(reason)"
        }
    }
}


/// What `/api/changes` answers a replica following it.
enum ChangeFeedRead: Sendable, Equatable {
    case page(ChangePage)
    /// Changes after the cursor were purged (410 `cursor_expired`).
    case expired
    /// The log does not reach the cursor (410 `cursor_ahead`): the database lost changes the replica saw, so what
    /// the replica holds may be newer than what the database does.
    case wentBack
}
