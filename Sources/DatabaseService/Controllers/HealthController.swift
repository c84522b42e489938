import Hummingbird
import Shared

/// `GET /health` and `GET /livez`: whether the process and its storage answer.
struct HealthController<Context: RequestContext> {
    let store: any ProductStore

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .get("health", use: health)
            .get("livez", use: live)
    }

    /// GET /health: 200 when the storage backend answers, 503 otherwise.
    @Sendable func health(_ request: Request, context: Context) async throws -> Response {
        do {
            try await store.ping()
            return .json(DatabaseHealth(status: "healthy", service: "database-service", backend: store.backend, timestamp: Timestamp.now()))
        } catch {
            context.logger.error("storage health check failed", metadata: ["error": "\(error)"])
            return .json(
                DatabaseHealth(status: "unhealthy", service: "database-service", backend: store.backend, timestamp: Timestamp.now()),
                status: .serviceUnavailable)
        }
    }

    /// GET /livez: the process is up; a static body that also serves as the framework's speed ceiling.
    @Sendable func live(_ request: Request, context: Context) -> Response {
        .json(buffer: liveBody)
    }
}

private let liveBody = ByteBuffer(string: #"{"status":"ok"}"#)
