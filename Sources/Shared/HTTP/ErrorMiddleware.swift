import HTTPTypes
import Hummingbird
import Logging

/// Turns every error thrown below it into the one JSON error shape; unexpected errors are logged and become 500.
package struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    package init() {}

    package func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try error.response(from: request, context: context)
        } catch let error as any HTTPResponseError where error.status.code < 500 {
            return try Self.translate(error).response(from: request, context: context)
        } catch {
            context.logger.error(
                "unhandled error",
                metadata: ["error": "\(String(reflecting: error))", "method": "\(request.method)", "path": "\(request.uri.path)"])
            return try APIError.internalError.response(from: request, context: context)
        }
    }

    /// Errors Hummingbird and NIO throw (unmatched route, body over the limit, undecodable body), in our shape.
    static func translate(_ error: any HTTPResponseError) -> APIError {
        let httpError = error as? HTTPError
        switch error.status {
        case .notFound: return .routeNotFound
        case .contentTooLarge: return .bodyTooLarge(limit: AppRequestContext.maxBodySize)
        case .badRequest: return .invalidBody(httpError?.body ?? "Bad request")
        default:
            return APIError(
                error.status, code: "request_error", message: httpError?.body ?? error.status.reasonPhrase,
                headers: httpError?.headers ?? [:])
        }
    }
}
