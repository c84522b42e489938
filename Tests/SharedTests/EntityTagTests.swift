import Foundation
import HTTPTypes
import Testing
import Logging
import Shared
import TestSupport

@Suite("Entity tags")
struct EntityTagTests {
    @Test("a product's tag is strong, quoted and changes with the version; odd id characters are escaped")
    func tags() {
        #expect(EntityTag.product(id: "prod_1", version: 3) == #""prod_1.v3""#)
        #expect(EntityTag.product(id: "a \"b\"%", version: 1) == #""a%20%22b%22%25.v1""#)
    }

    @Test("If-Match compares strongly, If-None-Match weakly; * matches anything")
    func conditions() throws {
        let current = #""prod_1.v3""#
        func condition(_ value: String, _ name: HTTPField.Name = .ifMatch) throws -> EntityTag.Condition {
            try #require(try EntityTag.condition(name, in: [name: value]))
        }
        #expect(try condition(current).matchesStrongly(current))
        #expect(try condition(#""other", "prod_1.v3""#).matchesStrongly(current))
        #expect(try !condition(#"W/"prod_1.v3""#).matchesStrongly(current))
        #expect(try condition(#"W/"prod_1.v3""#).matchesWeakly(current))
        #expect(try !condition(#""prod_1.v2""#).matchesWeakly(current))
        #expect(try condition("*").matchesStrongly(current))
        #expect(try EntityTag.condition(.ifMatch, in: [:]) == nil)
        for bad in ["prod_1.v3", #""unterminated"#, #""a" "b""#, ""] {
            #expect(throws: APIError.self, "\(bad)") { try EntityTag.condition(.ifMatch, in: [.ifMatch: bad]) }
        }
    }
}
