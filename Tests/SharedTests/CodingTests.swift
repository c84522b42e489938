import Foundation
import NIOCore
import Testing
@testable import Shared

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
