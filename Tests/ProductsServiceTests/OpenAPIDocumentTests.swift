import Foundation
import Logging
import Testing

@testable import ProductsService
import Shared

@Suite("OpenAPI document")
struct OpenAPIDocumentTests {
    @Test("the repository's document describes exactly the routes the Products Service serves")
    func specMatchesRoutes() throws {
        let fixture = try ReplicaFixture()
        defer { fixture.close(); fixture.remove() }
        let authenticator = Authenticator(database: fixture.database, directory: nil, logger: Logger(label: "test"))
        let imports = ImportWorker(replica: fixture.replica, directory: NSTemporaryDirectory() + "/unused-imports", replicaID: "test", logger: Logger(label: "test"))
        let routes = try buildRouter(replica: fixture.replica, authenticator: authenticator, imports: imports, settings: ProductsServiceSettings()).operations
        let document = try Data(contentsOf: URL(fileURLWithPath: #filePath + "/../../../Sources/ProductsService/Resources/openapi.json").standardized)
        let documented = try OpenAPIController<AppRequestContext>.operations(in: document)
        #expect(routes.subtracting(documented).isEmpty, "served but not documented")
        #expect(documented.subtracting(routes).isEmpty, "documented but not served")
        #expect(routes.contains("PATCH /products/{id}") && routes.count > 10)
    }
}
