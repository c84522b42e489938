import HTTPTypes
import Hummingbird
import NIOCore
import Shared

/// `/exports`: a tenant's catalog as one download.
struct ExportsController<Context: TenantRequestContext> {
    let replica: Replica
    let auth: AuthMiddleware<Context>

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .add(middleware: auth)
            .get("products.jsonl", use: products)
    }

    /// Products read per page while exporting: the response holds one page at a time, whatever the catalog's size.
    static var pageSize: Int { ListLimit.range.upperBound }

    /// GET /exports/products.jsonl: every product matching `GET /products`'s filters, one JSON object a line, in id
    /// order, streamed; `starting_after` resumes an export cut off midway.
    @Sendable func products(_ request: Request, context: Context) async throws -> Response {
        for (name, _) in try QueryString.parse(request.uri.query) where name == "limit" || name == "ending_before" {
            throw APIError.invalidParameter(name, "An export streams every matching product; resume one with starting_after")
        }
        var firstQuery = try ProductQuery.parse(query: request.uri.query)
        firstQuery.limit = Self.pageSize
        let (replica, tenant, logger) = (self.replica, context.tenant, context.logger)
        // The first page is read before answering, so that a failure there is still a JSON error.
        let (first, query) = (try await replica.list(tenant: tenant, query: firstQuery), firstQuery)
        let body = ResponseBody { writer in
            var (page, query) = (first, query)
            var exported = 0
            while true {
                var lines = ByteBuffer()
                lines.reserveCapacity(page.products.reduce(0) { $0 + $1.jsonByteCount + 1 })
                for product in page.products {
                    product.writeJSON(into: &lines, locale: query.locale)
                    lines.writeInteger(UInt8(ascii: "\n"))
                }
                try await writer.write(lines)
                exported += page.products.count
                guard page.hasMore, let last = page.products.last else { break }
                query.cursor = .startingAfter(last.id)
                do {
                    page = try await replica.list(tenant: tenant, query: query)
                } catch {
                    // The status is sent: the response ends without its last chunk, which clients see as cut off.
                    logger.error("export cut off", metadata: ["exported": "\(exported)", "after": "\(last.id)", "error": "\(error)"])
                    throw error
                }
            }
            try await writer.finish(nil)
        }
        var headers: HTTPFields = [.contentType: "application/x-ndjson", .contentDisposition: "attachment; filename=\"products.jsonl\""]
        if let locale = query.locale { headers[.contentLanguage] = locale }
        return Response(status: .ok, headers: headers, body: body)
    }
}
