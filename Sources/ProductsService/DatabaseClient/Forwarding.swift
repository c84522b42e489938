import HTTPTypes
import Hummingbird
import NIOCore
import Shared

/// Passing public API calls through to the Database Service.
enum Forwarding {
    static func send(
        _ database: any DatabaseServiceClient, _ method: HTTPRequest.Method, _ route: DatabaseRoute, tenant: String, body: ByteBuffer?
    ) async throws(APIError) -> ForwardedResponse {
        do {
            return try await database.forward(method, route, tenant: tenant, body: body)
        } catch {
            throw APIError.serviceUnavailable("database_unavailable", "This needs the Database Service, which is unreachable: \(error)")
        }
    }

    /// Passes a request for a path under `prefix` through to the Database Service's route for the rest of the path
    /// (`route`), with the body of a POST or PATCH; answers as it answered.
    static func pass(
        _ request: Request, tenant: String, _ database: any DatabaseServiceClient, under prefix: String, query: String?,
        route: (_ subpath: String, _ query: String?) -> DatabaseRoute
    ) async throws -> Response {
        let body: ByteBuffer? = request.method == .post || request.method == .patch ? try await request.collectJSONBody() : nil
        let subpath = String(request.uri.path.dropFirst(prefix.count))
        return try response(try await send(database, request.method, route(subpath, query), tenant: tenant, body: body))
    }

    /// The Database Service's answer as the client's: its status and JSON body (errors are in the one shape already).
    static func response(_ answer: ForwardedResponse) throws(APIError) -> Response {
        if answer.status == 401 || answer.status == 403 {
            // The two services disagree on the service token: the client is not at fault.
            throw APIError.serviceUnavailable("database_unavailable", "The Database Service refused this service's token")
        }
        return Response.json(buffer: answer.body, status: HTTPResponse.Status(code: answer.status))
    }
}
