import HTTPTypes
import Hummingbird
import NIOCore
import Shared

/// `/events`: the tenant's product events, oldest first, from the Database Service's change log.
struct EventsController<Context: TenantRequestContext> {
    let database: any DatabaseServiceClient
    let auth: AuthMiddleware<Context>

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .add(middleware: auth)
            .get(use: list)
    }

    /// GET /events: a bare JSON array, paged with `limit`, `starting_after`/`ending_before` and `Link`, filtered by `type`.
    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        let query = try EventQuery.parse(query: request.uri.query)
        let answer = try await Forwarding.send(
            database, .get, .events(query: query.queryString(cursor: query.cursor)), tenant: context.tenant, body: nil)
        var response = try Forwarding.response(answer)
        guard answer.status == 200 else { return response }
        if let first = answer.header(EventPageHeaders.first).flatMap(EventID.cursor),
           let last = answer.header(EventPageHeaders.last).flatMap(EventID.cursor)
        {
            var backwards = false
            if case .endingBefore = query.cursor { backwards = true }
            let link = ProductsController<Context>.link(
                hasMore: answer.header(EventPageHeaders.hasMore) == "true", backwards: backwards, request: request
            ) { before in query.queryString(cursor: before ? .endingBefore(first) : .startingAfter(last)) }
            if let link { response.headers[.link] = link }
        }
        return response
    }
}

/// `/webhook_endpoints`: the tenant's webhook endpoints, kept and validated by the Database Service, which
/// delivers to them; read-only keys may read them, not change them.
struct WebhookEndpointsController<Context: TenantRequestContext> {
    let database: any DatabaseServiceClient
    let auth: AuthMiddleware<Context>

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .add(middleware: auth)
            .post(use: forward)
            .get(use: forward)
            .get("{id}", use: forward)
            .patch("{id}", use: forward)
            .delete("{id}", use: forward)
            .post("{id}/rotate_secret", use: forward)
            .get("{id}/deliveries", use: forward)
    }

    /// POST /webhook_endpoints (201, with the secret), GET /webhook_endpoints, GET|PATCH|DELETE
    /// /webhook_endpoints/{id}, POST /webhook_endpoints/{id}/rotate_secret, GET /webhook_endpoints/{id}/deliveries.
    @Sendable func forward(_ request: Request, context: Context) async throws -> Response {
        if let id = context.parameters.get("id") {
            guard !id.isEmpty, id.utf8.count <= 64, id.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "/") }) else {
                throw APIError.notFound("No such webhook endpoint: \(id)", param: "id")
            }
        }
        // The path below /webhook_endpoints, as the client sent it (an id was checked above).
        return try await Forwarding.pass(
            request, tenant: context.tenant, database, under: "/webhook_endpoints", query: request.uri.query, route: DatabaseRoute.webhookEndpoints)
    }
}
