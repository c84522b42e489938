import HTTPTypes
import Hummingbird
import Shared

/// Which browser origins may call a service.
enum CORSPolicy: Sendable {
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

/// The CORS headers of every response, errors included, and the answer to a preflight `OPTIONS` (204).
///
/// Unlike Hummingbird's `CORSMiddleware`, the headers are sent even without an `Origin` header,
/// because clients of the service we replace rely on seeing them on every response.
struct CORSHeaders: BrowserAccess {
    let policy: CORSPolicy
    let headers: HTTPFields

    init(
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

    /// The 204 answering a preflight request.
    func preflight(_ request: Request) -> Response {
        var preflight = HTTPFields()
        if let allowed = policy.allowedOrigin(for: request.headers[.origin]) {
            preflight[.accessControlAllowOrigin] = allowed
            preflight.append(contentsOf: headers)
            preflight[.accessControlMaxAge] = "600"
        }
        if case .origins = policy { preflight[.vary] = "Origin" }
        return Response(status: .noContent, headers: preflight)
    }

    /// Adds the headers to the response of a request.
    func apply(to response: inout Response, for request: Request) {
        if let allowed = policy.allowedOrigin(for: request.headers[.origin]) {
            response.headers[.accessControlAllowOrigin] = allowed
            response.headers.append(contentsOf: headers)
        }
        if case .origins = policy { response.headers[.vary] = "Origin" }
    }
}
