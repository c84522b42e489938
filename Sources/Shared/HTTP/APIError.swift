import Foundation
import HTTPTypes
import Hummingbird

/// The one error type of both services, rendered as `{"error","code","param"}`.
package struct APIError: Error, HTTPResponseError, Sendable, Equatable {
    package var status: HTTPResponse.Status
    package var code: String
    package var message: String
    package var param: String?
    /// The product's current version, on `precondition_failed`.
    package var currentVersion: Int64?
    /// The request's `X-Request-ID`, filled in when the error becomes a response.
    package var requestID: String?
    package var headers: HTTPFields

    package init(
        _ status: HTTPResponse.Status, code: String, message: String, param: String? = nil, currentVersion: Int64? = nil,
        headers: HTTPFields = [:]
    ) {
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.currentVersion = currentVersion
        self.headers = headers
    }

    /// The JSON body of every error response.
    package struct Body: Codable, Sendable, Equatable {
        package var error: String
        package var code: String
        package var param: String?
        package var currentVersion: Int64?
        package var requestID: String?

        package init(error: String, code: String, param: String? = nil, currentVersion: Int64? = nil, requestID: String? = nil) {
            self.error = error
            self.code = code
            self.param = param
            self.currentVersion = currentVersion
            self.requestID = requestID
        }

        enum CodingKeys: String, CodingKey {
            case error, code, param
            case currentVersion = "current_version"
            case requestID = "request_id"
        }
    }

    package var body: Body { Body(error: message, code: code, param: param, currentVersion: currentVersion, requestID: requestID) }

    /// The error as a response, with the request id of the request being handled.
    package func response() -> Response {
        var body = body
        if body.requestID == nil { body.requestID = RequestTrace.current?.requestID }
        var response = Response.json(body, status: status)
        response.headers.append(contentsOf: headers)
        return response
    }

    package func response(from request: Request, context: some RequestContext) -> Response { response() }

    // MARK: The stable error codes (listed in the README)

    package static func invalidJSON(_ detail: String) -> APIError {
        APIError(.badRequest, code: "invalid_json", message: "Request body is not valid JSON: \(detail)")
    }

    package static func invalidBody(_ message: String) -> APIError {
        APIError(.badRequest, code: "invalid_body", message: message)
    }

    package static func missingParameter(_ param: String, _ message: String) -> APIError {
        APIError(.badRequest, code: "parameter_missing", message: message, param: param)
    }

    package static func invalidParameter(_ param: String, _ message: String) -> APIError {
        APIError(.badRequest, code: "parameter_invalid", message: message, param: param)
    }

    package static func unknownParameter(_ param: String, in place: String = "body") -> APIError {
        APIError(.badRequest, code: "parameter_unknown", message: "Unknown \(place) parameter '\(param)'", param: param)
    }

    package static func notFound(_ message: String, param: String? = nil) -> APIError {
        APIError(.notFound, code: "resource_missing", message: message, param: param)
    }

    package static let routeNotFound = APIError(.notFound, code: "route_not_found", message: "No such route")

    package static func methodNotAllowed(allowed: [HTTPRequest.Method]) -> APIError {
        let allow = allowed.map(\.rawValue).joined(separator: ", ")
        return APIError(
            .methodNotAllowed, code: "method_not_allowed",
            message: "Method not allowed; allowed: \(allow)", headers: [.allow: allow])
    }

    package static func bodyTooLarge(limit: Int) -> APIError {
        APIError(.contentTooLarge, code: "body_too_large", message: "Request body exceeds \(limit) bytes")
    }

    package static func unsupportedMediaType(_ got: String) -> APIError {
        APIError(
            .unsupportedMediaType, code: "unsupported_media_type",
            message: "Content-Type must be application/json, got '\(got)'")
    }

    package static func versionConflict(_ message: String) -> APIError {
        APIError(.conflict, code: "version_conflict", message: message)
    }

    /// An `If-Match` that does not match: the body carries the current version, the headers its `ETag`.
    package static func preconditionFailed(id: String, currentVersion: Int64) -> APIError {
        APIError(
            .preconditionFailed, code: "precondition_failed",
            message: "If-Match does not match product \(id), now at version \(currentVersion)",
            param: "If-Match", currentVersion: currentVersion, headers: [.eTag: EntityTag.product(id: id, version: currentVersion)])
    }

    package static let idempotencyKeyReused = APIError(
        .unprocessableContent, code: "idempotency_key_reused",
        message: "This Idempotency-Key was already used with a different request", param: "Idempotency-Key")

    package static let idempotencyKeyInUse = APIError(
        .conflict, code: "idempotency_key_in_use",
        message: "A request with this Idempotency-Key is still being processed; retry later", param: "Idempotency-Key",
        headers: [.retryAfter: "1"])

    /// No key, or one that is not (or no longer) valid: 401 with a `WWW-Authenticate` challenge. The key itself
    /// is never echoed.
    package static func unauthorized(_ message: String) -> APIError {
        APIError(
            .unauthorized, code: "authentication_required", message: message,
            headers: [.wwwAuthenticate: #"Bearer realm="products""#])
    }

    package static let readOnlyKey = APIError(
        .forbidden, code: "read_only_key", message: "This API key is read-only; writes need a read_write key")

    package static func rateLimited(retryAfter seconds: Int) -> APIError {
        APIError(
            .tooManyRequests, code: "rate_limited", message: "Too many requests for this API key; retry after \(seconds) s",
            headers: [.retryAfter: String(seconds)])
    }

    package static let invalidServiceToken = APIError(
        .unauthorized, code: "invalid_service_token", message: "A valid service token is required",
        headers: [.wwwAuthenticate: #"Bearer realm="database-service""#])

    package static func serviceUnavailable(_ code: String, _ message: String) -> APIError {
        APIError(.serviceUnavailable, code: code, message: message, headers: [.retryAfter: "1"])
    }

    package static let internalError = APIError(
        .internalServerError, code: "internal_error", message: "An unexpected error occurred")
}
