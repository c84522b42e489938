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
            #expect(throws: JSONSyntaxError.self, "\(json)") { try JSONValue.parse(ByteBuffer(string: json)) }
        }
        let valid = [
            #"{"a":1}"#, " [ ] ", "{}", #"{"a":[1,-2.5e+3,true,false,null,{"b":"\u00e9\n"}]}"#, "0", #""s""#, "-0.0E-1",
            String(repeating: "[", count: 200) + String(repeating: "]", count: 200),
        ]
        for json in valid {
            #expect(throws: Never.self, "\(json)") { try JSONValue.parse(ByteBuffer(string: json)) }
        }
    }

    @Test("the parser decodes strings, escapes, surrogate pairs, numbers and nesting like Foundation")
    func parsing() throws {
        let text = #"{"s":"a\"b\\c\/d\n\t\u00e9\ud83d\ude00 é","n":-12.5e1,"z":0,"b":[true,false,null],"o":{"k":{}},"dup":1,"dup":2}"#
        let value = try JSONValue.parse(ByteBuffer(string: text))
        #expect(value == .object([
            "s": .string("a\"b\\c/d\n\té😀 é"), "n": .number(-125), "z": .number(0),
            "b": .array([.bool(true), .bool(false), .null]), "o": .object(["k": .object([:])]), "dup": .number(2),
        ]))
        for bad in [#"["\ud83d"]"#, #"["\ude00"]"#, #"["\ud83d\u0041"]"#] {
            #expect(throws: JSONSyntaxError.self, "\(bad)") { try JSONValue.parse(ByteBuffer(string: bad)) }
        }
        #expect(throws: JSONSyntaxError.self) { try JSONValue.parse(ByteBuffer(bytes: [0x22, 0xC3, 0x28, 0x22])) }
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
        #expect(try ProductRules.validName("\u{3000}Two  words\t") == "Two  words")
        #expect(try ProductRules.validName("Lamp") == "Lamp")
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

@Suite("JSON writer")
struct JSONWriterTests {
    func product(name: String, metadata: [String: String]) -> Product {
        Product(
            id: "prod_01", name: name, type: "t\"ype", metadata: metadata, createdAt: "2026-01-07T14:00:00.000Z",
            updatedAt: "2026-01-07T14:00:01.000Z", version: 42)
    }

    @Test("products and operations decode with Foundation to the same values, awkward strings included")
    func roundTrip() throws {
        let awkward = "quote \" backslash \\ slash / newline \n tab \t bell \u{07} nul \u{00} é 😀 \u{2028}"
        let samples = [
            product(name: "Lamp", metadata: [:]),
            product(name: awkward, metadata: [awkward: awkward, "b": "2", "a": "1"]),
        ]
        for sample in samples {
            #expect(try JSONDecoder().decode(Product.self, from: sample.json) == sample)
            #expect(try JSONValue.parse(sample.json) != .null, "our parser reads what we write")
        }
        let operations: [WriteOperation] = [
            .upsert(tenant: "acme", product: samples[1]),
            .delete(tenant: "default", id: "prod_\u{01}", version: 3, deletedAt: "2026-01-07T14:00:00.000Z"),
        ]
        let page = ProductPage(products: samples, hasMore: true)
        #expect(try JSONDecoder().decode(ProductPage.self, from: page.json) == page)
        #expect(try JSONDecoder().decode(ProductPage.self, from: ProductPage(products: [], hasMore: false).json).products.isEmpty)
        let batch = WriteBatch(operations: operations)
        #expect(try JSONDecoder().decode(WriteBatch.self, from: batch.json).operations == operations)
        #expect(String(buffer: samples[1].json).contains(#""metadata":{"a":"1","b":"2","#), "metadata keys sorted")
        #expect(String(buffer: samples[0].json).hasPrefix(#"{"id":"prod_01","#))
    }
}

@Suite("Timestamps")
struct TimestampTests {
    @Test("the fast formatter agrees with Foundation's, before 1970 too")
    func formatting() {
        let foundation = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
        // Exactly representable fractions: other binary fractions round differently between implementations.
        for seconds in [0, 1_767_794_400.5, 951_782_400.875, -86_400.25, 4_102_444_799.125, 1_709_164_800] as [Double] {
            let date = Date(timeIntervalSince1970: seconds)
            #expect(Timestamp.format(date) == foundation.format(date), "\(seconds)")
        }
    }

    @Test("RFC 3339 shapes are recognised; others are not")
    func validity() {
        for valid in ["2026-01-07T14:00:00Z", "2026-01-07T14:00:00.123Z", "2026-01-07T14:00:00.1+02:00", "2026-01-07T14:00:00-05:30"] {
            #expect(Timestamp.isValid(valid), "\(valid)")
            #expect(Timestamp.parse(valid) != nil, "\(valid)")
        }
        for invalid in ["", "2026-01-07", "2026-13-07T14:00:00Z", "2026-01-07T24:00:00Z", "2026-01-07T14:00:00", "2026-01-07T14:00:00.Z",
                        "2026-01-07T14:00:00+0200", "2026-01-07 14:00:00Z", "2026-01-07t14:00:00z", "yesterday", "2026-01-07T14:00:00Zjunk"] {
            #expect(!Timestamp.isValid(invalid), "\(invalid)")
        }
    }
}
