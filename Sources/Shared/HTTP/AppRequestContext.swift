import Foundation
import Hummingbird
import Logging

/// A request context that carries the tenant a request acts for, once authenticated.
package protocol TenantRequestContext: RequestContext {
    /// The tenant: the API key's, or `default` when the service runs open.
    var tenant: String { get set }
    /// The public id of the API key used, if any (for rate limits and logs; never the key).
    var keyID: String? { get set }
}

/// The request context of both services: a 1 MiB body limit, the shared JSON coders, and the tenant.
package struct AppRequestContext: TenantRequestContext {
    package var coreContext: CoreRequestContextStorage
    package var tenant = defaultTenant
    package var keyID: String?

    package init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
    }

    package var maxUploadSize: Int { Self.maxBodySize }
    package var requestDecoder: JSONDecoder { JSONCoding.decoder }
    package var responseEncoder: JSONEncoder { JSONCoding.encoder }

    package static let maxBodySize = 1024 * 1024
}

extension RequestContext {
    /// The `{id}` path parameter, percent-decoded (the router hands it over as sent); a malformed escape or
    /// U+0000 is a 400 naming `id`.
    package func productID() throws -> String {
        let raw = try parameters.require("id")
        // Generated ids need no escaping: the common case skips decoding (a raw path cannot hold U+0000).
        guard raw.utf8.contains(UInt8(ascii: "%")) else { return raw }
        guard let id = raw.removingPercentEncoding else {
            throw APIError.invalidParameter("id", "The product id in the path is not validly percent-encoded")
        }
        try ProductRules.checkNoNUL(id, param: "id")
        return id
    }
}
