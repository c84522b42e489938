import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
@testable import DatabaseService
import Shared

@Suite("OpenAPI document")
struct OpenAPIDocumentTests {
    @Test("the repository's document describes exactly the routes the Database Service serves")
    func specMatchesRoutes() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("spec-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let routes = try buildRouter(store: try SQLiteStore(path: directory + "/db.sqlite")).operations
        let document = try Data(contentsOf: URL(fileURLWithPath: #filePath + "/../../../Sources/DatabaseService/Resources/openapi.json").standardized)
        let documented = try OpenAPIController<AppRequestContext>.operations(in: document)
        #expect(routes.subtracting(documented).isEmpty, "served but not documented")
        #expect(documented.subtracting(routes).isEmpty, "documented but not served")
        #expect(routes.contains("POST /api/products/batch") && routes.count > 6)
    }
}
