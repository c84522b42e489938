import HTTPTypes
import Hummingbird
import NIOCore
import Shared

/// `/products`: the public catalog API.
struct ProductsController<Context: TenantRequestContext> {
    let replica: Replica
    let auth: AuthMiddleware<Context>

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .add(middleware: auth)
            .post(use: create)
            .get(use: list)
            .get("search", use: search)
            .get("{id}", use: show)
            .put("{id}", use: replace)
            .patch("{id}", use: update)
            .delete("{id}", use: delete)
            .get("{id}/versions", use: versions)
            .post("{id}/restore", use: restore)
    }

    /// POST /products: creates a product (201); durable once answered, persisted to the Database Service in the background.
    @Sendable func create(_ request: Request, context: Context) async throws -> Response {
        let body = try await request.collectJSONBody(maxSize: ProductRules.maxBodyBytes)
        let idempotent = try IdempotentRequest(request, tenant: context.tenant, body: body)
        let input = try ProductInput(body: body)
        return Self.response(try await replica.create(tenant: context.tenant, input, idempotent: idempotent), status: .created)
    }

    /// GET /products: products in creation order, oldest first, filtered and paged; `Link` points to the next page.
    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        let query = try ProductQuery.parse(query: request.uri.query)
        let page = try await replica.list(tenant: context.tenant, query: query)
        var body = ByteBuffer()
        body.reserveCapacity(page.products.reduce(2) { $0 + $1.jsonByteCount + 1 })
        body.writeJSONArray(page.products, opening: "[", closing: "]") { product, body in product.writeJSON(into: &body, locale: query.locale) }
        var response = Response.json(buffer: body)
        if let link = Self.link(for: page, query: query, request: request) { response.headers[.link] = link }
        if let locale = query.locale { response.headers[.contentLanguage] = locale }
        return response
    }

    /// GET /products/search: storefront search over the replica's index: words, filters, facet counts, a sort and
    /// a page token; `total` and every count are exact, and a write this replica acknowledged is in its next search.
    @Sendable func search(_ request: Request, context: Context) async throws -> Response {
        let query = try SearchQuery.parse(query: request.uri.query)
        let (outcome, products) = try await replica.search(tenant: context.tenant, query: query)
        var body = ByteBuffer()
        body.reserveCapacity(products.reduce(256) { $0 + $1.jsonByteCount + 1 })
        body.writeJSONArray(products, opening: "{\"data\":[", closing: "]") { product, body in
            product.writeJSON(into: &body, locale: query.locale)
        }
        body.writeStaticString(",\"facets\":{")
        var first = true
        for (name, counts) in outcome.valueFacets {
            body.writeStaticString(first ? "" : ",")
            first = false
            JSONWriter.writeString(name, into: &body)
            body.writeJSONArray(counts, opening: ":[", closing: "]") { entry, body in
                body.writeJSONString(entry.value, after: "{\"value\":")
                body.writeString(",\"count\":\(entry.count)}")
            }
        }
        if outcome.pricesAsked {
            body.writeStaticString(first ? "\"price\":" : ",\"price\":")
            if let range = outcome.priceRange { body.writeString("{\"min\":\(range.min),\"max\":\(range.max)}") } else { body.writeStaticString("null") }
        }
        body.writeString("},\"total\":\(outcome.total),\"next_page_token\":")
        if let token = outcome.nextPageToken { JSONWriter.writeString(token.encoded, into: &body) } else { body.writeStaticString("null") }
        body.writeStaticString("}")
        var response = Response.json(buffer: body)
        if let locale = query.locale { response.headers[.contentLanguage] = locale }
        return response
    }

    /// GET /products/{id}: from the cache, else read through from the Database Service; 304 on a matching `If-None-Match`;
    /// `?locale=` localizes it.
    @Sendable func show(_ request: Request, context: Context) async throws -> Response {
        let id = try context.productID()
        let locale = try Self.locale(in: request)
        let condition = try EntityTag.condition(.ifNoneMatch, in: request.headers)
        let product = try await replica.product(tenant: context.tenant, id: id)
        if let condition, condition.matchesWeakly(product.etag) {
            return Response(status: .notModified, headers: [.eTag: product.etag])
        }
        guard let locale else { return Self.response(product) }
        var body = ByteBuffer()
        product.writeJSON(into: &body, locale: locale)
        var response = Response.json(buffer: body)
        response.headers[.eTag] = product.etag
        response.headers[.contentLanguage] = locale
        return response
    }

    /// The `locale` of a single product's read, in canonical case; other parameters are ignored, as before.
    static func locale(in request: Request) throws(APIError) -> String? {
        guard let value = try QueryString.parse(request.uri.query).last(where: { $0.name == "locale" })?.value else { return nil }
        guard let locale = LanguageTag.canonical(value) else {
            throw APIError.invalidParameter("locale", "locale must be a BCP 47 language tag, such as fr or fr-FR")
        }
        return locale
    }

    /// PUT /products/{id}: replaces name, type and metadata (200); honours `If-Match`.
    @Sendable func replace(_ request: Request, context: Context) async throws -> Response {
        let id = try context.productID()
        let condition = try EntityTag.condition(.ifMatch, in: request.headers)
        let input = try ProductInput(body: try await request.collectJSONBody(maxSize: ProductRules.maxBodyBytes), replacing: id)
        let result = try await replica.update(tenant: context.tenant, id: id, condition: condition) { product in
            input.applied(to: product)
        }
        return Self.response(result)
    }

    /// PATCH /products/{id}: changes the fields given, merging metadata (200); honours `If-Match` and `Idempotency-Key`.
    @Sendable func update(_ request: Request, context: Context) async throws -> Response {
        let id = try context.productID()
        let condition = try EntityTag.condition(.ifMatch, in: request.headers)
        let body = try await request.collectJSONBody(maxSize: ProductRules.maxBodyBytes)
        let idempotent = try IdempotentRequest(request, tenant: context.tenant, body: body)
        let patch = try ProductPatch(body: body, id: id)
        let result = try await replica.update(tenant: context.tenant, id: id, condition: condition, idempotent: idempotent) {
            product throws(APIError) in try patch.applied(to: product)
        }
        return Self.response(result)
    }

    /// DELETE /products/{id}: removed from the cache at once, deleted in the Database Service in the background; honours `If-Match`.
    @Sendable func delete(_ request: Request, context: Context) async throws -> Response {
        let id = try context.productID()
        let condition = try EntityTag.condition(.ifMatch, in: request.headers)
        let name = try await replica.delete(tenant: context.tenant, id: id, condition: condition)
        return .json(DeleteReceipt(productID: id, name: name, timestamp: Timestamp.now()))
    }

    /// GET /products/{id}/versions: the product's past versions, newest first, kept for the change log's retention;
    /// paged with `limit` and `starting_after` (a version), `Link` pointing to older ones.
    @Sendable func versions(_ request: Request, context: Context) async throws -> Response {
        let id = try context.productID()
        let query = try ProductHistory.Query.parse(query: request.uri.query)
        let answer = try await replica.versions(tenant: context.tenant, id: id, query: query)
        var response = try Forwarding.response(answer)
        if answer.status == 200, answer.header(ProductHistory.hasMoreHeader) == "true",
           let last = answer.header(ProductHistory.lastVersionHeader).flatMap(Int64.init)
        {
            response.headers[.link] = Self.link(hasMore: true, backwards: false, request: request) { _ in
                query.queryString(startingAfter: last)
            }
        }
        return response
    }

    /// POST /products/{id}/restore `{"version": n}`: brings that version back as the product's next version, with its
    /// event; 201 when the product was deleted, 200 when it was live. Needs the Database Service.
    @Sendable func restore(_ request: Request, context: Context) async throws -> Response {
        let id = try context.productID()
        let input = try await request.decodeJSON(as: ProductHistory.RestoreRequest.self, allowedFields: ProductHistory.RestoreRequest.fields)
            .validated()
        switch try await replica.restore(tenant: context.tenant, id: id, version: input.version) {
        case .restored(let product, let created):
            return Self.response(product, status: created ? .created : .ok)
        case .refused(let answer):
            return try Forwarding.response(answer)
        }
    }

    // MARK: Helpers

    /// A single product, with its `ETag`.
    static func response(_ product: CachedProduct, status: HTTPResponse.Status = .ok) -> Response {
        var response = Response.json(buffer: product.json, status: status)
        response.headers[.eTag] = product.etag
        return response
    }

    /// A write's answer: the product written, or the first answer again (`Idempotent-Replayed: true`).
    static func response(_ result: Replica.WriteResult, status: HTTPResponse.Status = .ok) -> Response {
        switch result {
        case .written(let product):
            return response(product, status: status)
        case .replayed(let record):
            var response = Response.json(buffer: ByteBuffer(string: record.body), status: HTTPResponse.Status(code: record.status))
            response.headers[.eTag] = record.etag
            response.headers[.idempotentReplayed] = "true"
            return response
        }
    }

    /// The RFC 8288 `Link` field of a page: `next` when more follow it; for a page read backwards, `prev`
    /// when more precede it, and `next` back towards where the reader came from.
    static func link(for page: (products: [CachedProduct], hasMore: Bool), query: ProductQuery, request: Request) -> String? {
        guard let first = page.products.first?.id, let last = page.products.last?.id else { return nil }
        var backwards = false
        if case .endingBefore = query.cursor { backwards = true }
        return link(hasMore: page.hasMore, backwards: backwards, request: request) { before in
            query.queryString(cursor: before ? .endingBefore(first) : .startingAfter(last))
        }
    }

    /// A page's `Link` field, given the query string of the page after it (`false`) or before it (`true`).
    static func link(hasMore: Bool, backwards: Bool, request: Request, queryString: (_ before: Bool) -> String) -> String? {
        let scheme = request.headers[.xForwardedProto] ?? "http"
        let base = "\(scheme)://\(request.head.authority ?? "localhost")\(request.uri.path)?"
        var links: [String] = []
        if backwards {
            if hasMore { links.append("<\(base)\(queryString(true))>; rel=\"prev\"") }
            links.append("<\(base)\(queryString(false))>; rel=\"next\"")
        } else if hasMore {
            links.append("<\(base)\(queryString(false))>; rel=\"next\"")
        }
        return links.isEmpty ? nil : links.joined(separator: ", ")
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

extension HTTPField.Name {
    static let xForwardedProto = Self("X-Forwarded-Proto")!
    static let link = Self("Link")!
}
