import Foundation
import Shared
import Testing

/// Bad input gets a 4xx JSON error naming the fault, never a 500, and changes nothing.

/// Bad input gets a 4xx JSON error naming the fault, never a 500, and changes nothing.
@Suite("Bad input over HTTP")
struct BadInputTests {
    struct Case: Sendable, CustomStringConvertible {
        var body: String
        var status: Int
        var code: String
        var param: String?
        var contentType: String? = "application/json"
        var description: String { "\(body.prefix(40)) -> \(status) \(code)" }
    }

    static let createCases: [Case] = [
        Case(body: "", status: 400, code: "invalid_body"),
        Case(body: "null", status: 400, code: "invalid_body"),
        Case(body: "[]", status: 400, code: "invalid_body"),
        Case(body: #"[{"name":"x"}]"#, status: 400, code: "invalid_body"),
        Case(body: "\"name\"", status: 400, code: "invalid_body"),
        Case(body: "{", status: 400, code: "invalid_json"),
        Case(body: #"{"name":"x",}"#, status: 400, code: "invalid_json"),
        Case(body: " \n [1]", status: 400, code: "invalid_body"),
        Case(body: " [1", status: 400, code: "invalid_json"),
        Case(body: #"{"name":"x"} {}"#, status: 400, code: "invalid_json"),
        // The whole body is read before any member is judged: a syntax fault anywhere wins, then an unknown name
        // (the first in sorted order), then the fields' own faults.
        Case(body: #"{"name":42,"type":"#, status: 400, code: "invalid_json"),
        Case(body: #"{"name":42,"zeta":1,"alpha":2}"#, status: 400, code: "parameter_unknown", param: "alpha"),
        Case(body: #"{"name":"x","id":"prod_1"}"#, status: 400, code: "parameter_unknown", param: "id"),
        Case(body: "{}", status: 400, code: "parameter_missing", param: "name"),
        Case(body: #"{"name":""}"#, status: 400, code: "parameter_invalid", param: "name"),
        Case(body: #"{"name":"   "}"#, status: 400, code: "parameter_invalid", param: "name"),
        Case(body: #"{"name":null}"#, status: 400, code: "parameter_invalid", param: "name"),
        Case(body: #"{"name":42}"#, status: 400, code: "parameter_invalid", param: "name"),
        Case(body: #"{"name":["x"]}"#, status: 400, code: "parameter_invalid", param: "name"),
        Case(body: #"{"name":"x","type":null}"#, status: 400, code: "parameter_invalid", param: "type"),
        Case(body: #"{"name":"x","type":7}"#, status: 400, code: "parameter_invalid", param: "type"),
        Case(body: #"{"name":"x","type":""}"#, status: 400, code: "parameter_invalid", param: "type"),
        Case(body: #"{"name":"x","metadata":"red"}"#, status: 400, code: "parameter_invalid", param: "metadata"),
        Case(body: #"{"name":"x","metadata":["a"]}"#, status: 400, code: "parameter_invalid", param: "metadata"),
        Case(body: #"{"name":"x","metadata":null}"#, status: 400, code: "parameter_invalid", param: "metadata"),
        Case(body: #"{"name":"x","metadata":{"n":1}}"#, status: 400, code: "parameter_invalid", param: "metadata[n]"),
        Case(body: #"{"name":"x","metadata":{"n":null}}"#, status: 400, code: "parameter_invalid", param: "metadata[n]"),
        Case(body: #"{"name":"x","metadata":{"a[b]":"c"}}"#, status: 400, code: "parameter_invalid", param: "metadata[a[b]]"),
        Case(body: #"{"name":"\#(String(repeating: "n", count: 251))"}"#, status: 400, code: "parameter_invalid", param: "name"),
        Case(body: #"{"name":"x"}"#, status: 415, code: "unsupported_media_type", contentType: "text/plain"),
    ]

    @Test("POST /products refuses every bad body with the right code and param, creating nothing")
    func badCreate() async throws {
        let stack = try await Stack.started()
        for testCase in Self.createCases {
            let response = try await HTTP.send(.POST, stack.productsURL + "/products", body: testCase.body, contentType: testCase.contentType)
            #expect(response.status == testCase.status, "\(testCase): \(response.text)")
            let error = try #require(response.error, "\(testCase): error body \(response.text)")
            #expect(error.code == testCase.code, "\(testCase)")
            #expect(error.param == testCase.param, "\(testCase)")
            #expect(!error.error.isEmpty)
        }
        #expect(try await stack.listedProducts().isEmpty, "nothing was created")
        #expect(try await HTTP.get(stack.productsURL + "/cache/stats").object["pending_writes"] as? Int == 0)
        await stack.stop()
    }

    @Test("invalid UTF-8 in a body is a 400, not a crash")
    func invalidUTF8() async throws {
        let stack = try await Stack.started()
        let invalid: [UInt8] = [0x7B, 0x22, 0x6E, 0x61, 0x6D, 0x65, 0x22, 0x3A, 0x22, 0xFF, 0xFE, 0x22, 0x7D]  // {"name":"\xFF\xFE"}
        let response = try await HTTP.send(.POST, stack.productsURL + "/products", bytes: invalid)
        #expect(response.status == 400)
        #expect(response.error?.code == "invalid_json")
        #expect(try await HTTP.get(stack.productsURL + "/health").status == 200)
        await stack.stop()
    }

    @Test("limit must be 1...1000 on both services")
    func badLimits() async throws {
        let stack = try await Stack.started()
        for limit in ["abc", "0", "-1", "1001", "1.5", ""] {
            for url in [stack.productsURL + "/products?limit=\(limit)", stack.databaseURL + "/api/products?limit=\(limit)"] {
                let response = try await HTTP.get(url)
                #expect(response.status == 400, "\(url)")
                #expect(response.error?.code == "parameter_invalid")
                #expect(response.error?.param == "limit")
            }
        }
        #expect(try await HTTP.get(stack.productsURL + "/products?limit=1000").status == 200)
        await stack.stop()
    }

    @Test("unknown routes 404, wrong methods 405 with Allow, oversized bodies 413")
    func routingErrors() async throws {
        let stack = try await Stack.started()
        for base in [stack.productsURL, stack.databaseURL] {
            let missing = try await HTTP.get(base + "/no/such/route")
            #expect(missing.status == 404)
            #expect(missing.error?.code == "route_not_found")
        }
        let wrongMethod = try await HTTP.send(.PUT, stack.productsURL + "/cache/stats", body: "{}")
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.error?.code == "method_not_allowed")
        #expect(wrongMethod.headers["Allow"].first?.contains("GET") == true)
        let wrongOnItem = try await HTTP.send(.POST, stack.productsURL + "/products/prod_x", body: "{}")
        #expect(wrongOnItem.status == 405)
        #expect(wrongOnItem.headers["Allow"].first?.contains("DELETE") == true)

        let huge = #"{"name":""# + String(repeating: "a", count: ProductRules.maxBodyBytes + 1) + #""}"#
        let tooLarge = try await HTTP.post(stack.productsURL + "/products", json: huge)
        #expect(tooLarge.status == 413)
        #expect(tooLarge.error?.code == "body_too_large")
        #expect(try await stack.listedProducts().isEmpty)
        await stack.stop()
    }

    @Test("the Database Service refuses bad products and stale versions with 4xx", arguments: Backend.available)
    func databaseBadInput(backend: Backend) async throws {
        let stack = try await Stack.started(backend: backend)
        let api = stack.databaseURL + "/api/products"
        let cases: [(String, Int, String)] = [
            ("{}", 400, "parameter_missing"),
            (#"{"id":"p1"}"#, 400, "parameter_missing"),
            (#"{"id":"p1","name":" "}"#, 400, "parameter_invalid"),
            (#"{"id":"p1","name":"x","version":0}"#, 400, "parameter_invalid"),
            (#"{"id":"p1","name":"x","created_at":"yesterday"}"#, 400, "parameter_invalid"),
            ("[1]", 400, "invalid_body"),
            ("{", 400, "invalid_json"),
        ]
        for (body, status, code) in cases {
            let response = try await HTTP.post(api, json: body)
            #expect(response.status == status, "\(body): \(response.text)")
            #expect(response.error?.code == code, "\(body)")
        }
        #expect(try await HTTP.post(api, json: #"{"id":"p1","name":"x","version":2}"#).status == 201)
        #expect(try await HTTP.post(api, json: #"{"id":"p1","name":"x","version":2}"#).status == 200, "a retried POST is harmless")
        let stale = try await HTTP.post(api, json: #"{"id":"p1","name":"older","version":1}"#)
        #expect(stale.status == 409)
        #expect(stale.error?.code == "version_conflict")
        #expect(try await HTTP.get(api + "/p1").json(Product.self).version == 2)
        #expect(try await HTTP.send(.DELETE, api + "/p1?version=abc").status == 400)
        #expect(try await HTTP.post(api + "/batch", json: #"{"operations":[{"op":"explode"}]}"#).status == 400)
        await stack.stop()
    }
}
