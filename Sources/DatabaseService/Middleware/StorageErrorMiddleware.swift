import GRDB
import Hummingbird
import PostgresNIO
import Shared

/// Turns a storage failure (SQLite busy past its timeout, a full disk, PostgreSQL unreachable or failing) into a
/// 503 a client can retry, logged at `.error`; anything else passes on to the edge middleware.
struct StorageErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as DatabaseError {
            throw unavailable(error, "\(error.resultCode)", request: request, context: context)
        } catch let error as PSQLError {
            throw unavailable(error, "\(error.code)", request: request, context: context)
        } catch let error as PostgresUnavailable {
            throw unavailable(error, error.reason, request: request, context: context)
        }
    }

    private func unavailable(_ error: any Error, _ summary: String, request: Request, context: Context) -> APIError {
        context.logger.error("storage error", metadata: ["error": "\(String(reflecting: error))", "method": "\(request.method)", "path": "\(request.uri.path)"])
        return APIError.serviceUnavailable("database_unavailable", "The storage backend failed: \(summary)")
    }
}
