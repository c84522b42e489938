import HTTPTypes
import Hummingbird

/// Adds CORS headers to every response, errors included, and answers preflight `OPTIONS` with 204.
///
/// Unlike Hummingbird's `CORSMiddleware`, the headers are sent even without an `Origin` header,
/// because clients of the service we replace rely on seeing them on every response.
package struct CORSHeadersMiddleware<Context: RequestContext>: RouterMiddleware {
    let headers: HTTPFields

    package init(
        allowOrigin: String = "*",
        allowMethods: [HTTPRequest.Method] = [.get, .post, .put, .patch, .delete, .options],
        allowHeaders: [String] = ["Content-Type", "Authorization", "If-Match", "If-None-Match", "Idempotency-Key"],
        exposeHeaders: [String] = ["Link", "ETag", "Retry-After", "Idempotent-Replayed"]
    ) {
        self.headers = [
            .accessControlAllowOrigin: allowOrigin,
            .accessControlAllowMethods: allowMethods.map(\.rawValue).joined(separator: ", "),
            .accessControlAllowHeaders: allowHeaders.joined(separator: ", "),
            .accessControlExposeHeaders: exposeHeaders.joined(separator: ", "),
        ]
    }

    package func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.method == .options {
            var preflight = headers
            preflight[.accessControlMaxAge] = "600"
            return Response(status: .noContent, headers: preflight)
        }
        var response = try await next(request, context)
        response.headers.append(contentsOf: headers)
        return response
    }
}
