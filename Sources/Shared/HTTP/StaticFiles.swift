import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// A page and its files, served from a bundle's resources as they are, each with its type and the page's security
/// headers: `/docs` (Swagger UI) and `/admin` (the console).
package struct StaticFiles: Sendable {
    /// A file's name under the resources' folder and its `Content-Type`.
    package typealias File = (name: String, contentType: String)

    private let files: [String: (contentType: String, body: ByteBuffer)]
    private let headers: HTTPFields

    /// Reads `files` from `subdirectory` of `bundle`'s resources; throws at start when one is missing.
    package init(bundle: Bundle, subdirectory: String, files: [File], headers: HTTPFields) throws {
        var read: [String: (String, ByteBuffer)] = [:]
        for (name, contentType) in files {
            let dot = name.lastIndex(of: ".")!
            guard let url = bundle.url(forResource: String(name[..<dot]), withExtension: String(name[name.index(after: dot)...]), subdirectory: subdirectory)
            else { throw SettingError("\(subdirectory)/\(name) is missing from the service's resources") }
            read[name] = (contentType, ByteBuffer(data: try Data(contentsOf: url)))
        }
        self.files = read
        self.headers = headers
    }

    /// The file `name` (one of those read), cached by browsers for an hour.
    package func response(_ name: String) -> Response {
        let (contentType, body) = files[name]!
        var headers = headers
        headers[.contentType] = contentType
        headers[.cacheControl] = "public, max-age=3600"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
    }

    /// The page `body` (HTML), never cached; at `/name/` (the router matches it too, and relative paths would
    /// resolve under it) a redirect to `/name` with a relative location, which holds behind a proxy's path prefix.
    package func page(_ body: ByteBuffer, at name: String, for request: Request) -> Response {
        var headers = headers
        let trailingSlashes = request.uri.path.reversed().prefix { $0 == "/" }.count
        if trailingSlashes > 0 {
            headers[.location] = String(repeating: "../", count: trailingSlashes) + name
            return Response(status: .permanentRedirect, headers: headers)
        }
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
    }

    /// A Content Security Policy allowing scripts, styles and connections to this service only, never framed, with
    /// `extra` directives (images, inline styles) as the page needs, and no sniffing or referrer.
    package static func securityHeaders(styles: String = "'self'", images: String = "'self' data:") -> HTTPFields {
        [
            .contentSecurityPolicy: "default-src 'none'; script-src 'self'; style-src \(styles); img-src \(images); "
                + "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            .xContentTypeOptions: "nosniff",
            HTTPField.Name("Referrer-Policy")!: "no-referrer",
        ]
    }
}
