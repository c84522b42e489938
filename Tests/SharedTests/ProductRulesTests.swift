import Foundation
import NIOCore
import Testing
@testable import Shared

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
        func validate(_ metadata: [String: String]) throws {
            let now = Timestamp.now()
            try Product(id: "prod_1", name: "x", metadata: metadata, createdAt: now, updatedAt: now, version: 1).validate()
        }
        try validate(["color": "red"])
        #expect(throws: APIError.self) { try validate(["": "x"]) }
        #expect(throws: APIError.self) { try validate(["a[0]": "x"]) }
        #expect(throws: APIError.self) { try validate([String(repeating: "k", count: 41): "x"]) }
        #expect(throws: APIError.self) { try validate(["k": String(repeating: "v", count: 501)]) }
        let many = Dictionary(uniqueKeysWithValues: (0..<51).map { ("k\($0)", "v") })
        #expect(throws: APIError.self) { try validate(many) }
    }

    @Test("a stored product needs a version, timestamps and valid fields")
    func storedProduct() throws {
        let now = Timestamp.now()
        var product = Product(id: "prod_1", name: "x", type: "physical", metadata: [:], createdAt: now, updatedAt: now, version: 1)
        try product.validate()
        product.version = 0
        #expect(throws: APIError.self) { try product.validate() }
        product.version = 1
        product.createdAt = "yesterday"
        #expect(throws: APIError.self) { try product.validate() }
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
