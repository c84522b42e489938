import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import Shared

/// Settings the Products Service's application is built from.
struct ProductsServiceSettings: Sendable {
    var host = "127.0.0.1"
    var port = 8080
    var databaseServiceURL = "http://127.0.0.1:8081"
    /// Where the journal and dead letters live.
    var dataDirectory = "./data/products"
    /// False: pending writes are kept in memory only (`--journal off`).
    var journalEnabled = true
    var logLevel: Logger.Level = .info
    var persistence = PersistenceSettings()
    var backlogAlertAfter: Duration = .seconds(60)
    /// How far behind the change feed this replica may fall before `/health` says `degraded`.
    var feedLagAlertAfter: Duration = .seconds(10)
    /// Deadlines for slow clients and the cap on open connections.
    var connections = ConnectionLimits()
    /// The token the services share; `/health`'s detail asks for it (nil: none is set, and the detail is public).
    var serviceToken: String?
    var syncFlushTimeout: Duration = .seconds(10)
    /// Never run open, even while no API key exists or that cannot be checked.
    var requireAPIKeys = false
    /// How long a key verified before is trusted while the Database Service cannot be asked (`--key-outage-trust`).
    var keyOutageTrust: Duration = .seconds(10)
    /// Requests a second per API key on average (0: no limit), and the burst allowed above it.
    var rateLimit: Double = 100
    var rateBurst = 200
    /// Origins browsers may call from; empty: `*` while no API key exists, none once keys exist.
    var corsOrigins: [String] = []
    /// How often the Database Service is asked whether any API key exists.
    var authModeInterval: Duration = .seconds(2)
    /// The most the cache may hold by its own estimate, in bytes (`--cache-budget`); nil: no limit.
    var cacheBudget: Int?
    /// How often tombstones are aged and the budget enforced, and how soon an evicted shop may be brought back after the last one.
    var cacheBudgetInterval: Duration = .seconds(1)
    var cacheReadmissionInterval: Duration = .seconds(10)
    /// How long and how much of each shop's tombstones the cache keeps (`--tombstone-retention`, `--tombstone-budget`).
    var shopLimits = ShopState.Limits()
    /// The most the replica's idempotency answers take (`--idempotency-budget`).
    var idempotencyBytes = IdempotencyStore.defaultByteLimit
    /// The most remembered API key verifications take (`--key-cache-budget`).
    var keyCacheBytes = KeyVerifications.defaultBudget
    /// The most a backlog's records take in memory; the rest wait on disk (`--journal-memory`).
    var journalMemoryBytes = Journal.defaultMemoryLimit
    /// How journal appends are made durable; tests inject failures.
    var journalSync: AppendOnlyFile.Sync = AppendOnlyFile.syncData
}

/// Builds the Products Service; `main` and the tests both call it.
///
/// `services` run before the service's own and stop after them (the shared HTTP client, in `main`).
func buildApplication(
    settings: ProductsServiceSettings,
    database: any DatabaseServiceClient,
    services: [any Service] = [],
    onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
) throws -> some ApplicationProtocol {
    var logger = Logger(label: "products-service")
    logger.logLevel = settings.logLevel
    let directory = settings.journalEnabled ? settings.dataDirectory : nil
    let replica = Replica(
        try Replica.Parts(
            directory: directory, database: database, logger: logger, sync: settings.journalSync,
            idempotencyBytes: settings.idempotencyBytes, journalMemoryLimit: settings.journalMemoryBytes, shopLimits: settings.shopLimits),
        persistence: settings.persistence, cacheBudget: settings.cacheBudget, readmissionInterval: settings.cacheReadmissionInterval,
        logger: logger)
    if !settings.journalEnabled {
        logger.warning("journal is off: writes not yet persisted are lost if the process stops")
    }
    let loader = ReplicaLoader(replica: replica, retryMaxDelay: settings.persistence.retryMaxDelay, logger: logger)
    let authenticator = Authenticator(
        database: database, directory: directory, logger: logger, requireKeys: settings.requireAPIKeys, usableFor: settings.keyOutageTrust,
        verifications: KeyVerifications(budget: settings.keyCacheBytes))
    let authMonitor = AuthModeMonitor(authenticator: authenticator, interval: settings.authModeInterval)
    let follower = ChangeFollower(
        replica: replica, cursorFile: directory.map { $0 + "/change-cursor" }, logger: logger,
        retryMaxDelay: settings.persistence.retryMaxDelay)
    replica.setWriterNode(try WriterRegistrar.initialNode(directory: directory))
    let replicaID = try WriterRegistrar.replicaIdentity(directory: directory)
    let registrar = WriterRegistrar(replica: replica, directory: directory, replicaID: replicaID, logger: logger)
    let imports = ImportWorker(
        replica: replica, directory: (directory ?? NSTemporaryDirectory() + "products-\(replicaID)") + "/imports", replicaID: replicaID,
        retryMaxDelay: settings.persistence.retryMaxDelay, logger: logger)
    let upkeep = CacheUpkeepService(replica: replica, interval: settings.cacheBudgetInterval, logger: logger)

    let router = try buildRouter(replica: replica, authenticator: authenticator, imports: imports, settings: settings).router
    // Shutdown runs in reverse: the server stops taking requests, the loader stops, the worker flushes,
    // then the journal closes, then the backlog's last report, then whatever `services` holds.
    return Application(
        router: router,
        server: ConnectionGuard(limits: settings.connections).http1,
        configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "products-service"),
        services: services + [BacklogReporter(replica: replica, logger: logger)] + replica.services + [loader, follower, registrar, authMonitor, upkeep, imports],
        onServerRunning: onServerRunning,
        logger: logger
    )
}

/// The routes (recorded, for the OpenAPI check) and middleware of the Products Service.
func buildRouter(
    replica: Replica, authenticator: Authenticator, imports: ImportWorker, settings: ProductsServiceSettings
) throws -> RouteRecorder<AppRequestContext> {
    MetricsSetup.bootstrap()
    let router = Router(context: AppRequestContext.self)
    let cors: CORSPolicy =
        if settings.corsOrigins.isEmpty { .anyOriginWhile { authenticator.mode != .enforced } }
        else if settings.corsOrigins.contains("*") { .anyOrigin }
        else { .origins(Set(settings.corsOrigins)) }
    router.add(middleware: EdgeMiddleware(browserAccess: CORSHeaders(policy: cors)))
    let routes = RouteRecorder(router)
    let auth = AuthMiddleware<AppRequestContext>(
        authenticator: authenticator, rateLimiter: RateLimiter(rate: settings.rateLimit, burst: settings.rateBurst))
    routes.addRoutes(
        ServiceController(
            replica: replica, databaseServiceURL: settings.databaseServiceURL, backlogAlertAfter: settings.backlogAlertAfter,
            feedLagAlertAfter: settings.feedLagAlertAfter, authenticator: authenticator, serviceToken: settings.serviceToken,
            probe: DatabaseProbe(replica: replica)
        ).endpoints)
    routes.addRoutes(MetricsController(refresh: { ProductsMetrics.refresh(replica, authenticator) }).endpoints)
    routes.addRoutes(ProductsController(replica: replica, auth: auth).endpoints, atPath: "/products")
    routes.addRoutes(ProductVariantsController(replica: replica, auth: auth).endpoints, atPath: "/products")
    routes.addRoutes(ExportsController(replica: replica, auth: auth).endpoints, atPath: "/exports")
    routes.addRoutes(VariantsController(replica: replica, auth: auth).endpoints, atPath: "/variants")
    routes.addRoutes(ImportsController(imports: imports, auth: auth).endpoints, atPath: "/imports")
    routes.addRoutes(EventsController(database: replica.database, auth: auth).endpoints, atPath: "/events")
    routes.addRoutes(WebhookEndpointsController(database: replica.database, auth: auth).endpoints, atPath: "/webhook_endpoints")
    routes.addRoutes(CategoriesController(database: replica.database, auth: auth).endpoints, atPath: "/categories")
    routes.addRoutes(CacheController(replica: replica, syncFlushTimeout: settings.syncFlushTimeout, auth: auth).endpoints, atPath: "/cache")
    routes.addRoutes(
        try OpenAPIController(documentAt: Bundle.module.url(forResource: "openapi", withExtension: "json"), title: "Products Service")
            .endpoints)
    routes.addRoutes(try AdminController<AppRequestContext>().endpoints)
    routes.addMethodNotAllowedHandling()
    return routes
}

/// The gauges `/metrics` reads from state when scraped.
enum ProductsMetrics {
    static func refresh(_ replica: Replica, _ authenticator: Authenticator) {
        let totals = replica.totals
        Gauge(label: "products_cache_products").record(totals.products)
        Gauge(label: "products_cache_approximate_bytes").record(totals.approximateBytes)
        Gauge(label: "products_cache_tombstones").record(totals.tombstones)
        Gauge(label: "products_cache_tombstone_bytes").record(totals.tombstoneBytes)
        Gauge(label: "products_cache_loaded").record(replica.isLoaded ? 1 : 0)
        Gauge(label: "products_cache_evicted_tenants").record(replica.replication.evictedTenantCount)
        let persistence = replica.persistence
        Gauge(label: "products_journal_pending_writes").record(persistence.backlog.count)
        let age = persistence.backlog.oldestRecordedAt.map { (ContinuousClock.now - $0).seconds } ?? 0
        Gauge(label: "products_journal_oldest_pending_seconds").record(age)
        Gauge(label: "products_journal_syncs").record(persistence.backlog.syncs)
        Gauge(label: "products_journal_memory_bytes").record(persistence.backlog.inMemoryBytes)
        Gauge(label: "products_journal_failed").record(persistence.backlog.failure == nil ? 0 : 1)
        Gauge(label: "products_dead_letters").record(persistence.deadLetters.count)
        Gauge(label: "products_idempotency_bytes").record(replica.idempotencyBytes)
        Gauge(label: "products_key_cache_bytes").record(authenticator.verificationFigures.bytes)
        let feed = replica.replication.feed.snapshot
        Gauge(label: "products_feed_lag_seconds").record(feed.lagSeconds() ?? -1)
        Gauge(label: "products_feed_position").record(Double(feed.cursor?.position ?? 0))
        Gauge(label: "products_feed_failing").record(feed.failing ? 1 : 0)
    }
}
