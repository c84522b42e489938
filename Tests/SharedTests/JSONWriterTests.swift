import Foundation
import NIOCore
import Testing
@testable import Shared

@Suite("JSON writer")
struct JSONWriterTests {
    func product(name: String, metadata: [String: String]) -> Product {
        Product(
            id: "prod_01", name: name, type: "t\"ype", metadata: metadata, createdAt: "2026-01-07T14:00:00.000Z",
            updatedAt: "2026-01-07T14:00:01.000Z", version: 42)
    }

    @Test("integers are written in decimal, the extremes included; objects of strings with their keys sorted")
    func integersAndObjects() throws {
        for value: Int64 in [0, 7, -7, 10, 1999, 10_000_000_000_000, .max, .min, .min + 1] {
            var buffer = ByteBuffer()
            JSONWriter.writeInteger(value, into: &buffer)
            #expect(String(buffer: buffer) == String(value))
        }
        for object: [String: String] in [[:], ["a": "1"], ["b": "2", "a": "1"], ["é": "x", "e": "\"", "z": "", "A": "\n"]] {
            var buffer = ByteBuffer()
            JSONWriter.writeObject(object, into: &buffer)
            let text = String(buffer: buffer)
            #expect(try JSONDecoder().decode([String: String].self, from: Data(text.utf8)) == object)
            let keys = object.keys.sorted()
            let positions = keys.map { key in text.range(of: "\"\(key)\":")!.lowerBound }
            #expect(positions == positions.sorted(), "\(text)")
        }
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
