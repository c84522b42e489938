import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@testable import ProductsService
import Shared

@Suite("Catalog export")
struct ExportTests {
    let routes = RoutesTests()

    func lines(_ response: TestResponse) -> [Substring] { String(buffer: response.body).split(separator: "\n") }

    @Test("the export streams every matching product as a JSON line, page after page; starting_after resumes it; limit is refused")
    func export() async throws {
        let database = FakeDatabaseService()
        let now = Timestamp.now()
        for index in 0..<2_345 {
            database.seed(Product(
                id: "prod_" + String(index + 100_000), name: "Product \(index)", type: index % 3 == 0 ? "odd" : "even",
                metadata: ["n": "\(index)"], createdAt: now, updatedAt: now, version: 1))
        }
        try await routes.withApp(database: database) { client async throws in
            let fresh = try await routes.create(client, #"{"name":"Fresh","type":"odd"}"#)
            #expect(fresh.status == .created)

            let response = try await client.execute(uri: "/exports/products.jsonl", method: .get)
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "application/x-ndjson")
            #expect(response.headers[.contentDisposition] == #"attachment; filename="products.jsonl""#)
            let all = lines(response)
            let ids = try all.map { try JSONDecoder().decode(Product.self, from: Data($0.utf8)).id }
            #expect(all.count == 2_346, "three pages of the Database Service's products and the journaled one")
            #expect(ids == ids.sorted() && Set(ids).count == ids.count, "in id order, each once")
            let one = try await client.execute(uri: "/products/prod_101234", method: .get)
            #expect(all.contains(Substring(String(buffer: one.body))), "each line is the product as GET serves it")
            #expect(all.contains(Substring(String(buffer: fresh.body))))

            let odd = lines(try await client.execute(uri: "/exports/products.jsonl?type=odd", method: .get))
            #expect(odd.count == 782 + 1)
            #expect(try odd.allSatisfy { try JSONDecoder().decode(Product.self, from: Data($0.utf8)).type == "odd" })

            let resumed = lines(try await client.execute(uri: "/exports/products.jsonl?starting_after=prod_102000", method: .get))
            #expect(resumed == Array(all[(ids.firstIndex(of: "prod_102000")! + 1)...]))

            for refused in ["limit=10", "ending_before=prod_102000", "sort=name"] {
                let response = try await client.execute(uri: "/exports/products.jsonl?" + refused, method: .get)
                #expect(response.status == .badRequest, "\(refused)")
                let param = String(refused.prefix { $0 != "=" })
                #expect(String(buffer: response.body).contains(#""param":"\#(param)""#), "\(refused)")
            }
        }
    }
}
