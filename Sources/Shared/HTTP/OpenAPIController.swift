import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// `GET /openapi.json` (the service's OpenAPI document, as kept in the repository) and `GET /docs` (Swagger UI
/// for it, from files vendored in Shared's resources: it works with no internet access).
package struct OpenAPIController<Context: RequestContext> {
    let document: ByteBuffer
    let page: ByteBuffer
    /// Swagger UI's files and the script that starts it, under `/docs/assets/`.
    let assets: StaticFiles

    /// The files `/docs/assets/` serves, with their types.
    static var assetTypes: [StaticFiles.File] {
        [("swagger-ui.css", "text/css; charset=utf-8"), ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
         ("docs.js", "text/javascript; charset=utf-8")]
    }

    /// Serves the document at `url` (a resource of the service's bundle); throws at start when it or one of Swagger
    /// UI's files is missing.
    package init(documentAt url: URL?, title: String) throws {
        guard let url else { throw SettingError("the OpenAPI document is missing from the service's resources") }
        document = ByteBuffer(data: try Data(contentsOf: url))
        page = ByteBuffer(string: Self.page(title: title))
        // Swagger UI sets inline styles.
        assets = try StaticFiles(
            bundle: .module, subdirectory: "swagger-ui", files: Self.assetTypes, headers: StaticFiles.securityHeaders(styles: "'self' 'unsafe-inline'"))
    }

    package var endpoints: RouteCollection<Context> {
        var routes = RouteCollection(context: Context.self)
            .get("openapi.json", use: openAPI)
            .get("docs") { request, _ in self.assets.page(self.page, at: "docs", for: request) }
        for (name, _) in Self.assetTypes {
            routes = routes.get(RouterPath("docs/assets/\(name)")) { _, _ in self.assets.response(name) }
        }
        return routes
    }

    /// GET /openapi.json: the OpenAPI 3.1 document.
    @Sendable func openAPI(_ request: Request, context: Context) -> Response {
        .json(buffer: document)
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
