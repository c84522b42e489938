import Testing

@testable import ProductsService
import Shared
import TestSupport

/// The shop state machine driven through the interleavings that used to be guarded by comments: each input is
/// applied in the order a race would deliver it, with the time given, so every run is the same.
@Suite("Shop state machine")
struct ShopStateTests {
    let start = ContinuousClock.now

    func at(_ seconds: Int) -> ContinuousClock.Instant { start + .seconds(seconds) }

    func put(_ id: String, _ version: Int64, name: String? = nil) -> ProductChange {
        .put(CachedProduct(product(id, version: version, name: name)))
    }

    func stored(_ id: String, _ version: Int64) -> FetchedState { .stored(CachedProduct(product(id, version: version))) }

    @Test("the same version stored otherwise (a clash the Database Service settled) replaces this replica's own; the same bytes change nothing")
    func settledClash() {
        var shop = ShopState()
        var own = product("p", version: 5, name: "Twin")
        own.handle = "twin"
        shop.apply(.durable(ticket: 1, id: "p", .put(CachedProduct(own))), at: at(0))
        #expect(shop.handles["twin"] == "p")
        #expect(shop.apply(.feed(id: "p", .put(CachedProduct(own)), deletesOnly: false), at: at(1)) == (0, 0) as (Int, Int))
        var settled = own
        settled.handle = "twin-2"
        #expect(shop.apply(.feed(id: "p", .put(CachedProduct(settled)), deletesOnly: false), at: at(2)) == (1, 0) as (Int, Int))
        #expect(shop.products["p"]?.handle == "twin-2" && shop.handles["twin"] == nil && shop.handles["twin-2"] == "p")
        // An older version stored otherwise still changes nothing.
        settled.version = 4
        settled.handle = "older"
        #expect(shop.apply(.feed(id: "p", .put(CachedProduct(settled)), deletesOnly: false), at: at(3)) == (0, 0) as (Int, Int))
    }

    @Test("a handle made from a name: the name's own, then -2, -3, … from the suffix the name last got, a freed one not reused")
    func handleSuffixes() {
        var shop = ShopState()
        func take(_ id: String) {
            var made = product(id, version: 1, name: "Shirt")
            made.handle = shop.freeHandle(base: "shirt", id: id)
            shop.apply(.feed(id: id, .put(CachedProduct(made)), deletesOnly: false), at: at(0))
        }
        for index in 1...500 { take("p\(index)") }
        #expect(shop.handles["shirt"] == "p1" && shop.handles["shirt-2"] == "p2" && shop.handles["shirt-500"] == "p500")
        #expect(shop.handleSuffixes["shirt"] == 500, "the next one starts at the last suffix, not at -2")
        #expect(shop.freeHandle(base: "shirt", id: "p7") == "shirt-7", "a product's own handle is free for it")
        shop.apply(.feed(id: "p3", .delete(version: 2), deletesOnly: false), at: at(1))
        #expect(shop.freeHandle(base: "shirt", id: "p501") == "shirt-501")
        #expect(shop.freeHandle(base: "other", id: "p501") == "other")
    }

    @Test("a state fetched before a feed delete does not bring the product back")
    func fetchedRacingFeedDelete() {
        var shop = ShopState()
        shop.apply(.feed(id: "p", put("p", 1), deletesOnly: false), at: at(0))
        // A coordinated write or a stale write's catch-up asks the Database Service at 1 and gets version 1 back...
        let asked = at(1)
        // ...while another replica's delete reaches this one through the feed.
        shop.apply(.feed(id: "p", .delete(version: 2), deletesOnly: false), at: at(2))
        shop.apply(.fetched(id: "p", stored("p", 1), since: asked), at: at(3))
        #expect(shop.products["p"] == nil)
        #expect(shop.tombstones["p"]?.version == 2)
    }

    @Test("a restore's result, late behind a delete made on another replica, does not undo that delete")
    func restoreRacingRemoteDelete() {
        var shop = ShopState()
        shop.apply(.durable(ticket: 1, id: "p", put("p", 1)), at: at(0))
        shop.apply(.feed(id: "p", put("p", 1), deletesOnly: false), at: at(0))
        let asked = at(1)
        // The restore is stored as version 3; the feed brings it, then another replica's delete at 4, before the
        // restore's answer is applied here.
        shop.apply(.feed(id: "p", put("p", 3), deletesOnly: false), at: at(2))
        shop.apply(.feed(id: "p", .delete(version: 4), deletesOnly: false), at: at(3))
        shop.apply(.fetched(id: "p", stored("p", 3), since: asked), at: at(4))
        #expect(shop.products["p"] == nil)
        // A later restore (newer than the delete) does come back.
        shop.apply(.fetched(id: "p", stored("p", 5), since: at(5)), at: at(6))
        #expect(shop.products["p"]?.version == 5)
        #expect(shop.tombstones["p"] == nil)
    }

    @Test("an imported batch's result, late behind a feed update and delete, changes nothing")
    func importRacingFeedUpdate() {
        var shop = ShopState()
        let sent = at(0)
        shop.apply(.feed(id: "p", put("p", 1, name: "Imported"), deletesOnly: false), at: at(1))
        shop.apply(.feed(id: "p", put("p", 2, name: "Edited"), deletesOnly: false), at: at(2))
        shop.apply(.fetched(id: "p", stored("p", 1), since: sent), at: at(3))
        #expect(shop.products["p"]?.name == "Edited")
        shop.apply(.feed(id: "p", .delete(version: 3), deletesOnly: false), at: at(4))
        shop.apply(.fetched(id: "p", stored("p", 1), since: sent), at: at(5))
        #expect(shop.products["p"] == nil)
    }

    @Test("a read-through that raced a delete in an evicted shop is not cached")
    func readThroughRacingDelete() {
        var shop = ShopState()
        _ = shop.evict(keeping: { _ in false }, at: at(0), tick: 1)
        // A read-through of an evicted shop asks at 1; the product's delete passes through the feed at 2, and an
        // evicted shop keeps no tombstone for what it does not hold.
        let asked = at(1)
        shop.apply(.feed(id: "p", .delete(version: 2), deletesOnly: false), at: at(2))
        shop.apply(.fetched(id: "p", stored("p", 1), since: asked), at: at(3))
        #expect(shop.products["p"] == nil)
        // One asked after the delete was seen is cached.
        shop.apply(.fetched(id: "q", stored("q", 1), since: at(4)), at: at(5))
        #expect(shop.products["q"] != nil)
    }

    @Test("a tombstone forgotten early (over its byte limit) makes fetched states asked before it untrusted")
    func forgottenTombstone() {
        var shop = ShopState(limits: .init(tombstoneRetention: .seconds(600), tombstoneBytes: 150))
        let asked = at(0)
        shop.apply(.feed(id: "old", .delete(version: 5), deletesOnly: false), at: at(1))
        shop.apply(.feed(id: "new1", .delete(version: 5), deletesOnly: false), at: at(2))
        #expect(shop.tombstones["old"] == nil, "the oldest went to stay within 150 bytes")
        shop.apply(.fetched(id: "old", stored("old", 1), since: asked), at: at(3))
        #expect(shop.products["old"] == nil)
        shop.apply(.fetched(id: "old", stored("old", 6), since: at(4)), at: at(5))
        #expect(shop.products["old"]?.version == 6, "asked after the tombstone was recorded: trusted")
    }

    @Test("tombstones age out after their retention; a replica's own unconfirmed delete stays until the feed confirms it")
    func tombstoneRetention() {
        var shop = ShopState(limits: .init(tombstoneRetention: .seconds(60), tombstoneBytes: 1 << 20))
        shop.apply(.feed(id: "theirs", .delete(version: 2), deletesOnly: false), at: at(0))
        shop.apply(.durable(ticket: 1, id: "mine", .delete(version: 3)), at: at(0))
        shop.apply(.feed(id: "x", put("x", 1), deletesOnly: false), at: at(61))
        #expect(shop.tombstones["theirs"] == nil)
        #expect(shop.tombstones["mine"]?.pinned == true)
        shop.apply(.feed(id: "mine", .delete(version: 3), deletesOnly: false), at: at(100))
        #expect(shop.tombstones["mine"]?.pinned == false, "confirmed: now ageing")
        shop.apply(.feed(id: "x", put("x", 2), deletesOnly: false), at: at(161))
        #expect(shop.tombstones["mine"] == nil)
        #expect(shop.tombstones.bytes == 0)
    }

    @Test("an idle shop's tombstones age out too: the cache's upkeep passes time in with nothing else")
    func idleShopAges() {
        let cache = CatalogCache(limits: .init(tombstoneRetention: .seconds(60), tombstoneBytes: 1 << 20))
        cache.applyFeed(.delete(tenant: "idle", id: "gone", version: 2, deletedAt: Timestamp.now()))
        func kept() -> Bool { cache.withExistingShop("idle") { $0.tombstones["gone"] != nil } == true }
        #expect(kept())
        cache.ageTombstones(at: .now + .seconds(30))
        #expect(kept(), "within its retention")
        cache.ageTombstones(at: .now + .seconds(61))
        #expect(!kept())
        #expect(cache.withExistingShop("idle") { $0.tombstones.bytes } == 0)
    }

    @Test("staged writes are seen by writers only; a failed one is forgotten; a durable one shows unless something newer is known")
    func stagedDurableFailed() {
        var shop = ShopState()
        shop.apply(.staged(ticket: 1, id: "p", put("p", 1)), at: at(0))
        #expect(shop.products["p"] == nil && shop.latest("p") != nil)
        shop.apply(.failed(ticket: 1, id: "p"), at: at(1))
        #expect(shop.latest("p") == nil)
        shop.apply(.staged(ticket: 2, id: "p", put("p", 1)), at: at(2))
        shop.apply(.feed(id: "p", .delete(version: 5), deletesOnly: false), at: at(3))
        shop.apply(.durable(ticket: 2, id: "p", put("p", 1)), at: at(4))
        #expect(shop.products["p"] == nil, "older than the delete the feed brought")
        #expect(shop.staged.isEmpty)
    }

    @Test("a reload page adds what is newer and drops what its range lacks, keeping pending writes and later feed changes")
    func reloadPage() {
        var shop = ShopState()
        for id in ["a", "b", "c", "d"] { shop.apply(.replayed(id: id, put(id, 1)), at: at(0)) }
        shop.apply(.feed(id: "b", .delete(version: 4), deletesOnly: false), at: at(1))
        let page = [CachedProduct(product("a", version: 2)), CachedProduct(product("b", version: 3))]
        let applied = shop.apply(.reloadPage(page, after: nil, through: "c", isPending: { $0 == "c" }), at: at(2))
        #expect(applied.put == 1 && applied.removed == 0)
        #expect(shop.products["a"]?.version == 2)
        #expect(shop.products["b"] == nil, "the page's older state does not undo the delete")
        #expect(shop.products["c"] != nil, "pending")
        #expect(shop.products["d"] != nil, "past the page's range")
    }

    @Test("a reload page from a database that went back replaces newer versions, except pending and staged writes")
    func reloadPageAfterTheDatabaseWentBack() {
        var shop = ShopState()
        for id in ["a", "b", "c"] { shop.apply(.replayed(id: id, put(id, 5)), at: at(0)) }
        shop.apply(.staged(ticket: 9, id: "c", put("c", 6)), at: at(1))
        let page = ["a", "b", "c"].map { CachedProduct(product($0, version: 2)) }
        var ordinary = shop
        #expect(ordinary.apply(.reloadPage(page, after: nil, through: nil, isPending: { _ in false }), at: at(2)).put == 0, "an ordinary reload keeps newer versions")
        let applied = shop.apply(.reloadPage(page, after: nil, through: nil, isPending: { $0 == "b" }, databaseWentBack: true), at: at(2))
        #expect(applied.put == 1)
        #expect(shop.products["a"]?.version == 2, "what the database holds, though older")
        #expect(shop.products["b"]?.version == 5, "a write still pending is persisted again, not undone")
        #expect(shop.staged["c"] != nil && shop.products["c"]?.version == 5, "a staged write is left to finish")
    }
}
