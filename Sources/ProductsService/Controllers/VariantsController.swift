import HTTPTypes
import Hummingbird
import NIOCore
import Shared

/// `/variants`: the lookup a cart makes, by SKU.
struct VariantsController<Context: TenantRequestContext> {
    let replica: Replica
    let auth: AuthMiddleware<Context>

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .add(middleware: auth)
            .get(use: lookup)
    }

    /// GET /variants?sku=A,B,C: up to 100 SKUs; each one a live variant holds is answered with its product's id and
    /// the variant, in the order asked; SKUs no variant holds are left out. `?locale=` localizes option labels.
    @Sendable func lookup(_ request: Request, context: Context) async throws -> Response {
        var asked: [String]?
        var query = ProductQuery(limit: ProductQuery.maxIDs)
        for (name, value) in try QueryString.parse(request.uri.query) {
            switch name {
            case "sku", "locale":
                let parsed = try ProductQuery.parse(query: QueryString.encode([(name, value)]))
                if name == "sku" {
                    guard asked == nil else { throw APIError.invalidParameter(name, "'sku' may be given only once") }
                    asked = value.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                    query.skus = parsed.skus
                } else {
                    query.locale = parsed.locale
                }
            default:
                throw APIError.unknownParameter(name, in: "query")
            }
        }
        guard let asked else { throw APIError.missingParameter("sku", "sku is required: up to \(ProductQuery.maxIDs) SKUs, separated by commas") }
        let page = try await replica.list(tenant: context.tenant, query: query)
        var found: [String: (productID: String, variant: Variant)] = [:]
        for cached in page.products {
            let product = query.locale.map { cached.product.localized(to: $0) } ?? cached.product
            for variant in product.variants {
                if let sku = variant.sku, query.skus?.binarySearch(sku) != nil { found[sku] = (product.id, variant) }
            }
        }
        var body = ByteBuffer()
        var answered = Set<String>()
        body.writeJSONArray(asked.filter { found[$0] != nil && answered.insert($0).inserted }, opening: "[", closing: "]") { sku, body in
            let (productID, variant) = found[sku]!
            body.writeJSONString(sku, after: "{\"sku\":")
            body.writeJSONString(productID, after: ",\"product_id\":")
            body.writeStaticString(",\"variant\":")
            variant.writeJSON(into: &body)
            body.writeInteger(UInt8(ascii: "}"))
        }
        var response = Response.json(buffer: body)
        if let locale = query.locale { response.headers[.contentLanguage] = locale }
        return response
    }
}
