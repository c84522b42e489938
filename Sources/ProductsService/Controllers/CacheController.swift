import Hummingbird
import Shared

/// `/cache`: statistics about the cache and the write-behind queue, and reconciliation with the Database Service.
struct CacheController<Context: TenantRequestContext> {
    let replica: Replica
    let syncFlushTimeout: Duration
    let auth: AuthMiddleware<Context>

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .add(middleware: auth)
            .get("stats", use: stats)
            .post("sync", use: sync)
    }

    /// GET /cache/stats: cache size and types, hit rate, and the persistence backlog with its dead letters.
    @Sendable func stats(_ request: Request, context: Context) async throws -> Response {
        let statistics = replica.statistics(tenant: context.tenant)
        var persistence = PersistenceReport(replica.persistence, tenant: context.tenant)
        persistence.pending = replica.journal.unconfirmedCount(tenant: context.tenant)
        let kilobytes = Double(statistics.approximateBytes) / 1024
        return .json(
            CacheStats(
                totalProducts: statistics.totalProducts,
                resident: replica.isAuthoritative(tenant: context.tenant),
                memoryUsageKB: (kilobytes * 100).rounded() / 100,
                memoryUsageMB: (kilobytes / 1024 * 100).rounded() / 100,
                productTypes: statistics.productTypes,
                hits: statistics.hits,
                misses: statistics.misses,
                pendingWrites: persistence.pending,
                persistence: persistence,
                timestamp: Timestamp.now()))
    }

    /// POST /cache/sync: flushes pending writes, then reconciles the cache with the Database Service's full catalog.
    @Sendable func sync(_ request: Request, context: Context) async throws -> Response {
        let result = try await replica.sync(tenant: context.tenant, flushTimeout: syncFlushTimeout)
        context.logger.info("cache synced", metadata: ["updated": "\(result.updated)", "dropped": "\(result.dropped)"])
        return .json(
            SyncReport(
                synced: result.updated, dropped: result.dropped,
                cacheSize: replica.statistics(tenant: context.tenant).totalProducts, timestamp: Timestamp.now()))
    }
}

/// The body of `GET /cache/stats`.
struct CacheStats: Encodable {
    var totalProducts: Int
    /// Whether this replica's cache holds the tenant's whole catalog (false while loading, or once evicted under
    /// `--cache-budget`: then `total_products` counts only what it holds).
    var resident: Bool
    var memoryUsageKB: Double
    var memoryUsageMB: Double
    var productTypes: [String: Int]
    var hits: Int
    var misses: Int
    var pendingWrites: Int
    var persistence: PersistenceReport
    var timestamp: String

    enum CodingKeys: String, CodingKey {
        case hits, misses, persistence, timestamp, resident
        case totalProducts = "total_products"
        case memoryUsageKB = "memory_usage_kb"
        case memoryUsageMB = "memory_usage_mb"
        case productTypes = "product_types"
        case pendingWrites = "pending_writes"
    }
}

/// The body of `POST /cache/sync`.
struct SyncReport: Encodable {
    var synced: Int
    var dropped: Int
    var cacheSize: Int
    var timestamp: String

    enum CodingKeys: String, CodingKey {
        case synced, dropped, timestamp
        case cacheSize = "cache_size"
    }
}

/// The write-behind queue's state, as `/cache/stats` and `/health` report it.
struct PersistenceReport: Encodable {
    var journal: String
    var pending: Int
    var oldestPendingAgeSeconds: Double?
    var consecutiveFailures: Int
    var lastError: String?
    var lastErrorAt: String?
    var lastFlushAt: String?
    var journalError: String?
    var deadLetters: DeadLetters

    struct DeadLetters: Encodable {
        var count: Int
        var recent: [DeadLetter]
    }

    /// The queue's state; dead letters only of `tenant` (nil: their count only, for the public `/health`).
    init(_ state: Replica.PersistenceState, tenant: String?) {
        journal = state.journalIsDurable ? "on" : "off"
        pending = state.backlog.count
        oldestPendingAgeSeconds = state.backlog.oldestRecordedAt.map { ((ContinuousClock.now - $0).seconds * 1000).rounded() / 1000 }
        consecutiveFailures = state.worker.consecutiveFailures
        lastError = state.worker.lastError
        lastErrorAt = state.worker.lastErrorAt
        lastFlushAt = state.worker.lastFlushAt
        journalError = state.backlog.failure
        if let tenant {
            let recent = state.deadLetters.recent.filter { $0.operation.tenant == tenant }
            deadLetters = DeadLetters(count: state.deadLetters.countByTenant[tenant] ?? 0, recent: recent)
        } else {
            deadLetters = DeadLetters(count: state.deadLetters.count, recent: [])
        }
    }

    enum CodingKeys: String, CodingKey {
        case journal, pending
        case oldestPendingAgeSeconds = "oldest_pending_age_seconds"
        case consecutiveFailures = "consecutive_failures"
        case lastError = "last_error"
        case lastErrorAt = "last_error_at"
        case lastFlushAt = "last_flush_at"
        case journalError = "journal_error"
        case deadLetters = "dead_letters"
    }
}
