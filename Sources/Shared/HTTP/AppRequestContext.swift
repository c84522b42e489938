import Foundation
import Hummingbird
import Logging

/// The request context of both services: a 1 MiB body limit and the shared JSON coders.
package struct AppRequestContext: RequestContext {
    package var coreContext: CoreRequestContextStorage

    package init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
    }

    package var maxUploadSize: Int { Self.maxBodySize }
    package var requestDecoder: JSONDecoder { JSONCoding.decoder }
    package var responseEncoder: JSONEncoder { JSONCoding.encoder }

    package static let maxBodySize = 1024 * 1024
}
