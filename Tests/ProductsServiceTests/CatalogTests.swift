import Foundation
import Testing

@testable import ProductsService
import Shared

@Suite("Product ids")
struct ProductIDTests {
    @Test("prod_ + 26 Crockford base32 characters, strictly increasing within a process")
    func format() {
        let generator = ProductIDGenerator()
        let now = Date()
        let ids = (0..<1000).map { _ in generator.next(now: now) }
        for id in ids { #expect(id.wholeMatch(of: /prod_[0-9A-HJKMNP-TV-Z]{26}/) != nil) }
        #expect(ids == ids.sorted())
        #expect(Set(ids).count == ids.count)
        let later = generator.next(now: now.addingTimeInterval(1))
        #expect(later > ids.last!)
        let earlierClock = generator.next(now: now.addingTimeInterval(-60))
        #expect(earlierClock > later, "a clock stepping back does not break the order")
    }
}

@Suite("Catalog cache")
struct CatalogCacheTests {
    func product(_ id: String, version: Int64 = 1, type: String = "physical") -> Product {
        let now = Timestamp.now()
        return Product(id: id, name: id, type: type, metadata: [:], createdAt: now, updatedAt: now, version: version)
    }

    @Test("listing is in id (creation) order whatever the insertion order")
    func order() {
        let cache = CatalogCache()
        for id in ["c", "a", "d", "b"] { cache.put(tenant: "t", CachedProduct(product(id))) {} }
        #expect(cache.list(tenant: "t", query: ProductQuery(limit: 10)).products.map(\.product.id) == ["a", "b", "c", "d"])
        let page = cache.list(tenant: "t", query: ProductQuery(limit: 2))
        #expect(page.products.map(\.product.id) == ["a", "b"] && page.hasMore)
        #expect(cache.list(tenant: "other", query: ProductQuery(limit: 10)).products.isEmpty)
    }

    @Test("reconcile adds, replaces older versions, drops what the database lost, keeps what is pending")
    func reconcile() {
        let cache = CatalogCache()
        cache.put(tenant: "t", CachedProduct(product("kept-newer", version: 3))) {}
        cache.put(tenant: "t", CachedProduct(product("replaced", version: 1))) {}
        cache.put(tenant: "t", CachedProduct(product("gone"))) {}
        cache.put(tenant: "t", CachedProduct(product("pending-create"))) {}
        _ = cache.remove(tenant: "t", id: "kept-newer") { _ in ((), 4) }  // a pending delete at version 4
        cache.put(tenant: "t", CachedProduct(product("kept-newer2", version: 3))) {}

        let database = [product("kept-newer", version: 3), product("replaced", version: 2), product("new"), product("kept-newer2", version: 2)]
        let result = cache.reconcile(tenant: "t", databaseProducts: database, pending: { [.upsert(tenant: "t", product: product("pending-create"))] })
        #expect(result.updated == 2)
        #expect(result.dropped == 1)
        #expect(cache.get(tenant: "t", id: "kept-newer") == nil, "a pending delete is not undone")
        #expect(cache.get(tenant: "t", id: "replaced")?.product.version == 2)
        #expect(cache.get(tenant: "t", id: "new") != nil)
        #expect(cache.get(tenant: "t", id: "gone") == nil)
        #expect(cache.get(tenant: "t", id: "pending-create") != nil)
        #expect(cache.get(tenant: "t", id: "kept-newer2")?.product.version == 3)
    }

    @Test("a read-through that raced with a delete is not cached")
    func raceWithDelete() {
        let cache = CatalogCache()
        let before = cache.deleteCount(tenant: "t")
        _ = cache.recordUncachedDelete(tenant: "t", id: "x", version: 2) {}
        cache.putIfUnchanged(tenant: "t", CachedProduct(product("x")), deleteCount: before)
        #expect(cache.get(tenant: "t", id: "x") == nil)
        #expect(cache.isPendingDelete(tenant: "t", id: "x"))
        cache.confirmDelete(tenant: "t", id: "x", version: 2)
        #expect(!cache.isPendingDelete(tenant: "t", id: "x"))
    }

    @Test("replay applies journal records in version order only")
    func replay() {
        let cache = CatalogCache()
        cache.replay(upsert("p", version: 2, name: "Two"))
        cache.replay(upsert("p", version: 1, name: "One"))
        #expect(cache.get(tenant: defaultTenant, id: "p")?.product.name == "Two")
        cache.replay(.delete(tenant: defaultTenant, id: "p", version: 3, deletedAt: Timestamp.now()))
        cache.replay(upsert("p", version: 2, name: "Two"))
        #expect(cache.get(tenant: defaultTenant, id: "p") == nil)
    }

    @Test("coalescing keeps the newest operation per product")
    func coalesce() {
        let operations = [upsert("a", version: 1), upsert("b", version: 1), upsert("a", version: 2),
                          .delete(tenant: defaultTenant, id: "a", version: 3, deletedAt: Timestamp.now())]
        let coalesced = PersistenceWorker.coalesce(operations)
        #expect(coalesced.map(\.productID) == ["a", "b"])
        #expect(coalesced[0].version == 3)
    }
}
