import Foundation
import Hummingbird
import Logging
import NIOCore
import Shared

/// Settings the Database Service's application is built from.
struct DatabaseServiceSettings: Sendable {
    var host = "127.0.0.1"
    var port = 8081
    var logLevel: Logger.Level = .info
    /// Deadlines for slow clients and the cap on open connections.
    var connections = ConnectionLimits()
    /// The secret every `/api` call must carry; nil: open (development only).
    var serviceToken: String?
    /// How long the change log keeps a change.
    var changeRetention: Duration = .seconds(30 * 24 * 3600)
    /// How often changes past retention are purged.
    var changePurgeInterval: Duration = .seconds(60)
    /// How webhooks are delivered.
    var webhooks = WebhookSettings()
}

/// Builds the Database Service on a given store; `main` and the tests both call it.
func buildApplication(
    settings: DatabaseServiceSettings, store: any DataStore,
    onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
) throws -> some ApplicationProtocol {
    var logger = Logger(label: "database-service")
    logger.logLevel = settings.logLevel
    let router = try buildRouter(
        store: store, serviceToken: settings.serviceToken, allowPrivateWebhookTargets: settings.webhooks.allowPrivateTargets
    ).router
    var app = Application(
        router: router,
        server: ConnectionGuard(limits: settings.connections).http1,
        configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "database-service"),
        onServerRunning: onServerRunning,
        logger: logger
    )
    app.addServices(
        RetentionService(store: store, retention: settings.changeRetention, purgeInterval: settings.changePurgeInterval, logger: logger),
        WebhookDeliveryService(store: store, settings: settings.webhooks, logger: logger))
    return app
}

/// The routes (recorded, for the OpenAPI check) and middleware of the Database Service.
func buildRouter(
    store: any DataStore, serviceToken: String? = nil, allowPrivateWebhookTargets: Bool = false
) throws -> RouteRecorder<AppRequestContext> {
    MetricsSetup.bootstrap()
    let router = Router(context: AppRequestContext.self)
    router.add(middleware: EdgeMiddleware())
    router.add(middleware: StorageErrorMiddleware())
    let routes = RouteRecorder(router)
    routes.addRoutes(HealthController(store: store).endpoints)
    routes.addRoutes(MetricsController().endpoints)
    routes.addRoutes(
        try OpenAPIController(documentAt: Bundle.module.url(forResource: "openapi", withExtension: "json"), title: "Database Service")
            .endpoints)
    let api = RouteCollection(context: AppRequestContext.self)
    if let serviceToken { api.add(middleware: ServiceTokenMiddleware(token: serviceToken)) }
    api.addRoutes(ProductsController(store: store.products).endpoints, atPath: "/products")
    api.addRoutes(ChangesController(store: store.changes).endpoints, atPath: "/changes")
    api.addRoutes(WritersController(store: store.keys).endpoints, atPath: "/writers")
    api.addRoutes(KeysController(keys: store.keys).endpoints, atPath: "/keys")
    api.addRoutes(TenantsController(keys: store.keys).endpoints, atPath: "/tenants")
    api.addRoutes(EventsController(store: store.webhooks).endpoints, atPath: "/events")
    api.addRoutes(ImportsController(store: store.imports).endpoints, atPath: "/imports")
    api.addRoutes(CategoriesController(store: store.categories).endpoints, atPath: "/categories")
    api.addRoutes(
        WebhooksController(store: store.webhooks, allowPrivateTargets: allowPrivateWebhookTargets).endpoints, atPath: "/webhook_endpoints")
    routes.addRoutes(api, atPath: "/api")
    routes.addMethodNotAllowedHandling()
    return routes
}
