import Foundation
import Synchronization
import Testing

@testable import ProductsService
import Shared
import TestSupport

@Suite("Created index")
struct CreatedIndexTests {
    /// Counts how many products a listing checks.
    final class Checks: Sendable {
        let count = Mutex(0)
    }

    /// A product created `seconds` after 2023-11-14T22:13:20Z.
    func product(_ id: String, at seconds: Int64, version: Int64 = 1) -> Product {
        TestSupport.product(id, version: version, createdAt: Timestamp.format(epochMilliseconds: (1_700_000_000 + seconds) * 1000))
    }

    /// The query's matches by brute force, in id order (creation times are whole seconds after 1,700,000,000).
    func expected(_ products: [String: Product], _ query: ProductQuery) -> [String] {
        products.values.filter { query.matches($0, createdAt: Self.milliseconds[$0.createdAt]) }.map(\.id).sorted()
    }

    /// Epoch milliseconds by timestamp, for the creation times the tests use: parsing each again is slow in a debug build.
    static let milliseconds: [String: Int64] = Dictionary(uniqueKeysWithValues: (0..<20_000).map { second in
        let milliseconds = (1_700_000_000 + Int64(second)) * 1000
        return (Timestamp.format(epochMilliseconds: milliseconds), milliseconds)
    })

    /// Every page of a listing, forwards.
    func all(_ cache: CatalogCache, _ query: ProductQuery) async -> [String] {
        var ids: [String] = []
        var query = query
        while true {
            let page = await cache.listing.list(tenant: "t", query: query)
            ids += page.products.map(\.product.id)
            guard page.hasMore, let last = ids.last else { return ids }
            query.cursor = .startingAfter(last)
        }
    }

    @Test("created[...] at 20,000 products reads only the products in range, and finds what a scan finds through every kind of change")
    func createdRanges() async {
        let cache = CatalogCache()
        var products: [String: Product] = [:]
        func put(_ product: Product) {
            cache.replay(.upsert(tenant: "t", product: product))
            products[product.id] = product
        }
        // Ids in one order, creation times in another (imports keep their dates), some sharing a second.
        for index in 0..<20_000 {
            put(product(String(format: "p%06d", (index * 7_919) % 20_000), at: Int64(index / 2)))
            if index % 1_000 == 0 { await Task.yield() }
        }
        var query = ProductQuery(limit: 7)
        query.createdGTE = (1_700_000_000 + 5_000) * 1000
        query.createdLT = (1_700_000_000 + 5_010) * 1000
        let checks = Checks()
        let narrow = query
        let page = await cache.listing.list(tenant: "t", query: query, where: { cached in
            checks.count.withLock { $0 += 1 }
            return narrow.matches(cached.product, createdAt: cached.createdAt)
        })
        #expect(page.products.map(\.product.id) == Array(expected(products, query).prefix(7)) && page.hasMore)
        #expect(checks.count.withLock { $0 } == 20, "the 20 products in range checked, not 20,000")
        #expect(await all(cache, query) == expected(products, query))

        // Kept up to date: products added in creation order, one added before the others, one whose creation
        // time changed, renames, deletes.
        for index in 0..<30 { put(product(String(format: "n%06d", index), at: 5_000 + Int64(index % 10))) }
        put(product("early", at: 5_003))
        put(product("p000003", at: 5_004, version: 2))
        var renamed = products["p007919"]!
        renamed.name = "renamed"
        renamed.version = 2
        put(renamed)
        for id in expected(products, query).prefix(5) {
            cache.applyFeed(.delete(tenant: "t", id: id, version: 9, deletedAt: Timestamp.now()))
            products[id] = nil
        }
        for bounds in [(5_000, 5_010), (0, 3), (9_990, 10_000), (4_000, 4_001), (20_000, 30_000)] {
            var ranged = ProductQuery(limit: 6)
            ranged.createdGTE = (1_700_000_000 + Int64(bounds.0)) * 1000
            ranged.createdLT = (1_700_000_000 + Int64(bounds.1)) * 1000
            #expect(await all(cache, ranged) == expected(products, ranged), "\(bounds)")
            var backwards = ranged
            let everything = expected(products, ranged)
            if everything.count > 2 {
                backwards.cursor = .endingBefore(everything[everything.count - 1])
                backwards.limit = 2
                let before = await cache.listing.list(tenant: "t", query: backwards)
                #expect(before.products.map(\.product.id) == Array(everything.dropLast().suffix(2)), "\(bounds), backwards")
            }
        }
        // A wide range walks the catalog in order instead, with the same answers.
        var wide = ProductQuery(limit: 50)
        wide.createdGT = (1_700_000_000 + 100) * 1000
        #expect(await cache.listing.list(tenant: "t", query: wide).products.map(\.product.id) == Array(expected(products, wide).prefix(50)))
    }

    @Test("the index appends products created in order, and drops itself for one created out of order or changed")
    func maintenance() {
        var index = CreatedIndex()
        index.beginBuild()
        index.put(id: "b", milliseconds: 20, previous: nil)
        index.finishBuild([(10, "a")])
        #expect(index.entries?.map(\.id) == ["a", "b"], "what was put during the build is merged in")
        index.put(id: "c", milliseconds: 30, previous: nil)
        #expect(index.entries?.map(\.id) == ["a", "b", "c"])
        index.put(id: "c", milliseconds: 30, previous: .some(30))
        #expect(index.entries?.count == 3, "an update that keeps the creation time changes nothing")
        #expect(index.range(from: 15, through: 30) == 1..<3)
        index.put(id: "d", milliseconds: 5, previous: nil)
        #expect(index.entries == nil, "created before the last: built again when next needed")
        index.beginBuild()
        index.finishBuild([(5, "d"), (10, "a"), (20, "b"), (30, "c")])
        index.put(id: "a", milliseconds: 40, previous: .some(10))
        #expect(index.entries == nil, "a changed creation time drops it too")
    }
}
