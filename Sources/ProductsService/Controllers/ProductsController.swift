import Hummingbird
import Shared

/// `/products`: the public catalog API.
struct ProductsController<Context: RequestContext> {
    let catalog: Catalog

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .post(use: create)
            .get(use: list)
            .get("{id}", use: show)
            .delete("{id}", use: delete)
    }

    /// POST /products: creates a product (201); durable once answered, persisted to the Database Service in the background.
    @Sendable func create(_ request: Request, context: Context) async throws -> Response {
        let input = try NewProductInput(json: try await request.parseJSON())
        let created = try await catalog.create(tenant: defaultTenant, input)
        return .json(buffer: created.json, status: .created)
    }

    /// GET /products?type=&limit=: products in creation order, oldest first.
    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        let query = request.uri.queryParameters
        let limit = try ListLimit.parse(query["limit"].map(String.init))
        let type = query["type"].map(String.init)
        return .json(buffer: catalog.list(tenant: defaultTenant, type: type, limit: limit))
    }

    /// GET /products/{id}: from the cache, else read through from the Database Service.
    @Sendable func show(_ request: Request, context: Context) async throws -> Response {
        let id = try context.parameters.require("id")
        return .json(buffer: try await catalog.product(tenant: defaultTenant, id: id))
    }

    /// DELETE /products/{id}: removed from the cache at once, deleted in the Database Service in the background.
    @Sendable func delete(_ request: Request, context: Context) async throws -> Response {
        let id = try context.parameters.require("id")
        let name = try await catalog.delete(tenant: defaultTenant, id: id)
        return .json(DeleteReceipt(productID: id, name: name, timestamp: Timestamp.now()))
    }
}

/// The body of a successful `DELETE /products/{id}`.
struct DeleteReceipt: Encodable {
    var status = "deleted"
    var productID: String
    var name: String
    var timestamp: String

    enum CodingKeys: String, CodingKey {
        case status, name, timestamp
        case productID = "product_id"
    }
}
