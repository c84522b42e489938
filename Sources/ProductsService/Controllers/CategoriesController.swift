import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Shared

/// `/categories`: the shop's category tree, kept and checked by the Database Service; read-only keys may read it.
struct CategoriesController<Context: TenantRequestContext> {
    let database: any DatabaseServiceClient
    let auth: AuthMiddleware<Context>

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .add(middleware: auth)
            .post(use: forward)
            .get(use: list)
            .get("{id}", use: forward)
            .patch("{id}", use: forward)
            .delete("{id}", use: forward)
    }

    /// GET /categories: a bare JSON array in creation order, paged with `limit` and `starting_after`, `Link` to the
    /// next page; `parent_id` (an id, or `root`) lists one level.
    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        let query = try CategoryQuery.parse(request.uri.query)
        let answer = try await Forwarding.send(database, .get, .categories(subpath: "", query: request.uri.query), tenant: context.tenant, body: nil)
        var response = try Forwarding.response(answer)
        guard answer.status == 200, answer.header(EventPageHeaders.hasMore) == "true",
              let last = try? JSONDecoder().decode([Category].self, from: Data(buffer: answer.body)).last?.id
        else { return response }
        if let link = ProductsController<Context>.link(hasMore: true, backwards: false, request: request, queryString: { _ in query.queryString(after: last) }) {
            response.headers[.link] = link
        }
        return response
    }

    /// POST /categories (201), GET|PATCH|DELETE /categories/{id}.
    @Sendable func forward(_ request: Request, context: Context) async throws -> Response {
        if let id = context.parameters.get("id") {
            // Only a category id can name one: anything else is no category, and never reaches another path.
            guard (try? VariantRules.checkCategoryID(id, param: "id")) != nil else { throw APIError.notFound("No such category: \(id)", param: "id") }
        }
        return try await Forwarding.pass(request, tenant: context.tenant, database, under: "/categories", query: nil, route: DatabaseRoute.categories)
    }
}
