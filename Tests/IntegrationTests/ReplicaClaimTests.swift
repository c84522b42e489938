import Foundation
import Shared
import TestSupport
import Testing

/// Handles and SKUs stay unique across replicas: the Database Service decides, in the transaction that stores.
@Suite("Handles and SKUs across replicas", .serialized)
struct ReplicaClaimTests {
    @Test("two replicas racing for one SKU and one handle: one 201 and one 409 each time, never two owners", arguments: Backend.available)
    func race(backend: Backend) async throws {
        let replicas = try await Replicas(count: 2, backend: backend)
        for round in 0..<5 {
            // Neither replica has seen the other's write: each one's cache says the SKU is free.
            let sku = #"{"name":"Racer \#(round)","variants":[{"sku":"RACE-\#(round)"}]}"#
            async let first = HTTP.post(replicas.url(0) + "/products", json: sku)
            async let second = HTTP.post(replicas.url(1) + "/products", json: sku)
            let statuses = [try await first.status, try await second.status].sorted()
            #expect(statuses == [201, 409], "round \(round): \(statuses)")

            let handle = #"{"name":"Handle \#(round)","handle":"race-\#(round)"}"#
            async let third = HTTP.post(replicas.url(0) + "/products", json: handle)
            async let fourth = HTTP.post(replicas.url(1) + "/products", json: handle)
            let answers = [try await third, try await fourth]
            #expect(answers.map(\.status).sorted() == [201, 409], "round \(round)")
            #expect(answers.first { $0.status == 409 }?.error?.code == "handle_taken")
        }
        // A plain write (no handle given) whose made handle another replica took meanwhile is stored with a suffix,
        // and every replica comes to show the stored one.
        let plain = try await [HTTP.post(replicas.url(0) + "/products", json: #"{"name":"Twin"}"#),
                               HTTP.post(replicas.url(1) + "/products", json: #"{"name":"Twin"}"#)]
        #expect(plain.map(\.status) == [201, 201])
        try await eventually("both replicas list the twins with distinct handles") {
            for index in 0..<2 {
                let listed = try await HTTP.get(replicas.url(index) + "/products?q=Twin").json([Product].self)
                guard Set(listed.map(\.handle)) == ["twin", "twin-2"] else { return false }
            }
            return true
        }
        let stored = try await replicas.stack.databaseProducts()
        #expect(Set(stored.map(\.handle)).count == stored.count, "no handle is held twice")
        let skus = stored.flatMap { $0.variants.compactMap(\.sku) }
        #expect(Set(skus).count == skus.count && skus.count == 5, "\(skus)")
    }
}
