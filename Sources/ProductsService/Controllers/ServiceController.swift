import Hummingbird
import Shared

/// `/`, `/health` and `/livez`: what the service is and how it is doing.
struct ServiceController<Context: RequestContext> {
    let replica: Replica
    let databaseServiceURL: String
    /// A backlog older than this makes the service `degraded`.
    let backlogAlertAfter: Duration
    /// A change feed further behind than this makes the service `degraded`.
    let feedLagAlertAfter: Duration
    let authenticator: Authenticator
    /// What `/health`'s detailed view asks for (`Authorization: Bearer`); nil: no token is set, and the detail is public.
    let serviceToken: String?
    let probe: DatabaseProbe

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .get("/", use: index)
            .get("health", use: health)
            .get("livez", use: live)
            .get("readyz", use: ready)
    }

    /// GET /: a short description of the service and its endpoints.
    @Sendable func index(_ request: Request, context: Context) -> Response {
        .json(ServiceIndex(service: "products-service", cacheSize: replica.totals.products, healthCheck: "/health", endpoints: endpointDescriptions))
    }

    /// GET /health: `starting` until the catalog is loaded, `degraded` when the Database Service is unreachable, the
    /// write backlog too old or the feed too far behind, `unhealthy` (503) when writes cannot be journaled; `reasons`
    /// gives the codes. The Database Service is probed at most once a second, however often this is asked. The
    /// detail (the Database Service's address and state, the backlog, the feed) needs the service token, when one
    /// is set.
    @Sendable func health(_ request: Request, context: Context) async -> Response {
        let database = await probe.outcome()
        let persistence = PersistenceReport(replica.persistence, tenant: nil)
        let feed = FeedReport(replica.replication.feed.snapshot, writer: replica.writerNode)
        var reasons: [String] = []
        if persistence.journalError != nil { reasons.append("journal_unavailable") }
        if !replica.isLoaded { reasons.append("catalog_loading") }
        if !database.isConnected { reasons.append(database.status == "unreachable" ? "database_unreachable" : "database_error") }
        if (persistence.oldestPendingAgeSeconds ?? 0) > backlogAlertAfter.seconds { reasons.append("backlog_behind") }
        if (feed.lagSeconds ?? 0) > feedLagAlertAfter.seconds { reasons.append("feed_behind") }
        let status =
            if persistence.journalError != nil { "unhealthy" } else if !replica.isLoaded { "starting" } else if reasons.isEmpty { "healthy" } else { "degraded" }
        let httpStatus: HTTPResponse.Status = status == "unhealthy" ? .serviceUnavailable : .ok
        guard showsDetail(request) else {
            return .json(PublicHealthReport(status: status, reasons: reasons, timestamp: Timestamp.now(), service: "products-service"), status: httpStatus)
        }
        let report = HealthReport(
            status: status, reasons: reasons, timestamp: Timestamp.now(), service: "products-service", version: ServiceVersion.current,
            auth: authenticator.mode.reported, cacheReady: replica.isLoaded, cacheEntries: replica.totals.products,
            databaseService: DatabaseStatus(
                url: databaseServiceURL, status: database.status, latencyMs: database.latencyMs, version: database.version,
                backend: database.backend, lastError: database.error ?? persistence.lastError),
            persistence: persistence, feed: feed)
        return .json(report, status: httpStatus)
    }

    /// Whether the request may see `/health`'s detail: it bears the service token, or none is set.
    private func showsDetail(_ request: Request) -> Bool {
        guard let serviceToken else { return true }
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else { return false }
        return APIKey.constantTimeEquals(String(header.dropFirst("Bearer ".count)), serviceToken)
    }

    /// GET /livez: the process is up; a static body, also the benchmark's framework ceiling.
    @Sendable func live(_ request: Request, context: Context) -> Response {
        .json(buffer: liveBody)
    }

    /// GET /readyz: 200 once the catalog is loaded while the journal can be written; 503 otherwise.
    @Sendable func ready(_ request: Request, context: Context) throws -> Response {
        if let failure = replica.writeFailure {
            throw APIError.serviceUnavailable("journal_unavailable", "The journal cannot be written; writes are refused (\(failure))")
        }
        guard replica.isLoaded else {
            throw APIError.serviceUnavailable("not_ready", "The catalog is still loading from the Database Service")
        }
        return .json(buffer: liveBody)
    }

}

private let liveBody = ByteBuffer(string: #"{"status":"ok"}"#)

private let endpointDescriptions: [String: String] = [
    "GET /": "this description",
    "GET /health": "status and reasons; the detail (journal, feed, Database Service) with the service token",
    "GET /livez": "liveness probe",
    "GET /readyz": "readiness probe: 503 until the catalog is loaded",
    "GET /metrics": "Prometheus metrics",
    "POST /products": "create a product {\(Product.editableFields.map { $0.access == .required ? $0.name : $0.name + "?" }.joined(separator: ", "))} (Idempotency-Key)",
    "GET /products": "list products in creation order (?\(ProductQuery.parameterNames.sorted().map { $0 + "=" }.joined(separator: "&")))",
    "GET /products/{id}": "get one product (If-None-Match)",
    "PUT /products/{id}": "replace a product's \(Product.editableFields.map(\.name).joined(separator: ", ")) (If-Match)",
    "PATCH /products/{id}": "update some fields; metadata merges, null removes a key (If-Match, Idempotency-Key)",
    "DELETE /products/{id}": "delete a product (If-Match)",
    "GET /products/{id}/versions": "a product's past versions, newest first",
    "POST /products/{id}/restore": "bring back a version of a product {version}",
    "GET /exports/products.jsonl": "the catalog as JSON Lines, streamed (filters as GET /products)",
    "POST /imports": "import products from JSON Lines as a background job (?mode=create|upsert&error_policy=reject_all|skip_invalid, Idempotency-Key)",
    "GET /imports/{id}": "an import job's status, counts, progress and times",
    "GET /imports/{id}/errors": "the lines an import rejected, with line, code and param",
    "GET /events": "the shop's product events",
    "GET /webhook_endpoints": "the shop's webhook endpoints (and POST, GET/PATCH/DELETE /webhook_endpoints/{id})",
    "GET /openapi.json": "the OpenAPI 3.1 document",
    "GET /docs": "interactive API documentation",
    "GET /cache/stats": "cache and write-behind statistics",
    "POST /cache/sync": "flush pending writes and reconcile the cache with the Database Service",
]

/// The body of `GET /`.
struct ServiceIndex: Encodable {
    var service: String
    var cacheSize: Int
    var healthCheck: String
    var endpoints: [String: String]

    enum CodingKeys: String, CodingKey {
        case service, endpoints
        case cacheSize = "cache_size"
        case healthCheck = "health_check"
    }
}

/// The body of `GET /health` for anyone: the status and why, nothing about what is behind the service.
struct PublicHealthReport: Encodable {
    var status: String
    var reasons: [String]
    var timestamp: String
    var service: String
}

/// The body of `GET /health` with the service token.
struct HealthReport: Encodable {
    var status: String
    var reasons: [String]
    var timestamp: String
    var service: String
    var version: String
    /// `disabled` (no API key exists: open as tenant `default`), `enabled`, or `unknown` until the Database
    /// Service has answered once.
    var auth: String
    /// Whether the full catalog is loaded: the cache then answers every read.
    var cacheReady: Bool
    var cacheEntries: Int
    var databaseService: DatabaseStatus
    var persistence: PersistenceReport
    var feed: FeedReport

    enum CodingKeys: String, CodingKey {
        case status, reasons, timestamp, service, version, persistence, auth, feed
        case cacheReady = "cache_ready"
        case cacheEntries = "cache_entries"
        case databaseService = "database_service"
    }
}

/// The change feed as `/health` reports it: this replica's position, how far behind it is, the last error.
struct FeedReport: Encodable {
    var cursor: String?
    var lagSeconds: Double?
    var applied: Int
    var writer: Int64?
    var lastError: String?
    var lastErrorAt: String?

    init(_ snapshot: FeedState.Snapshot, writer: Int64?) {
        cursor = snapshot.cursor?.description
        lagSeconds = snapshot.lagSeconds().map { ($0 * 1000).rounded() / 1000 }
        applied = snapshot.applied
        self.writer = writer
        lastError = snapshot.lastError
        lastErrorAt = snapshot.lastErrorAt
    }

    enum CodingKeys: String, CodingKey {
        case cursor, applied, writer
        case lagSeconds = "lag_seconds"
        case lastError = "last_error"
        case lastErrorAt = "last_error_at"
    }
}

/// The Database Service as `/health` sees it.
struct DatabaseStatus: Encodable {
    var url: String
    var status: String
    var latencyMs: Double
    /// The Database Service's version and storage backend, when it answered.
    var version: String?
    var backend: String?
    /// Why the last call to it failed, if the last one did (a health check, or a batch of writes).
    var lastError: String?

    enum CodingKeys: String, CodingKey {
        case url, status, version, backend
        case latencyMs = "latency_ms"
        case lastError = "last_error"
    }
}

extension Duration {
    /// The duration in seconds, as a floating-point number.
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

extension Authenticator.Mode {
    var reported: String {
        switch self {
        case .open: "disabled"
        case .enforced: "enabled"
        case .unknown: "unknown"
        }
    }
}
