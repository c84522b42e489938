import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// `GET /openapi.json` (the service's OpenAPI document, as kept in the repository) and `GET /docs` (Swagger UI
/// for it, from files vendored in Shared's resources: it works with no internet access).
package struct OpenAPIController<Context: RequestContext> {
    let document: ByteBuffer
    let page: ByteBuffer
    /// Swagger UI's files and the script that starts it, by name under `/docs/assets/`.
    let assets: [String: (contentType: String, body: ByteBuffer)]

    /// The files `/docs/assets/` serves, with their types.
    static var assetTypes: [(name: String, contentType: String)] {
        [("swagger-ui.css", "text/css; charset=utf-8"), ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
         ("docs.js", "text/javascript; charset=utf-8")]
    }

    /// Serves the document at `url` (a resource of the service's bundle); throws at start when it or one of Swagger
    /// UI's files is missing.
    package init(documentAt url: URL?, title: String) throws {
        guard let url else { throw SettingError("the OpenAPI document is missing from the service's resources") }
        document = ByteBuffer(data: try Data(contentsOf: url))
        page = ByteBuffer(string: Self.page(title: title))
        var assets: [String: (String, ByteBuffer)] = [:]
        for (name, contentType) in Self.assetTypes {
            let dot = name.lastIndex(of: ".")!
            guard let file = Bundle.module.url(forResource: String(name[..<dot]), withExtension: String(name[name.index(after: dot)...]), subdirectory: "swagger-ui")
            else { throw SettingError("Swagger UI's \(name) is missing from the service's resources") }
            assets[name] = (contentType, ByteBuffer(data: try Data(contentsOf: file)))
        }
        self.assets = assets
    }

    package var endpoints: RouteCollection<Context> {
        var routes = RouteCollection(context: Context.self)
            .get("openapi.json", use: openAPI)
            .get("docs", use: docs)
        for (name, _) in Self.assetTypes {
            routes = routes.get(RouterPath("docs/assets/\(name)")) { _, _ in self.asset(name) }
        }
        return routes
    }

    /// GET /openapi.json: the OpenAPI 3.1 document.
    @Sendable func openAPI(_ request: Request, context: Context) -> Response {
        .json(buffer: document)
    }

    /// GET /docs: interactive documentation.
    @Sendable func docs(_ request: Request, context: Context) -> Response {
        var headers = Self.securityHeaders
        // The router also matches `/docs/`, where the page's relative asset paths would resolve under `/docs/docs/`:
        // send the browser to `/docs` with a relative location, which holds behind a proxy's path prefix as well.
        let trailingSlashes = request.uri.path.reversed().prefix { $0 == "/" }.count
        if trailingSlashes > 0 {
            headers[.location] = String(repeating: "../", count: trailingSlashes) + "docs"
            return Response(status: .permanentRedirect, headers: headers)
        }
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: page))
    }

    /// GET /docs/assets/{file}: one of Swagger UI's files, or the script that starts it.
    func asset(_ name: String) -> Response {
        let (contentType, body) = assets[name]!
        var headers = Self.securityHeaders
        headers[.contentType] = contentType
        headers[.cacheControl] = "public, max-age=3600"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
    }

    /// Scripts and styles from this service only, no inline script, never framed. Swagger UI sets inline styles.
    static var securityHeaders: HTTPFields {
        [
            .contentSecurityPolicy: "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                + "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            .xContentTypeOptions: "nosniff",
            HTTPField.Name("Referrer-Policy")!: "no-referrer",
        ]
    }

    /// The operations an OpenAPI document describes, as `METHOD /path/{parameter}`.
    package static func operations(in document: Data) throws -> Set<String> {
        let methods: Set<String> = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]
        guard let root = try JSONSerialization.jsonObject(with: document) as? [String: Any],
              let paths = root["paths"] as? [String: [String: Any]]
        else { return [] }
        return Set(paths.flatMap { path, item in item.keys.filter(methods.contains).map { "\($0.uppercased()) \(path)" } })
    }

    private static func page(title: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en">
        <head>
          <meta charset="utf-8">
          <meta name="viewport" content="width=device-width, initial-scale=1">
          <title>\(title) – API documentation</title>
          <link rel="stylesheet" href="docs/assets/swagger-ui.css">
        </head>
        <body>
          <main id="swagger-ui"></main>
          <script src="docs/assets/swagger-ui-bundle.js"></script>
          <script src="docs/assets/docs.js"></script>
        </body>
        </html>

        """
    }
}
