import Hummingbird
import Shared

/// Requires the shared service token (`Authorization: Bearer <token>`) on every `/api` route once one is
/// configured; only then is the tenant header trusted. Compared in constant time; never logged or echoed.
struct ServiceTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let authorization = request.headers[.authorization], authorization.hasPrefix("Bearer "),
              APIKey.constantTimeEquals(String(authorization.dropFirst("Bearer ".count)), token)
        else { throw APIError.invalidServiceToken }
        return try await next(request, context)
    }
}
