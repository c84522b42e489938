import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@testable import ProductsService
import Shared

/// The Products Service's CORS: its headers on every response, errors included, and preflight answers.
@Suite("CORS")
struct CORSTests {
    func makeApp(_ policy: CORSPolicy) -> some ApplicationProtocol {
        let router = Router(context: AppRequestContext.self)
        router.add(middleware: EdgeMiddleware(browserAccess: CORSHeaders(policy: policy)))
        let routes = RouteRecorder(router)
        routes.get("items/{id}") { _, context in try context.parameters.require("id") }
        routes.get("teapot") { _, _ -> String in throw APIError(.badRequest, code: "teapot", message: "short and stout", param: "spout") }
        routes.addMethodNotAllowedHandling()
        return Application(router: router)
    }

    @Test("any origin: * on answers, errors and unknown routes; preflight 204 with the allowed methods and headers")
    func anyOrigin() async throws {
        try await makeApp(.anyOrigin).test(.router) { client in
            for uri in ["/items/7", "/teapot", "/missing"] {
                let response = try await client.execute(uri: uri, method: .get)
                #expect(response.headers[.accessControlAllowOrigin] == "*", "\(uri)")
                #expect(response.headers[.accessControlExposeHeaders]?.contains("ETag") == true, "\(uri)")
            }
            let preflight = try await client.execute(uri: "/items/7", method: .options, headers: [.origin: "https://shop.example"])
            #expect(preflight.status == .noContent)
            #expect(preflight.headers[.accessControlAllowMethods]?.contains("DELETE") == true)
            #expect(preflight.headers[.accessControlAllowHeaders]?.contains("Authorization") == true)
        }
    }

    @Test("listed origins are echoed with Vary: Origin; others get no CORS headers; a closed condition allows none")
    func listedOrigins() async throws {
        try await makeApp(.origins(["https://shop.example"])).test(.router) { client in
            let allowed = try await client.execute(uri: "/items/7", method: .get, headers: [.origin: "https://shop.example"])
            #expect(allowed.headers[.accessControlAllowOrigin] == "https://shop.example" && allowed.headers[.vary] == "Origin")
            let other = try await client.execute(uri: "/items/7", method: .get, headers: [.origin: "https://evil.example"])
            #expect(other.headers[.accessControlAllowOrigin] == nil && other.headers[.vary] == "Origin")
        }
        try await makeApp(.anyOriginWhile { false }).test(.router) { client in
            let response = try await client.execute(uri: "/items/7", method: .get, headers: [.origin: "https://shop.example"])
            #expect(response.headers[.accessControlAllowOrigin] == nil)
        }
    }
}
