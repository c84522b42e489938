import Foundation
import Testing

@testable import DatabaseService
import Shared
import TestSupport

/// Handles and SKUs are unique among a shop's live products, decided in the transaction that stores them.
@Suite("Handles and SKUs, on SQLite and PostgreSQL")
struct ClaimStoreTests {
    func sized(_ id: String, handle: String = "", skus: [String?], version: Int64 = 1, tenant: String = "t") -> WriteOperation {
        var made = product(id, version: version, name: "Shirt")
        made.handle = handle
        if skus.count > 1 { made.options = [ProductOption(name: "Size", values: skus.indices.map { "S\($0)" })] }
        made.variants = skus.enumerated().map { index, sku in
            Variant(id: "var_\(id)_\(index)", sku: sku, options: skus.count > 1 ? ["Size": "S\(index)"] : [:], position: Int64(index + 1))
        }
        return .upsert(tenant: tenant, product: made)
    }

    @Test("a journaled write is never refused: a taken handle gets the next suffix, a taken SKU is dropped", arguments: StoreBackend.available)
    func settled(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            #expect(try await store.products.apply([sized("a", skus: ["A1", "A2"]), sized("b", skus: [nil])]) == [.inserted, .inserted])
            #expect(try await store.products.product(tenant: "t", id: "a")?.handle == "shirt", "made from the name")
            #expect(try await store.products.product(tenant: "t", id: "b")?.handle == "shirt-2")
            // One batch: a third shirt, a clash on a given handle, and a SKU another product holds.
            #expect(try await store.products.apply([sized("c", skus: []), sized("d", handle: "shirt-2", skus: ["A2", "D1"]), sized("e", skus: [], tenant: "u")])
                == [.inserted, .inserted, .inserted])
            #expect(try await store.products.product(tenant: "t", id: "c")?.handle == "shirt-3")
            let d = try #require(try await store.products.product(tenant: "t", id: "d"))
            #expect(d.handle == "shirt-4" && d.variants.map(\.sku) == [nil, "D1"], "\(d.handle) \(d.variants.map(\.sku))")
            #expect(try await store.products.product(tenant: "u", id: "e")?.handle == "shirt", "each shop has its own handles")
            // The stored product is the one the change log holds (and the feed brings back).
            let logged = try #require(try await store.products.versions(tenant: "t", id: "d", before: nil, limit: 1)?.versions.first)
            #expect(try Product(json: #require(logged.productJSON)) == d)
            // A product keeps its own handle and SKUs across versions.
            #expect(try await store.products.apply([sized("a", skus: ["A1", "A2"], version: 2)]) == [.updated])
            #expect(try await store.products.product(tenant: "t", id: "a")?.handle == "shirt")
            #expect(try await store.products.product(tenant: "t", id: "a")?.variants.map(\.sku) == ["A1", "A2"])
        }
    }

    @Test("a coordinated write is refused with 409 naming the holder; a made handle still gets a suffix", arguments: StoreBackend.available)
    func refused(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            _ = try await store.products.apply([sized("a", handle: "shirt", skus: ["A1", "A2"])])
            let sku = try await store.products.write(CoordinatedWrite(operation: sized("b", handle: "other", skus: ["B1", "A2"])))
            #expect(sku.outcome == .refused && sku.refusal?.code == "sku_taken" && sku.refusal?.param == "variants[1][sku]")
            #expect(sku.refusal?.message.contains("var_a_1") == true && sku.refusal?.message.contains("product a") == true)
            #expect(sku.refusal?.status == .conflict)
            let handle = try await store.products.write(CoordinatedWrite(operation: sized("b", handle: "shirt", skus: ["B1"]), handleGiven: true))
            #expect(handle.outcome == .refused && handle.refusal?.code == "handle_taken" && handle.refusal?.param == "handle")
            #expect(try await store.products.product(tenant: "t", id: "b") == nil, "nothing of a refused write is stored")
            // Not given by the client: suffixed, and the product stored is sent back.
            let made = try await store.products.write(CoordinatedWrite(operation: sized("b", handle: "shirt", skus: ["B1"])))
            #expect(made.outcome == .applied && made.stored?.handle == "shirt-2")
            #expect(try await store.products.product(tenant: "t", id: "b")?.handle == "shirt-2")
        }
    }

    @Test("a delete frees its handle and SKUs; a restore that would take them back from another product is refused", arguments: StoreBackend.available)
    func released(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            _ = try await store.products.apply([sized("a", handle: "shirt", skus: ["A1"])])
            guard case .deleted = try await store.products.delete(tenant: "t", id: "a", version: nil, deletedAt: Timestamp.now()) else {
                Issue.record("not deleted")
                return
            }
            let taken = try await store.products.write(CoordinatedWrite(operation: sized("b", handle: "shirt", skus: ["A1"]), handleGiven: true))
            #expect(taken.outcome == .applied, "\(String(describing: taken.refusal))")
            let restored = try await store.products.restore(tenant: "t", id: "a", version: 1, restoredAt: Timestamp.now())
            guard case .refused(let error) = restored else {
                Issue.record("restored: \(restored)")
                return
            }
            #expect(error.code == "handle_taken" && error.status == .conflict)
            #expect(try await store.products.product(tenant: "t", id: "a") == nil)
        }
    }
}
