import HTTPTypes
import Hummingbird

/// Which browser origins may call a service.
package enum CORSPolicy: Sendable {
    /// `Access-Control-Allow-Origin: *`.
    case anyOrigin
    /// Only these origins, echoed back with `Vary: Origin`.
    case origins(Set<String>)
    /// `*` while the condition holds (the Products Service while it runs without API keys), else no origin.
    case anyOriginWhile(@Sendable () -> Bool)

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, or nil to allow none.
    func allowedOrigin(for origin: String?) -> String? {
        switch self {
        case .anyOrigin: "*"
        case .origins(let allowed): origin.flatMap { allowed.contains($0) ? $0 : nil }
        case .anyOriginWhile(let condition): condition() ? "*" : nil
        }
    }
}

/// Adds CORS headers to every response, errors included, and answers preflight `OPTIONS` with 204.
///
/// Unlike Hummingbird's `CORSMiddleware`, the headers are sent even without an `Origin` header,
/// because clients of the service we replace rely on seeing them on every response.
package struct CORSHeadersMiddleware<Context: RequestContext>: RouterMiddleware {
    let policy: CORSPolicy
    let headers: HTTPFields

    package init(
        policy: CORSPolicy = .anyOrigin,
        allowMethods: [HTTPRequest.Method] = [.get, .post, .put, .patch, .delete, .options],
        allowHeaders: [String] = ["Content-Type", "Authorization", "X-API-Key", "If-Match", "If-None-Match", "Idempotency-Key"],
        exposeHeaders: [String] = ["Link", "ETag", "Retry-After", "Idempotent-Replayed", "WWW-Authenticate"]
    ) {
        self.policy = policy
        self.headers = [
            .accessControlAllowMethods: allowMethods.map(\.rawValue).joined(separator: ", "),
            .accessControlAllowHeaders: allowHeaders.joined(separator: ", "),
            .accessControlExposeHeaders: exposeHeaders.joined(separator: ", "),
        ]
    }

    package func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let allowed = policy.allowedOrigin(for: request.headers[.origin])
        if request.method == .options {
            var preflight = HTTPFields()
            if let allowed {
                preflight[.accessControlAllowOrigin] = allowed
                preflight.append(contentsOf: headers)
                preflight[.accessControlMaxAge] = "600"
            }
            if case .origins = policy { preflight[.vary] = "Origin" }
            return Response(status: .noContent, headers: preflight)
        }
        var response = try await next(request, context)
        if let allowed {
            response.headers[.accessControlAllowOrigin] = allowed
            response.headers.append(contentsOf: headers)
        }
        if case .origins = policy { response.headers[.vary] = "Origin" }
        return response
    }
}
