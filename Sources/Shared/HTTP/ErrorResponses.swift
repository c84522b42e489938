import HTTPTypes
import Hummingbird
import Logging

/// Turns every error thrown by a route into the one JSON error shape; unexpected errors are logged and become 500.
package enum ErrorResponses {
    package static func response(for error: any Error, to request: Request, context: some RequestContext) -> Response {
        switch error {
        case let error as APIError:
            return error.response()
        case let error as any HTTPResponseError where error.status.code < 500:
            return translate(error).response()
        default:
            context.logger.error(
                "unhandled error",
                metadata: ["error": "\(String(reflecting: error))", "method": "\(request.method)", "path": "\(request.uri.path)"])
            return APIError.internalError.response()
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
