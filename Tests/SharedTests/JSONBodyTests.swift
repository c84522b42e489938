import Foundation
import NIOCore
import Testing

@testable import Shared

@Suite("Request body decoding")
struct JSONBodyTests {
    struct Sample: Decodable {
        var name: String
        var count: Int?
        var tags: [String: String]?
    }

    func error(decoding json: String) -> APIError? {
        do {
            _ = try JSONBody.decode(Sample.self, from: ByteBuffer(string: json))
            return nil
        } catch {
            return error as? APIError
        }
    }

    @Test("strict JSON: trailing commas, garbage and deep nesting are refused; valid documents pass")
    func strictJSON() {
        let invalid = [
            #"{"a":1,}"#, "[1,]", "{", "}", #"{"a" 1}"#, #"{"a":01}"#, "[1.]", "[.5]", "[1e]", "[tru]", #"["\x"]"#, #"["\u12G4"]"#,
            "[\"a\u{01}\"]", #"{"a":1} {"#, "{'a':1}", "[1 2]", String(repeating: "[", count: 300) + String(repeating: "]", count: 300),
        ]
        for json in invalid {
            #expect(StrictJSON.problem(in: ByteBuffer(string: json)) != nil, "\(json)")
        }
        let valid = [
            #"{"a":1}"#, " [ ] ", "{}", #"{"a":[1,-2.5e+3,true,false,null,{"b":"\u00e9\n"}]}"#, "0", #""s""#, "-0.0E-1",
            String(repeating: "[", count: 200) + String(repeating: "]", count: 200),
        ]
        for json in valid {
            #expect(StrictJSON.problem(in: ByteBuffer(string: json)) == nil, "\(json)")
        }
    }

    @Test("each decoding failure maps to a 400 that names its field")
    func errorMapping() {
        #expect(error(decoding: "")?.code == "invalid_body")
        #expect(error(decoding: "null")?.code == "invalid_body")
        #expect(error(decoding: "[1]")?.code == "invalid_body")
        #expect(error(decoding: "{")?.code == "invalid_json")
        #expect(error(decoding: #"{"name":"x",}"#)?.code == "invalid_json")
        #expect(error(decoding: "{}").map { ($0.code, $0.param) } ?? ("", nil) == ("parameter_missing", "name"))
        #expect(error(decoding: #"{"name":1}"#).map { ($0.code, $0.param) } ?? ("", nil) == ("parameter_invalid", "name"))
        #expect(error(decoding: #"{"name":"x","count":"3"}"#)?.param == "count")
        #expect(error(decoding: #"{"name":"x","tags":{"a":2}}"#)?.param == "tags[a]")
        #expect(error(decoding: #"{"name":"x","tags":[]}"#)?.message.contains("an object") == true)
        #expect(error(decoding: #"{"name":"x"}"#) == nil)
        for failure in [error(decoding: "{"), error(decoding: "{}")] {
            #expect(failure?.status == .badRequest)
        }
    }

    @Test("invalid UTF-8 is invalid JSON")
    func invalidUTF8() throws {
        let bytes: [UInt8] = [0x7B, 0x22, 0x6E, 0x61, 0x6D, 0x65, 0x22, 0x3A, 0x22, 0xC3, 0x28, 0x22, 0x7D]
        #expect(throws: APIError.self) { try JSONBody.decode(Sample.self, from: ByteBuffer(bytes: bytes)) }
    }
}

@Suite("Product rules")
struct ProductRulesTests {
    @Test("names are trimmed and must be 1 to 250 characters")
    func names() throws {
        #expect(try ProductRules.validName("  Lamp \n") == "Lamp")
        #expect(throws: APIError.self) { try ProductRules.validName("   ") }
        #expect(throws: APIError.self) { try ProductRules.validName(String(repeating: "x", count: 251)) }
        #expect(try ProductRules.validName(String(repeating: "é", count: 250)).count == 250)
    }

    @Test("metadata: at most 50 keys, keys 1 to 40 characters without brackets, values at most 500")
    func metadata() throws {
        try ProductRules.validateMetadata(["color": "red"])
        #expect(throws: APIError.self) { try ProductRules.validateMetadata(["": "x"]) }
        #expect(throws: APIError.self) { try ProductRules.validateMetadata(["a[0]": "x"]) }
        #expect(throws: APIError.self) { try ProductRules.validateMetadata([String(repeating: "k", count: 41): "x"]) }
        #expect(throws: APIError.self) { try ProductRules.validateMetadata(["k": String(repeating: "v", count: 501)]) }
        let many = Dictionary(uniqueKeysWithValues: (0..<51).map { ("k\($0)", "v") })
        #expect(throws: APIError.self) { try ProductRules.validateMetadata(many) }
    }

    @Test("a stored product needs a version, timestamps and valid fields")
    func storedProduct() throws {
        let now = Timestamp.now()
        var product = Product(id: "prod_1", name: "x", type: "physical", metadata: [:], createdAt: now, updatedAt: now, version: 1)
        try ProductRules.validate(product)
        product.version = 0
        #expect(throws: APIError.self) { try ProductRules.validate(product) }
        product.version = 1
        product.createdAt = "yesterday"
        #expect(throws: APIError.self) { try ProductRules.validate(product) }
    }

    @Test("limit defaults to 100 and must be 1...1000")
    func limits() throws {
        #expect(try ListLimit.parse(nil) == 100)
        #expect(try ListLimit.parse("1000") == 1000)
        for bad in ["0", "-1", "1001", "abc", "", "2.5"] {
            #expect(throws: APIError.self, "\(bad)") { try ListLimit.parse(bad) }
        }
    }

    @Test("tenant ids")
    func tenants() {
        #expect(Tenant.isValid("default"))
        #expect(Tenant.isValid("acme-shop_2"))
        #expect(!Tenant.isValid(""))
        #expect(!Tenant.isValid("Acme"))
        #expect(!Tenant.isValid("a\"b"))
        #expect(!Tenant.isValid(String(repeating: "a", count: 65)))
    }
}

@Suite("Coding")
struct CodingTests {
    @Test("timestamps are RFC 3339 UTC with milliseconds and parse back")
    func timestamps() throws {
        let text = Timestamp.format(Date(timeIntervalSince1970: 1_767_794_400.125))
        #expect(text == "2026-01-07T14:00:00.125Z")
        #expect(Timestamp.parse(text) != nil)
        #expect(Timestamp.parse("2026-01-07T14:00:00Z") != nil)
        #expect(Timestamp.parse("07/01/2026") == nil)
    }

    @Test("write operations round-trip through JSON, with snake_case fields")
    func writeOperations() throws {
        let now = Timestamp.now()
        let product = Product(id: "prod_1", name: "x", type: "t", metadata: ["k": "v"], createdAt: now, updatedAt: now, version: 3)
        let operations: [WriteOperation] = [
            .upsert(tenant: "acme", product: product),
            .delete(tenant: "default", id: "prod_2", version: 4, deletedAt: now),
        ]
        let data = try JSONCoding.encoder.encode(WriteBatch(operations: operations))
        #expect(String(decoding: data, as: UTF8.self).contains(#""deleted_at""#))
        #expect(String(decoding: data, as: UTF8.self).contains(#""created_at""#))
        #expect(try JSONCoding.decoder.decode(WriteBatch.self, from: data).operations == operations)
        #expect(throws: DecodingError.self) {
            try JSONCoding.decoder.decode(WriteOperation.self, from: Data(#"{"op":"explode","id":"x"}"#.utf8))
        }
        let withoutTenant = try JSONCoding.decoder.decode(
            WriteOperation.self, from: Data(#"{"op":"delete","id":"x","version":2,"deleted_at":"\#(now)"}"#.utf8))
        #expect(withoutTenant.tenant == defaultTenant)
    }
}
