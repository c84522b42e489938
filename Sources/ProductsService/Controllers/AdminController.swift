import Foundation
import Hummingbird
import NIOCore
import Shared

/// `/admin`: the merchant's console, a page and its ES module from the service's resources (no CDN, no bundler).
/// It calls the public API from the browser with the merchant's API key, so it needs no route or rights of its own.
struct AdminController<Context: RequestContext> {
    let page: ByteBuffer
    let assets: StaticFiles

    /// The files `/admin/assets/` serves, with their types.
    static var assetTypes: [StaticFiles.File] {
        [("admin.js", "text/javascript; charset=utf-8"), ("admin.css", "text/css; charset=utf-8")]
    }

    /// Reads the console's files; throws at start when one is missing.
    init() throws {
        guard let index = Bundle.module.url(forResource: "index", withExtension: "html", subdirectory: "admin") else {
            throw SettingError("admin/index.html is missing from the service's resources")
        }
        page = ByteBuffer(data: try Data(contentsOf: index))
        // Product images may be anywhere on the web; everything else comes from this service.
        assets = try StaticFiles(
            bundle: .module, subdirectory: "admin", files: Self.assetTypes, headers: StaticFiles.securityHeaders(images: "'self' https: http: data:"))
    }

    var endpoints: RouteCollection<Context> {
        var routes = RouteCollection(context: Context.self)
            .get("admin", use: console)
        for (name, _) in Self.assetTypes {
            routes = routes.get(RouterPath("admin/assets/\(name)")) { _, _ in self.assets.response(name) }
        }
        return routes
    }

    /// GET /admin: the console's page.
    @Sendable func console(_ request: Request, context: Context) -> Response {
        assets.page(page, at: "admin", for: request)
    }
}
