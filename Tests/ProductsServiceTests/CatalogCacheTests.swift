import Foundation
import Synchronization
import Testing

@testable import ProductsService
import Shared
import TestSupport

@Suite("Catalog cache")
struct CatalogCacheTests {
    /// Stages a product and makes it visible at once, as a write whose journal record is durable.
    func put(_ cache: CatalogCache, _ tenant: String, _ product: Product, ticket: UInt64) {
        _ = cache.stage(tenant: tenant, CachedProduct(product)) { ticket }
        cache.promote(through: ticket)
    }

    @Test("listing is in id (creation) order whatever the insertion order")
    func order() async {
        let cache = CatalogCache()
        for (ticket, id) in ["c", "a", "d", "b"].enumerated() { put(cache, "t", product(id), ticket: UInt64(ticket + 1)) }
        #expect(await cache.listing.list(tenant: "t", query: ProductQuery(limit: 10)).products.map(\.product.id) == ["a", "b", "c", "d"])
        let page = await cache.listing.list(tenant: "t", query: ProductQuery(limit: 2))
        #expect(page.products.map(\.product.id) == ["a", "b"] && page.hasMore)
        #expect(await cache.listing.list(tenant: "other", query: ProductQuery(limit: 10)).products.isEmpty)
    }

    @Test("a staged write is invisible to readers until promoted, while writers build on it")
    func stagedWrites() async throws {
        let cache = CatalogCache()
        put(cache, "t", product("p", version: 1, name: "One"), ticket: 1)
        let staged = try #require(cache.stageUpdate(tenant: "t", id: "p") { current, _ in
            var changed = current.product
            changed.version += 1
            changed.name = "Two"
            return (CachedProduct(changed), 2, ())
        })
        #expect(staged.0.product.version == 2)
        #expect(cache.get(tenant: "t", id: "p")?.product.name == "One", "readers see only durable writes")
        #expect(await cache.listing.list(tenant: "t", query: ProductQuery()).products.map(\.product.name) == ["One"])
        #expect(cache.latest(tenant: "t", id: "p")?.product.name == "Two", "writers see the staged one")
        _ = cache.stage(tenant: "t", CachedProduct(product("q"))) { 3 }
        #expect(cache.get(tenant: "t", id: "q") == nil)
        #expect(await cache.listing.list(tenant: "t", query: ProductQuery()).products.count == 1)

        cache.promote(through: 2)
        #expect(cache.get(tenant: "t", id: "p")?.product.name == "Two")
        #expect(cache.get(tenant: "t", id: "q") == nil, "ticket 3 is not durable yet")
        cache.promote(through: 3)
        #expect(cache.get(tenant: "t", id: "q") != nil)
    }

    @Test("a staged delete hides nothing from readers until durable, but writers already see the product gone")
    func stagedDelete() throws {
        let cache = CatalogCache()
        put(cache, "t", product("p"), ticket: 1)
        #expect(cache.stageDelete(tenant: "t", id: "p") { _ in (2, 2) } != nil)
        #expect(cache.get(tenant: "t", id: "p") != nil)
        #expect(cache.latest(tenant: "t", id: "p") == nil)
        #expect(cache.isPendingDelete(tenant: "t", id: "p"))
        #expect(!cache.isVisiblyDeleted(tenant: "t", id: "p"))
        cache.promote(through: 2)
        #expect(cache.get(tenant: "t", id: "p") == nil)
        #expect(cache.isVisiblyDeleted(tenant: "t", id: "p"))
    }

    @Test("when the journal fails, staged writes are dropped and readers keep the last durable state")
    func discard() throws {
        let cache = CatalogCache()
        put(cache, "t", product("kept", version: 1, name: "Durable"), ticket: 1)
        _ = cache.stageUpdate(tenant: "t", id: "kept") { current, _ in
            var changed = current.product
            changed.version = 2
            changed.name = "Lost"
            return (CachedProduct(changed), 2, ())
        }
        _ = cache.stage(tenant: "t", CachedProduct(product("phantom"))) { 3 }
        _ = cache.stageDelete(tenant: "t", id: "kept") { _ in (3, 4) }
        cache.discardStaged(after: 1)
        #expect(cache.get(tenant: "t", id: "kept")?.product.name == "Durable")
        #expect(cache.latest(tenant: "t", id: "kept")?.product.name == "Durable", "writers build on the durable state again")
        #expect(cache.get(tenant: "t", id: "phantom") == nil)
        #expect(cache.latest(tenant: "t", id: "phantom") == nil)
        #expect(!cache.isPendingDelete(tenant: "t", id: "kept"))
        cache.promote(through: 10)
        #expect(cache.get(tenant: "t", id: "phantom") == nil, "a discarded write never comes back")
    }

    @Test("a long filtered listing does not hold the lock: a GET by id completes while the listing is paused in its filter")
    func listingDoesNotBlockReads() async throws {
        let cache = CatalogCache()
        for index in 0..<(CatalogCache.listChunk * 4) { cache.replay(.upsert(tenant: "t", product: product(String(format: "p%05d", index)))) }
        let inFilter = DispatchSemaphore(value: 0)
        let resume = DispatchSemaphore(value: 0)
        var query = ProductQuery(limit: 10)
        query.type = "no such type"
        final class Flag: Sendable { let raised = Mutex(false) }
        let paused = Flag()
        let listing = Task.detached {
            await cache.listing.list(tenant: "t", query: query, where: { _ in
                if !paused.raised.withLock({ $0 }) {
                    paused.raised.withLock { $0 = true }
                    inFilter.signal()
                    resume.wait()
                }
                return false
            })
        }
        await Self.wait(for: inFilter)
        // A lock held across the filter would block this read until the listing resumes: run it off the pool, with a deadline.
        let read = await Self.offThePool(timeout: .seconds(5)) { cache.get(tenant: "t", id: "p00100") != nil }
        resume.signal()
        #expect(read == true, "the read completed while the listing was paused")
        let page = await listing.value
        #expect(page.products.isEmpty && !page.hasMore)
    }

    @Test("each tenant has its own lock: while one tenant's is held, another tenant is read and written")
    func perTenantLocks() async throws {
        let cache = CatalogCache()
        cache.replay(.upsert(tenant: "busy", product: product("b1")))
        cache.replay(.upsert(tenant: "other", product: product("o1")))
        let holding = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let holder = Thread {
            cache.whileHoldingLock(of: "busy") {
                holding.signal()
                release.wait()
            }
        }
        holder.start()
        await Self.wait(for: holding)
        let other = await Self.offThePool(timeout: .seconds(5)) { () -> Bool in
            let read = cache.get(tenant: "other", id: "o1") != nil
            let ticket = cache.stage(tenant: "other", CachedProduct(product("o2"))) { 1 } ?? 0
            cache.promote(through: ticket)
            return read && cache.get(tenant: "other", id: "o2") != nil
        }
        let busy = await Self.offThePool(timeout: .milliseconds(200)) { cache.get(tenant: "busy", id: "b1") != nil }
        release.signal()
        #expect(other == true, "another tenant was read and written while the lock was held")
        #expect(busy == nil, "the held tenant itself waits")
    }

    @Test("reconcile adds, replaces older versions, drops what the database lost, keeps what is pending")
    func reconcile() {
        let cache = CatalogCache()
        cache.replay(.upsert(tenant: "t", product: product("kept-newer", version: 3)))
        cache.replay(.upsert(tenant: "t", product: product("replaced", version: 1)))
        cache.replay(.upsert(tenant: "t", product: product("gone")))
        cache.replay(.upsert(tenant: "t", product: product("pending-create")))
        cache.replay(.delete(tenant: "t", id: "kept-newer", version: 4, deletedAt: Timestamp.now()))
        cache.replay(.upsert(tenant: "t", product: product("kept-newer2", version: 3)))

        let database = [product("kept-newer", version: 3), product("replaced", version: 2), product("new"), product("kept-newer2", version: 2)]
        let page = database.sorted { $0.id < $1.id }.map(CachedProduct.init)
        let result = cache.reconcilePage(tenant: "t", page, after: nil, through: nil) { $0 == "pending-create" }
        #expect(result.updated == 2)
        #expect(result.dropped == 1)
        #expect(cache.get(tenant: "t", id: "kept-newer") == nil, "a pending delete is not undone")
        #expect(cache.get(tenant: "t", id: "replaced")?.product.version == 2)
        #expect(cache.get(tenant: "t", id: "new") != nil)
        #expect(cache.get(tenant: "t", id: "gone") == nil)
        #expect(cache.get(tenant: "t", id: "pending-create") != nil)
        #expect(cache.get(tenant: "t", id: "kept-newer2")?.product.version == 3)
    }

    @Test("a read-through that raced with this replica's delete is not cached; a refused delete's tombstone is forgotten")
    func raceWithDelete() {
        let cache = CatalogCache()
        let asked = ContinuousClock.now
        #expect(cache.stageUncachedDelete(tenant: "t", id: "x", version: 2) { 1 } == 1)
        cache.promote(through: 1)
        cache.apply(.fetched(id: "x", .stored(CachedProduct(product("x"))), since: asked), tenant: "t")
        #expect(cache.get(tenant: "t", id: "x") == nil)
        #expect(cache.isPendingDelete(tenant: "t", id: "x"))
        cache.apply(.refused(id: "x", .delete(version: 2)), tenant: "t")
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

    @Test("stored changes (the feed) apply by version: repeats and older ones change nothing, the same version stored otherwise replaces, deletes remove from reads and listings")
    func storedChanges() async {
        let cache = CatalogCache()
        let five = product("p", version: 5, name: "Five")
        #expect(cache.applyFeed(.upsert(tenant: "t", product: five)))
        #expect(!cache.applyFeed(.upsert(tenant: "t", product: five)), "a repeat")
        // The same version stored otherwise: the Database Service settled a clash of a handle this replica gave.
        var settled = five
        settled.handle = "p-2"
        #expect(cache.applyFeed(.upsert(tenant: "t", product: settled)))
        #expect(cache.get(tenant: "t", id: "p")?.handle == "p-2")
        #expect(!cache.applyFeed(.upsert(tenant: "t", product: product("p", version: 3, name: "Three"))), "an older one")
        #expect(cache.get(tenant: "t", id: "p")?.product.name == "Five")
        #expect(!cache.applyFeed(.delete(tenant: "t", id: "p", version: 4, deletedAt: Timestamp.now())), "an older delete")
        #expect(cache.applyFeed(.delete(tenant: "t", id: "p", version: 9, deletedAt: Timestamp.now())))
        #expect(cache.get(tenant: "t", id: "p") == nil)
        #expect(await cache.listing.list(tenant: "t", query: ProductQuery()).products.isEmpty)
        #expect(cache.applyFeed(.upsert(tenant: "t", product: product("p", version: 12, name: "Back"))), "a later write wins, by version")
        #expect(!cache.applyFeed(.upsert(tenant: "t", product: product("q", version: 1)), deletesOnly: true), "catching up applies deletes only")
        #expect(cache.get(tenant: "t", id: "q") == nil)

        // A newer stored state replaces a local delete still waiting for the Database Service.
        _ = cache.stageUncachedDelete(tenant: "t", id: "r", version: 2) { 20 }
        cache.promote(through: 20)
        #expect(cache.isVisiblyDeleted(tenant: "t", id: "r"))
        #expect(!cache.applyFeed(.upsert(tenant: "t", product: product("r", version: 2))), "not newer than the delete")
        #expect(cache.applyFeed(.upsert(tenant: "t", product: product("r", version: 3))))
        #expect(!cache.isVisiblyDeleted(tenant: "t", id: "r") && cache.get(tenant: "t", id: "r")?.product.version == 3)

        // This replica's delete, persisted: while the feed is behind it, an older change cannot bring the product back.
        _ = cache.stageDelete(tenant: "t", id: "r") { _ in (7, 21) }
        cache.promote(through: 21)
        #expect(!cache.applyFeed(.upsert(tenant: "t", product: product("r", version: 3))), "the feed, still behind the delete")
        #expect(cache.get(tenant: "t", id: "r") == nil && cache.isVisiblyDeleted(tenant: "t", id: "r"))
        #expect(!cache.applyFeed(.delete(tenant: "t", id: "r", version: 7, deletedAt: Timestamp.now())), "the delete itself, back")
        #expect(cache.isVisiblyDeleted(tenant: "t", id: "r"), "the tombstone is kept, now ageing like any other")
        #expect(!cache.applyFeed(.upsert(tenant: "t", product: product("r", version: 3))), "so an older change still cannot bring it back")
    }

    @Test("a stored delete of a product not cached keeps a tombstone, forgotten by a full load")
    func uncachedDeleteTombstone() async {
        let cache = CatalogCache()
        // Another replica's delete arrives from the feed while a read-through or a stale write's catch-up has
        // fetched the older state and not yet cached it.
        #expect(!cache.applyFeed(.delete(tenant: "t", id: "x", version: 10, deletedAt: Timestamp.now())))
        #expect(!cache.applyFeed(.upsert(tenant: "t", product: product("x", version: 7))), "the older state, fetched before the delete")
        #expect(cache.get(tenant: "t", id: "x") == nil)
        #expect(await cache.listing.list(tenant: "t", query: ProductQuery()).products.isEmpty)
        #expect(cache.applyFeed(.upsert(tenant: "t", product: product("x", version: 11))), "a newer write still wins")
        // A full load starts the feed where the load did, so it forgets confirmed tombstones.
        #expect(!cache.applyFeed(.delete(tenant: "t", id: "y", version: 4, deletedAt: Timestamp.now())))
        cache.apply(.reloadBegan(isPending: { _ in false }), tenant: "t")
        #expect(cache.applyFeed(.upsert(tenant: "t", product: product("y", version: 5))))
    }

    @Test("statistics count types as products come and go")
    func statistics() {
        let cache = CatalogCache()
        cache.replay(.upsert(tenant: "t", product: product("a", type: "lamp")))
        cache.replay(.upsert(tenant: "t", product: product("b", type: "lamp")))
        cache.replay(.upsert(tenant: "t", product: product("c", type: "chair")))
        cache.replay(.upsert(tenant: "t", product: product("b", version: 2, type: "chair")))
        cache.replay(.delete(tenant: "t", id: "a", version: 2, deletedAt: Timestamp.now()))
        let statistics = cache.statistics(tenant: "t")
        #expect(statistics.productTypes == ["chair": 2])
        #expect(statistics.totalProducts == 2)
    }

    @Test("coalescing keeps the newest operation per product, with the time it was recorded")
    func coalesce() throws {
        let operations = [upsert("a", version: 1), upsert("b", version: 1), upsert("a", version: 2),
                          .delete(tenant: defaultTenant, id: "a", version: 3, deletedAt: Timestamp.now())]
        let entries = operations.enumerated().map { index, operation in
            JournalEntry(sequence: UInt64(index + 1), operation: operation, recordedAt: .now, recordedAtMs: 1_000 + Int64(index))
        }
        let coalesced = PersistenceWorker.coalesce(entries)
        #expect(coalesced.map(\.operation.productID) == ["a", "b"])
        #expect(coalesced[0].operation.version == 3)
        #expect(coalesced.map(\.recordedAtMs) == [1_003, 1_001], "each operation keeps its own time, the delete's for a")
        let sent = try WriteBatch(json: PersistenceWorker.body(coalesced))
        #expect(sent.operations == coalesced.map(\.operation), "the journal's lines are the batch's elements")
        #expect(sent.recordedAtMs == [1_003, 1_001], "with their times")
        let untimed = entries.map { JournalEntry(sequence: $0.sequence, operation: $0.operation, recordedAt: .now) }
        #expect(try WriteBatch(json: PersistenceWorker.body(PersistenceWorker.coalesce(untimed))).recordedAtMs.isEmpty)
    }

    /// Waits on a semaphore off the cooperative pool.
    static func wait(for semaphore: DispatchSemaphore) async {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                semaphore.wait()
                continuation.resume()
            }
        }
    }

    /// Runs `body` on a thread of its own; nil when it has not returned within `timeout`.
    static func offThePool<T: Sendable>(timeout: Duration, _ body: @escaping @Sendable () -> T) async -> T? {
        let outcome = ThreadOutcome<T>()
        Thread {
            outcome.value = body()
            outcome.done.signal()
        }.start()
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            // The semaphore orders the write of `value` before this read.
            if outcome.done.wait(timeout: .now()) == .success { return outcome.value }
            try? await Task.sleep(for: .milliseconds(5))
        }
        // A busy machine can wake this task only after the deadline: look once more.
        return outcome.done.wait(timeout: .now()) == .success ? outcome.value : nil
    }
}

/// What a thread hands back: written before `done` is signalled, read after.
private final class ThreadOutcome<T>: @unchecked Sendable {
    var value: T?
    let done = DispatchSemaphore(value: 0)
}
