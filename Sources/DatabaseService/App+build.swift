import Hummingbird
import Logging
import NIOCore
import Shared

/// Settings the Database Service's application is built from.
struct DatabaseServiceSettings: Sendable {
    var host = "127.0.0.1"
    var port = 8081
    var logLevel: Logger.Level = .info
}

/// Builds the Database Service on a given store; `main` and the tests both call it.
func buildApplication(
    settings: DatabaseServiceSettings, store: any ProductStore,
    onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
) -> some ApplicationProtocol {
    var logger = Logger(label: "database-service")
    logger.logLevel = settings.logLevel
    let router = buildRouter(store: store)
    return Application(
        router: router,
        configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "database-service"),
        onServerRunning: onServerRunning,
        logger: logger
    )
}

/// The routes and middleware of the Database Service.
func buildRouter(store: any ProductStore) -> Router<AppRequestContext> {
    let router = Router(context: AppRequestContext.self)
    router.add(middleware: CORSHeadersMiddleware())
    router.add(middleware: LogRequestsMiddleware(.debug))
    router.add(middleware: ErrorMiddleware())
    let routes = RouteRecorder(router)
    routes.addRoutes(HealthController(store: store).endpoints)
    routes.addRoutes(ProductsController(store: store).endpoints, atPath: "/api/products")
    routes.addMethodNotAllowedHandling()
    return router
}
