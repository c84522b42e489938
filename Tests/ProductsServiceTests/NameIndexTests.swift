import Foundation
import Synchronization
import Testing

@testable import ProductsService
import Shared
import TestSupport

@Suite("Name index")
struct NameIndexTests {
    /// Counts how many products a listing checks.
    final class Checks: Sendable {
        let count = Mutex(0)
    }

    @Test("q at 50,000 products reads only the candidates the name index gives, and finds what a scan finds")
    func selectiveSearch() async {
        // A listing waits this long for the index to be built: long enough for a debug build on a starved machine
        // (the default 20 s was once not), so that it never walks instead.
        let cache = CatalogCache(nameIndexWait: .seconds(600))
        let words = ["Lamp", "Chair", "Table", "Shelf", "Desk", "Sofa", "Rug", "Mirror"]
        for index in 0..<50_000 {
            let id = String(format: "p%06d", index)
            let name = index == 31_337 ? "Striped Zebra Lamp" : "\(words[index % words.count]) \(index)"
            cache.replay(.upsert(tenant: "t", product: product(id, name: name)))
            // Seconds of work in a debug build: let the suite's other tasks have the cooperative threads too.
            if index % 500 == 0 { await Task.yield() }
        }
        var query = ProductQuery(limit: 20)
        query.search = "ZEBRA"
        let checks = Checks()
        let selective = query
        let counted = { @Sendable (cached: CachedProduct) -> Bool in
            checks.count.withLock { $0 += 1 }
            return selective.matches(cached)
        }
        // The first listing with q starts building the index, waits for it, then checks only its candidates.
        let page = await cache.listing.list(tenant: "t", query: query, where: counted)
        #expect(page.products.map(\.id) == ["p031337"] && !page.hasMore)
        #expect(checks.count.withLock { $0 } == 1, "one candidate checked, not 50,000")

        // A needle too short for trigrams walks the catalog in order, and still pages correctly.
        query.search = " 4"
        let common = await cache.listing.list(tenant: "t", query: query)
        #expect(common.products.count == 20 && common.hasMore)
        #expect(common.products.allSatisfy { $0.product.name.contains(" 4") })
    }

    @Test("the index gives the rarest trigram's names, and declines when they are more than the listing's limit")
    func candidates() {
        var index = NameIndex.complete
        for number in 0..<10 { index.put(id: "p\(number)", name: "Lamp \(number)", oldName: nil) }
        index.put(id: "q", name: "Lamp shade", oldName: nil)
        #expect(index.candidates(forFolded: "lamp", limit: 5) == nil, "11 names hold every trigram of lamp")
        #expect(index.candidates(forFolded: "lamp", limit: 11)?.count == 11)
        #expect(index.candidates(forFolded: "shade", limit: 5)?.compactMap(index.id(inSlot:)) == ["q"])
        #expect(index.candidates(forFolded: "zebra", limit: 5) == [])
        #expect(index.candidates(forFolded: "la", limit: 5) == nil, "under three characters")
        #expect(index.candidates(forFolded: "mp 7", limit: 5)?.compactMap(index.id(inSlot:)) == ["p7"], "the rarest lists intersected")
        #expect(index.candidateLists(forFolded: "mp 7", limit: 5)?.count == 1, "\"mp \" is in 11 names, over 8 times the 1 of \"p 7\"")
        #expect(index.candidateLists(forFolded: "lamp ", limit: 20)?.count == 3, "three lists of 11 names each")
        #expect(index.candidates(forFolded: "lamp ", limit: 20)?.count == 11)
        index.put(id: "q", name: "Desk", oldName: "Lamp shade")
        #expect(index.candidates(forFolded: "shade", limit: 5) == [])
        index.remove(id: "p3", name: "Lamp 3")
        #expect(index.candidates(forFolded: "mp 3", limit: 5) == [])
        #expect(index.count == 10)
    }

    @Test("the index answers like a full scan: any case, accents, cursors both ways, after renames and deletes")
    func agreesWithScan() async {
        let cache = CatalogCache()
        var model: [String: String] = [:]
        let names = ["Crème Brûlée", "CRÈME fraîche", "École chair", "Blue lamp", "blue LAMP shade", "Lampe à huile", "Ωmega", "ab", "Straße"]
        var generator = SystemRandomNumberGenerator()
        var version: Int64 = 1
        for index in 0..<2_000 {
            let id = String(format: "p%05d", index)
            let name = names[index % names.count] + " \(index % 7)"
            cache.replay(.upsert(tenant: "t", product: product(id, name: name)))
            model[id] = name
        }
        // Renames and deletes, applied as the feed would, while the index is built: some before, some after it
        // reaches the product.
        for step in 0..<600 {
            if step % 100 == 0 { _ = cache.listing.indexNextNames(tenant: "t", limit: 150) }
            let id = String(format: "p%05d", Int.random(in: 0..<2_000, using: &generator))
            version += 1
            if Bool.random(using: &generator) {
                let name = names.randomElement(using: &generator)! + " \(Int.random(in: 0..<7, using: &generator))"
                cache.applyFeed(.upsert(tenant: "t", product: product(id, version: version, name: name)))
                model[id] = name
            } else {
                cache.applyFeed(.delete(tenant: "t", id: id, version: version, deletedAt: Timestamp.now()))
                model[id] = nil
            }
        }
        await cache.listing.buildNameIndex(tenant: "t")
        let exact = cache.listing.nameIndexHoldsExactly(tenant: "t", model)
        #expect(exact, "every name indexed once, under its current name")
        let ids = model.keys.sorted()
        for needle in ["crème", "CREME", "brûlée", "lamp", "LAMP SHADE", "ωmeg", "straße", "e 3", "ab", "b", "zzz", "ole c"] {
            var query = ProductQuery(limit: 25)
            query.search = needle
            let folded = ProductQuery.fold(needle)
            let expected = ids.filter { ProductQuery.fold(model[$0]!).contains(folded) }
            // Page forwards through everything, then backwards from the end.
            var seen: [String] = []
            while true {
                let page = await cache.listing.list(tenant: "t", query: query)
                seen += page.products.map(\.product.id)
                guard page.hasMore, let last = seen.last else { break }
                query.cursor = .startingAfter(last)
            }
            #expect(seen == expected, "forwards, q=\(needle)")
            if expected.count > 3 {
                query.cursor = .endingBefore(expected[expected.count - 1])
                query.limit = 3
                let page = await cache.listing.list(tenant: "t", query: query)
                #expect(page.products.map(\.product.id) == Array(expected[(expected.count - 4)..<(expected.count - 1)]), "backwards, q=\(needle)")
                #expect(page.hasMore == (expected.count > 4))
            }
        }
    }
}
