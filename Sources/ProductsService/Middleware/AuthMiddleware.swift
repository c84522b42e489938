import Hummingbird
import Shared

/// Authenticates the request's API key, refuses writes to read-only keys and requests over the key's rate,
/// and scopes the request to the key's tenant.
struct AuthMiddleware<Context: TenantRequestContext>: RouterMiddleware {
    let authenticator: Authenticator
    let rateLimiter: RateLimiter

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let grant = try await authenticator.authenticate(request.headers) else { return try await next(request, context) }
        if grant.scope == .readOnly, request.method != .get, request.method != .head {
            throw APIError.readOnlyKey
        }
        if let retryAfter = rateLimiter.consume(grant.id) { throw APIError.rateLimited(retryAfter: retryAfter) }
        var context = context
        context.tenant = grant.tenant
        context.keyID = grant.id
        context.logger[metadataKey: "key_id"] = "\(grant.id)"
        context.logger[metadataKey: "tenant"] = "\(grant.tenant)"
        return try await next(request, context)
    }
}
