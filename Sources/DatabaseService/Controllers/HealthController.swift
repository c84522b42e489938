import Hummingbird
import Shared

/// `GET /health`, `GET /livez` and `GET /readyz`: whether the process and its storage answer.
struct HealthController<Context: RequestContext> {
    let store: any DataStore

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .get("health", use: health)
            .get("livez", use: live)
            .get("readyz", use: ready)
    }

    /// GET /health: 200 with the backend, its schema version and pool when the storage answers, 503 otherwise.
    @Sendable func health(_ request: Request, context: Context) async throws -> Response {
        do {
            try await store.ping()
            let schema = try await store.schemaVersion()
            return .json(
                DatabaseHealth(
                    status: "healthy", service: "database-service", backend: store.backend, schemaVersion: schema,
                    pool: store.poolDescription, timestamp: Timestamp.now()))
        } catch {
            context.logger.error("storage health check failed", metadata: ["error": "\(error)"])
            return .json(
                DatabaseHealth(
                    status: "unhealthy", service: "database-service", backend: store.backend, pool: store.poolDescription,
                    lastError: "\(error)", timestamp: Timestamp.now()),
                status: .serviceUnavailable)
        }
    }

    /// GET /livez: the process is up; a static body that also serves as the framework's speed ceiling.
    @Sendable func live(_ request: Request, context: Context) -> Response {
        .json(buffer: liveBody)
    }

    /// GET /readyz: 200 when the storage answers, else 503: whether to send traffic here.
    @Sendable func ready(_ request: Request, context: Context) async throws -> Response {
        do {
            try await store.ping()
            return .json(buffer: liveBody)
        } catch {
            throw APIError.serviceUnavailable("database_unavailable", "The storage backend does not answer")
        }
    }
}

private let liveBody = ByteBuffer(string: #"{"status":"ok"}"#)
