import Foundation
import Hummingbird
import NIOCore

/// `GET /openapi.json` (the service's OpenAPI document, as kept in the repository) and `GET /docs` (Swagger UI
/// for it, loaded from a public CDN).
package struct OpenAPIController<Context: RequestContext> {
    let document: ByteBuffer
    let page: ByteBuffer

    /// Serves the document at `url` (a resource of the service's bundle); throws at start when it is missing.
    package init(documentAt url: URL?, title: String) throws {
        guard let url else { throw SettingError("the OpenAPI document is missing from the service's resources") }
        document = ByteBuffer(data: try Data(contentsOf: url))
        page = ByteBuffer(string: Self.page(title: title))
    }

    package var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .get("openapi.json", use: openAPI)
            .get("docs", use: docs)
    }

    /// GET /openapi.json: the OpenAPI 3.1 document.
    @Sendable func openAPI(_ request: Request, context: Context) -> Response {
        .json(buffer: document)
    }

    /// GET /docs: interactive documentation.
    @Sendable func docs(_ request: Request, context: Context) -> Response {
        Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: page))
    }

    /// The operations an OpenAPI document describes, as `METHOD /path/{parameter}`.
    package static func operations(in document: Data) throws -> Set<String> {
        let methods: Set<String> = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]
        guard let root = try JSONSerialization.jsonObject(with: document) as? [String: Any],
              let paths = root["paths"] as? [String: [String: Any]]
        else { return [] }
        return Set(paths.flatMap { path, item in item.keys.filter(methods.contains).map { "\($0.uppercased()) \(path)" } })
    }

    static var swaggerUI: String { "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5" }

    private static func page(title: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en">
        <head>
          <meta charset="utf-8">
          <meta name="viewport" content="width=device-width, initial-scale=1">
          <title>\(title) – API documentation</title>
          <link rel="stylesheet" href="\(swaggerUI)/swagger-ui.css">
        </head>
        <body>
          <div id="swagger-ui"></div>
          <script src="\(swaggerUI)/swagger-ui-bundle.js"></script>
          <script>
            window.ui = SwaggerUIBundle({ url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true });
          </script>
        </body>
        </html>

        """
    }
}
