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

    @Test("a product page and stored metadata read with the strict parser, as Foundation's decoder reads them")
    func strictProductPage() throws {
        let now = Timestamp.now()
        let products = [
            Product(id: "prod_1", name: "Crème \"brûlée\" \u{1F370}", type: "food", metadata: ["k": "v", "é": "\n"], createdAt: now, updatedAt: now, version: 3),
            Product(id: "prod_2", name: "x", type: "t", metadata: [:], createdAt: now, updatedAt: now, version: 1),
        ]
        let page = ProductPage(products: products, hasMore: true)
        let encoded = try JSONCoding.encoder.encode(page)
        #expect(try ProductPage(json: ByteBuffer(bytes: encoded)) == page)
        #expect(try ProductPage(json: ByteBuffer(string: #"{"products":[],"has_more":false}"#)) == ProductPage(products: [], hasMore: false))
        for broken in [#"{"products":[{"id":"p"}],"has_more":false}"#, #"{"products":[]}"#, #"{"products":[],"has_more":false} x"#] {
            #expect(throws: JSONSyntaxError.self, "\(broken)") { try ProductPage(json: ByteBuffer(string: broken)) }
        }
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

    @Test("a change page is read without decoding its products, which decode on demand, tricky strings included")
    func changePages() throws {
        let now = Timestamp.now()
        let tricky = Product(
            id: "prod_1", name: #"braces } ] { and "quotes" \ slashes"#, type: "t", metadata: ["k": "v}\"", "emoji": "🧪"],
            createdAt: now, updatedAt: now, version: 3)
        let page = ChangePage(
            changes: [Change(.upsert(tenant: "acme", product: tricky)), Change(.delete(tenant: "acme", id: "prod_2", version: 9, deletedAt: now))],
            next: ChangeCursor(transaction: 7, position: 42), recordedAtMs: 1_767_794_400_125)
        let json = ByteBuffer(data: try JSONCoding.encoder.encode(page))
        let read = try ChangePage(json: json)
        #expect(read.next == page.next && read.recordedAtMs == page.recordedAtMs && read.changes.count == 2)
        #expect(read.changes[0].product == nil && read.changes[0].encodedProduct != nil, "left encoded")
        #expect(try read.changes[0].operation() == .upsert(tenant: "acme", product: tricky))
        #expect(try read.changes[1].operation() == .delete(tenant: "acme", id: "prod_2", version: 9, deletedAt: now))
        #expect(try ChangePage(json: ByteBuffer(string: #" {"changes":[],"next":"0.5","extra":{"a":[1,{"b":"]"}]}} "#)).next.position == 5)

        for malformed in [
            #"{"changes":[{"tenant":"t","id":"x","version":1,"op":"upsert","changed_at":"z","product":{"a":1}]"#,  // cut short
            #"{"changes":[],"next":"not a cursor"}"#, #"{"changes":[]}"#, #"{"changes":[],"next":"0.1"} x"#,
            #"{"changes":[{"tenant":"t","id":"x","version":1.5,"op":"upsert","changed_at":"z"}],"next":"0.1"}"#,
            #"{"changes":[{"tenant":"t","id":"x","op":"delete","changed_at":"z"}],"next":"0.1"}"#,
            #"{"changes":[{"tenant":"t","id":"x","version":1,"op":"upsert","changed_at":"z","product":"#,
            String(repeating: "[", count: 300),
        ] {
            #expect(throws: JSONSyntaxError.self, "\(malformed)") { try ChangePage(json: ByteBuffer(string: malformed)) }
        }
        let undecodable = try ChangePage(
            json: ByteBuffer(string: #"{"changes":[{"tenant":"t","id":"x","version":2,"op":"upsert","changed_at":"z","product":{"id":7}}],"next":"0.1"}"#))
        #expect(throws: DecodingError.self) { try undecodable.changes[0].operation() }
    }

    @Test("a batch body is read in one strict pass into the operations Foundation would decode, with errors that name the param")
    func batchBodies() throws {
        let now = Timestamp.now()
        let product = Product(
            id: "prod_1", name: #"quote " and \u00e9"#, type: "t", metadata: ["k": "v", "emoji": "🧪"], createdAt: now, updatedAt: now,
            version: 9_007_199_254_740_991)
        let operations: [WriteOperation] = [
            .upsert(tenant: "acme", product: product), .delete(tenant: "default", id: "prod_2", version: 4, deletedAt: now),
        ]
        let encoded = ByteBuffer(data: try JSONCoding.encoder.encode(WriteBatch(operations: operations)))
        #expect(try WriteBatch(json: encoded).operations == operations)
        let withoutTenant = #"{"operations":[{"op":"delete","id":"x","version":2,"deleted_at":"\#(now)","extra":[1]}]}"#
        #expect(try WriteBatch(json: ByteBuffer(string: withoutTenant)).operations[0].tenant == defaultTenant)

        let upsert = #"{"op":"upsert","product":{"id":"p","name":"n","type":"t","description":null,"images":[],"active":true,"metadata":{},"created_at":"\#(now)","updated_at":"\#(now)","version":1}}"#
        let cases: [(body: String, code: String, param: String?)] = [
            ("", "invalid_body", nil),
            ("[1]", "invalid_body", nil),
            (#"{"operations":[\#(upsert),]}"#, "invalid_json", nil),
            (#"{"operations":[\#(upsert)]} x"#, "invalid_json", nil),
            (#"{"operations":[\#(upsert)],"more":1}"#, "parameter_unknown", "more"),
            (#"{}"#, "parameter_missing", "operations"),
            (#"{"operations":{}}"#, "parameter_invalid", "operations"),
            (#"{"operations":[\#(upsert.replacingOccurrences(of: #""version":1"#, with: #""version":"1""#))]}"#,
             "parameter_invalid", "operations[0][product][version]"),
            (#"{"operations":[\#(upsert.replacingOccurrences(of: #""version":1"#, with: #""version":1.5"#))]}"#,
             "parameter_invalid", "operations[0][product][version]"),
            (#"{"operations":[\#(upsert), \#(upsert.replacingOccurrences(of: #""name":"n","#, with: ""))]}"#,
             "parameter_missing", "operations[1][product][name]"),
            (#"{"operations":[\#(upsert.replacingOccurrences(of: #""metadata":{}"#, with: #""metadata":{"a":null}"#))]}"#,
             "parameter_invalid", "operations[0][product][metadata][a]"),
            (#"{"operations":[{"op":"explode"}]}"#, "parameter_invalid", "operations[0][op]"),
            (#"{"operations":[7]}"#, "parameter_invalid", "operations[0]"),
        ]
        for (body, code, param) in cases {
            #expect(throws: APIError.self, "\(body)") { try WriteBatch(json: ByteBuffer(string: body)) }
            do {
                _ = try WriteBatch(json: ByteBuffer(string: body))
            } catch {
                #expect(error.code == code && error.param == param, "\(body): \(error.code) \(error.param ?? "-") \(error.message)")
            }
        }
    }

    @Test("a batch's results are written directly and read with the strict parser, as Foundation would encode and decode them")
    func batchResults() throws {
        let result = WriteBatchResult(results: [
            OperationResult(id: "a", outcome: .applied), OperationResult(id: "b", outcome: .stale, storedVersion: 7, deleted: true),
            OperationResult(id: "c", outcome: .rejected, error: #"parameter_invalid: "name" \ bad"#),
        ])
        let json = ByteBuffer(data: try JSONCoding.encoder.encode(result))
        #expect(try WriteBatchResult(json: json) == result)
        // What the Database Service writes decodes with Foundation and the strict parser alike.
        #expect(try JSONCoding.decoder.decode(WriteBatchResult.self, from: Data(buffer: result.json)) == result)
        #expect(try WriteBatchResult(json: result.json) == result)
        for malformed in [#"{"results":[{"id":"a"}]}"#, #"{"results":[{"id":"a","outcome":"maybe"}]}"#, #"{}"#, #"{"results":[]} x"#] {
            #expect(throws: JSONSyntaxError.self, "\(malformed)") { try WriteBatchResult(json: ByteBuffer(string: malformed)) }
        }
    }
}
