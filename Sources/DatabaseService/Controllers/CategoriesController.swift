import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Shared

/// `/api/categories`: a shop's category tree.
struct CategoriesController<Context: RequestContext> {
    let store: any CategoryStore

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .post(use: create)
            .get(use: list)
            .get("{id}", use: show)
            .patch("{id}", use: update)
            .delete("{id}", use: delete)
            .get("{id}/subtree", use: subtree)
    }

    /// POST /api/categories: creates a category (201).
    @Sendable func create(_ request: Request, context: Context) async throws -> Response {
        let input = try CategoryInput(json: try await request.parseJSON(), creating: true)
        let now = Timestamp.now()
        return try Self.answer(try await store.create(tenant: try request.tenant(), id: Self.newID(), input: input, now: now), status: .created)
    }

    /// GET /api/categories: a bare array in id (creation) order, paged with `limit` (1–100, default 20) and
    /// `starting_after`; `parent_id` (an id, or `root`) keeps one level. `Page-Has-More` says whether more follow.
    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        let query = try CategoryQuery.parse(request.uri.query)
        let page = try await store.categories(tenant: try request.tenant(), after: query.startingAfter, limit: query.limit, parent: query.parent)
        var body = ByteBuffer()
        body.writeJSONArray(page.categories, opening: "[", closing: "]") { category, body in category.writeJSON(into: &body) }
        var headers = HTTPFields()
        headers[HTTPField.Name(EventPageHeaders.hasMore)!] = page.hasMore ? "true" : "false"
        return .json(buffer: body, headers: headers)
    }

    /// GET /api/categories/{id}
    @Sendable func show(_ request: Request, context: Context) async throws -> Response {
        let id = try context.parameters.require("id")
        guard let category = try await store.category(tenant: try request.tenant(), id: id) else { throw Self.missing(id) }
        return try Self.answer(.written(category), status: .ok)
    }

    /// PATCH /api/categories/{id}: changes the members given; `"parent_id": null` makes it a root.
    @Sendable func update(_ request: Request, context: Context) async throws -> Response {
        let id = try context.parameters.require("id")
        let input = try CategoryInput(json: try await request.parseJSON(), creating: false)
        return try Self.answer(try await store.update(tenant: try request.tenant(), id: id, input: input, now: Timestamp.now()), status: .ok, id: id)
    }

    /// DELETE /api/categories/{id}: 409 `category_not_empty` while it has child categories or products.
    @Sendable func delete(_ request: Request, context: Context) async throws -> Response {
        let id = try context.parameters.require("id")
        switch try await store.delete(tenant: try request.tenant(), id: id) {
        case .deleted:
            var body = ByteBuffer()
            body.writeJSONString(id, after: "{\"id\":")
            body.writeStaticString(",\"deleted\":true}")
            return .json(buffer: body)
        case .missing: throw Self.missing(id)
        case .notEmpty(let children): throw APIError.categoryNotEmpty(id, children: children)
        }
    }

    /// GET /api/categories/{id}/subtree: the ids of the category and its descendants (what `?category=` lists).
    @Sendable func subtree(_ request: Request, context: Context) async throws -> Response {
        let id = try context.parameters.require("id")
        guard let ids = try await store.subtree(tenant: try request.tenant(), id: id) else { throw Self.missing(id) }
        var body = ByteBuffer()
        JSONWriter.writeArray(ids, into: &body)
        return .json(buffer: body)
    }

    // MARK: Helpers

    static func missing(_ id: String) -> APIError { .notFound("No such category: \(id)", param: "id") }

    static func answer(_ write: CategoryWrite, status: HTTPResponse.Status, id: String = "") throws -> Response {
        switch write {
        case .written(let category):
            var body = ByteBuffer()
            category.writeJSON(into: &body)
            return .json(buffer: body, status: status)
        case .missing: throw missing(id)
        case .refused(let error): throw error
        }
    }

    /// `cat_`, the creation time in milliseconds (12 hex digits: ids sort by creation), and 12 random letters and digits.
    static func newID() -> String {
        let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
        var generator = SystemRandomNumberGenerator()
        let milliseconds = String(UInt64(max(0, Date().timeIntervalSince1970 * 1000)), radix: 16)
        return VariantRules.categoryIDPrefix + String(repeating: "0", count: max(0, 12 - milliseconds.count)) + milliseconds
            + String((0..<12).map { _ in alphabet.randomElement(using: &generator)! })
    }
}
