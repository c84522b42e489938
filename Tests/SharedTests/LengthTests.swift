import Foundation
import HTTPTypes
import Testing
import Logging
import Shared

@Suite("Lengths as the OpenAPI documents count them")
struct LengthTests {
    @Test("limits count Unicode scalars, as JSON Schema does, not grapheme clusters")
    func scalars() throws {
        let combining = String(repeating: "e\u{301}", count: 40)  // 40 characters, 80 scalars
        #expect(combining.count == 40)
        #expect(throws: APIError.self) { try ProductRules.validType(combining) }
        #expect(throws: APIError.self) { try ProductRules.validateMetadataEntry(combining, "v") }
        #expect(try ProductRules.validType(String(repeating: "e\u{301}", count: 32)).unicodeScalars.count == 64)
    }
}
