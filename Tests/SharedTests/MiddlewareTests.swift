import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@testable import Shared

@Suite("Shared middleware")
struct MiddlewareTests {
    struct Boom: Error {}

    /// A small app wired the way both services wire theirs, with `browserAccess` as the Products Service's CORS.
    static func makeApp(browserAccess: (any BrowserAccess)? = nil) -> some ApplicationProtocol {
        let router = Router(context: AppRequestContext.self)
        router.add(middleware: EdgeMiddleware(browserAccess: browserAccess))
        let routes = RouteRecorder(router)
        routes.get("items/{id}") { _, context in try context.parameters.require("id") }
        routes.delete("items/{id}") { _, _ in "gone" }
        routes.get("fail") { _, _ -> String in throw Boom() }
        routes.get("teapot") { _, _ -> String in throw APIError(.badRequest, code: "teapot", message: "short and stout", param: "spout") }
        routes.post("echo") { request, _ -> String in
            let value = try await request.decodeJSON(as: [String: String].self)
            return value["say"] ?? ""
        }
        routes.addMethodNotAllowedHandling()
        return Application(router: router)
    }

    @Test("errors become {error, code, param} JSON; unexpected ones a 500 without details")
    func errorShape() async throws {
        try await Self.makeApp().test(.router) { client in
            do {
                let response = try await client.execute(uri: "/teapot", method: .get)
                #expect(response.status == .badRequest)
                #expect(response.headers[.accessControlAllowOrigin] == nil, "no browser access given: no CORS")
                let body = try JSONDecoder().decode(APIError.Body.self, from: response.body)
                #expect(body == APIError.Body(error: "short and stout", code: "teapot", param: "spout", requestID: response.headers[.xRequestID]))
                #expect(body.requestID?.count == 32)
            }
            do {
                let response = try await client.execute(uri: "/fail", method: .get)
                #expect(response.status == .internalServerError)
                #expect(try JSONDecoder().decode(APIError.Body.self, from: response.body).code == "internal_error")
                #expect(!String(buffer: response.body).contains("Boom"))
            }
            do {
                let response = try await client.execute(uri: "/missing", method: .get)
                #expect(response.status == .notFound)
                #expect(try JSONDecoder().decode(APIError.Body.self, from: response.body).code == "route_not_found")
            }
        }
    }

    @Test("a known path under another method is 405 with an Allow header")
    func methodNotAllowed() async throws {
        try await Self.makeApp().test(.router) { client in
            do {
                let response = try await client.execute(uri: "/items/7", method: .put)
                #expect(response.status == .methodNotAllowed)
                #expect(response.headers[.allow] == "GET, DELETE, OPTIONS")
                #expect(try JSONDecoder().decode(APIError.Body.self, from: response.body).code == "method_not_allowed")
            }
            do {
                let response = try await client.execute(uri: "/items/7", method: .get)
                #expect(String(buffer: response.body) == "7")
            }
        }
    }

    @Test("OPTIONS answers 204 without CORS headers when the service lets browsers do nothing")
    func bareOptions() async throws {
        try await Self.makeApp().test(.router) { client in
            let response = try await client.execute(uri: "/items/7", method: .options, headers: [.origin: "https://shop.example"])
            #expect(response.status == .noContent)
            #expect(response.headers[.accessControlAllowOrigin] == nil && response.headers[.accessControlAllowMethods] == nil)
        }
    }

    @Test("bodies: wrong content type 415, over 1 MiB 413, malformed 400")
    func bodies() async throws {
        try await Self.makeApp().test(.router) { client in
            do {
                let response = try await client.execute(uri: "/echo", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: #"{"say":"hi"}"#))
                #expect(String(buffer: response.body) == "hi")
            }
            do {
                let response = try await client.execute(uri: "/echo", method: .post, headers: [.contentType: "text/plain"], body: ByteBuffer(string: "{}"))
                #expect(response.status == .unsupportedMediaType)
            }
            let big = ByteBuffer(string: #"{"say":""# + String(repeating: "a", count: 1_100_000) + #""}"#)
            do {
                let response = try await client.execute(uri: "/echo", method: .post, headers: [.contentType: "application/json"], body: big)
                #expect(response.status == .contentTooLarge)
                #expect(try JSONDecoder().decode(APIError.Body.self, from: response.body).code == "body_too_large")
            }
            do {
                let response = try await client.execute(uri: "/echo", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: "{"))
                #expect(response.status == .badRequest)
            }
        }
    }

    @Test("generated request and trace ids are lowercase hex of the right length, and do not repeat")
    func generatedIDs() {
        var seen = Set<String>()
        for _ in 0..<10_000 {
            let trace = RequestTrace(headers: [:])
            #expect(trace.requestID.count == 32 && trace.traceID.count == 32)
            #expect(trace.traceID.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
            seen.insert(trace.requestID)
            seen.insert(trace.traceID)
        }
        #expect(seen.count == 20_000)
    }
}
