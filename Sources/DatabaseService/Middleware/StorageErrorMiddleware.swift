import GRDB
import Hummingbird
import Shared

/// Turns a storage failure (the database file locked past its busy timeout, a full disk, an I/O error) into a
/// 503 a client can retry, logged at `.error`; anything else passes on to the error middleware.
struct StorageErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as DatabaseError {
            context.logger.error(
                "storage error", metadata: ["error": "\(error)", "method": "\(request.method)", "path": "\(request.uri.path)"])
            throw APIError.serviceUnavailable("database_unavailable", "The storage backend failed: \(error.resultCode)")
        }
    }
}
