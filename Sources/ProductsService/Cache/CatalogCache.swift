import NIOCore
import DequeModule
import Metrics
import Shared
import Synchronization

/// The in-memory catalog: every shop's `ShopState` under its own lock, and the order of staged writes across shops.
///
/// A write is **staged** while its journal record is not yet durable: later writes build on it, but readers
/// do not see it until `promote(through:)` makes it durable, and `discardStaged(after:)` drops it if the journal
/// fails. So no reader ever sees a write that could still be lost. Everything else that changes what a replica
/// believes goes through `apply(_:tenant:)`, and `ShopState` decides it by version and by origin.
///
/// Each shop has its own lock, so that no shop waits on another's; the map of shops has one more, held only to
/// find or add a shop. Locks are taken in the order shop, then the staged queue (then the journal's, inside a
/// shop's, for writes), never the other way.
final class CatalogCache: Sendable {
    /// Listings, searches and their indexes.
    var listing: CacheListing { CacheListing(cache: self) }

    private let tenants = Mutex<[String: ShopSlot]>([:])
    /// Writes journaled but not yet durable, in ticket order.
    private let stagedQueue = Mutex<Deque<StagedWrite>>([])
    private let promoting = Mutex(())
    /// Ticks on every use of a shop, for eviction by recency.
    private let clock = Atomic<UInt64>(0)
    let limits: ShopState.Limits

    /// How long a listing with `q` waits for its shop's name index to be built before walking instead.
    let nameIndexWait: Duration
    /// How long a search waits for its shop's search index to be built before answering 503.
    let searchIndexWait: Duration

    init(limits: ShopState.Limits = ShopState.Limits(), nameIndexWait: Duration = .seconds(20), searchIndexWait: Duration = .seconds(30)) {
        self.limits = limits
        self.nameIndexWait = nameIndexWait
        self.searchIndexWait = searchIndexWait
    }

    /// Products a listing copies out of the lock at a time: the longest any filter keeps others waiting.
    static let listChunk = 256

    /// A shop's state and its lock.
    private final class ShopSlot: Sendable {
        let state: Mutex<ShopState>
        init(limits: ShopState.Limits) { state = Mutex(ShopState(limits: limits)) }
    }

    /// The shop's slot; made when missing if `create`.
    private func slot(_ tenant: String, create: Bool) -> ShopSlot? {
        tenants.withLock { map in
            if let slot = map[tenant] { return slot }
            guard create else { return nil }
            let slot = ShopSlot(limits: limits)
            map[tenant] = slot
            return slot
        }
    }

    /// Runs `body` on the shop's state under its lock, making the shop when missing.
    func withShop<T>(_ tenant: String, _ body: (inout ShopState) throws -> T) rethrows -> T {
        try slot(tenant, create: true)!.state.withLock { state in try body(&state) }
    }

    /// Runs `body` on the shop's state under its lock; nil when the cache does not know the shop.
    func withExistingShop<T>(_ tenant: String, _ body: (inout ShopState) throws -> T) rethrows -> T? {
        guard let slot = slot(tenant, create: false) else { return nil }
        return try slot.state.withLock { state in try body(&state) }
    }

    /// Every shop's slot, for the figures summed over shops.
    private var allSlots: [(tenant: String, slot: ShopSlot)] {
        tenants.withLock { map in map.map { ($0.key, $0.value) } }
    }

    /// The next tick of the recency clock.
    func tick() -> UInt64 { clock.wrappingAdd(1, ordering: .relaxed).newValue }

    private struct StagedWrite {
        var ticket: UInt64
        var tenant: String
        var id: String
        var change: ProductChange
    }

    // MARK: The one door

    /// Applies a change to what this replica believes about a shop (see `ShopInput`); returns how many products
    /// readers now see differently.
    @discardableResult
    func apply(_ input: ShopInput, tenant: String) -> (put: Int, removed: Int) {
        let now = ContinuousClock.now
        return withShop(tenant) { $0.apply(input, at: now) }
    }

    /// Applies a change from the feed (or, in tests, a stored change) by version; whether readers see a difference.
    @discardableResult
    func applyFeed(_ operation: WriteOperation, deletesOnly: Bool = false) -> Bool {
        let change = ProductChange(operation)
        let applied = apply(.feed(id: operation.productID, change, deletesOnly: deletesOnly), tenant: operation.tenant)
        return applied.put + applied.removed > 0
    }

    /// Ages every shop's tombstones to `now`: a shop no input reaches keeps none past its retention.
    func ageTombstones(at now: ContinuousClock.Instant = .now) {
        for (_, slot) in allSlots { slot.state.withLock { state in _ = state.apply(.aged, at: now) } }
    }

    /// Replays a journaled operation at start (it is durable): applied if newer than what is cached.
    func replay(_ operation: WriteOperation) {
        apply(.replayed(id: operation.productID, ProductChange(operation)), tenant: operation.tenant)
    }

    // MARK: Reads

    /// The product as readers see it, counting a hit or a miss.
    func get(tenant: String, id: String) -> CachedProduct? {
        let now = tick()
        let found = withShop(tenant) { replica in
            let found = replica.products[id]
            replica.lastUsed = now
            if found == nil { replica.misses += 1 } else { replica.hits += 1 }
            return found
        }
        if found == nil { Self.misses.increment() } else { Self.hits.increment() }
        return found
    }

    /// The product as writers see it: with staged writes, and nil when deleted.
    func latest(tenant: String, id: String) -> CachedProduct? {
        withExistingShop(tenant) { $0.latest(id) } ?? nil
    }

    /// The products matching a query's filters from its cursor on, at most `limit` of them in creation (id) order,

    /// Which of these ids the cache decides for: cached, or deleted.
    func decided(tenant: String, ids: some Sequence<String>) -> Set<String> {
        withExistingShop(tenant) { shop in
            Set(ids.filter { shop.products[$0] != nil || shop.tombstones[$0] != nil })
        } ?? []
    }

    /// Whether a delete of this product is staged or its tombstone kept.
    func isPendingDelete(tenant: String, id: String) -> Bool {
        withExistingShop(tenant) { $0.isDeleted(id) } ?? false
    }

    /// Whether readers are told this product is gone: a durable or committed delete's tombstone is kept.
    func isVisiblyDeleted(tenant: String, id: String) -> Bool {
        withExistingShop(tenant) { $0.tombstones[id] != nil } ?? false
    }

    /// Whether the cache has the product at `version` or newer, or a delete at least that new.
    func holds(tenant: String, id: String, version: Int64) -> Bool {
        withExistingShop(tenant) { $0.holds(id, version: version) } ?? false
    }

    /// The product readers see holding `handle`, if cached.
    func handleOwner(tenant: String, handle: String) -> String? {
        withExistingShop(tenant) { $0.handles[handle] } ?? nil
    }

    /// The product readers see holding `sku`, if cached.
    func skuOwner(tenant: String, sku: String) -> String? {
        withExistingShop(tenant) { $0.skus[sku] } ?? nil
    }

    /// Whether a product from the feed must be read: not when this cache holds a newer version, or the same version
    /// with the same JSON (this replica's own write, back from the Database Service as it was sent).
    func needsFeedProduct(tenant: String, id: String, version: Int64, json: ByteBuffer?) -> Bool {
        withExistingShop(tenant) { shop in
            if let held = shop.products[id], held.version == version, let json {
                return !held.withJSONBytes { mine in json.withUnsafeReadableBytes { mine.elementsEqual($0) } }
            }
            return !shop.holds(id, version: version)
        } ?? true
    }

    /// The version readers see of a product, nil when it is not cached.
    func visibleVersion(tenant: String, id: String) -> Int64? {
        withExistingShop(tenant) { $0.products[id]?.version } ?? nil
    }

    // MARK: Writes

    /// Stages a change in the shop (whose lock the caller holds) and queues it for `promote`.
    private func stage(_ write: StagedWrite, in state: inout ShopState) {
        state.apply(.staged(ticket: write.ticket, id: write.id, write.change), at: .now)
        state.lastUsed = tick()
        stagedQueue.withLock { queue in
            // Tickets come from the journal in order, but writers of different shops reach here in any order.
            var index = queue.endIndex
            while index > queue.startIndex, queue[index - 1].ticket > write.ticket { index -= 1 }
            queue.insert(write, at: index)
        }
    }

    /// Stages a new product; `journal` records it in the same critical section, so that the journal holds the
    /// changes of each product in the order the cache saw them. Returns the journal's ticket; nil, changing
    /// nothing, when another product took its handle since it was chosen (a concurrent create).
    @discardableResult
    func stage(tenant: String, _ cached: CachedProduct, journal: () throws -> UInt64) rethrows -> UInt64? {
        try withShop(tenant) { state in
            if state.handleHolder(cached.handle, other: cached.id) != nil { return nil }
            let ticket = try journal()
            stage(StagedWrite(ticket: ticket, tenant: tenant, id: cached.id, change: .put(cached)), in: &state)
            return ticket
        }
    }

    /// Stages what `change` makes of the latest version of a product, in the critical section where `change`
    /// also journals it (returning the new version and its ticket). Returns nil, changing nothing, when the
    /// cache holds no such product.
    func stageUpdate<Result>(
        tenant: String, id: String,
        change: (_ current: CachedProduct, _ shop: inout ShopState) throws -> (CachedProduct, ticket: UInt64, Result)
    ) rethrows -> (CachedProduct, Result)? {
        try withShop(tenant) { state in
            guard let current = state.latest(id) else { return nil }
            let (updated, ticket, result) = try change(current, &state)
            stage(StagedWrite(ticket: ticket, tenant: tenant, id: id, change: .put(updated)), in: &state)
            return (updated, result)
        }
    }

    /// Stages the delete of a cached product, in the critical section where `journal` records it (returning
    /// the delete's version and its ticket). Returns the product deleted and the ticket; nil, journaling nothing,
    /// when the product is not cached.
    func stageDelete(
        tenant: String, id: String, journal: (_ removed: CachedProduct) throws -> (version: Int64, ticket: UInt64)
    ) rethrows -> (removed: CachedProduct, ticket: UInt64)? {
        try withShop(tenant) { state in
            guard let current = state.latest(id) else { return nil }
            let (version, ticket) = try journal(current)
            stage(StagedWrite(ticket: ticket, tenant: tenant, id: id, change: .delete(version: version)), in: &state)
            return (current, ticket)
        }
    }

    /// Stages the delete of a product the cache does not hold (found only in the Database Service) unless it was
    /// cached, written or deleted meanwhile; `journal` records it. Returns the ticket; nil when it was.
    func stageUncachedDelete(tenant: String, id: String, version: Int64, journal: () throws -> UInt64) rethrows -> UInt64? {
        try withShop(tenant) { state in
            guard state.latest(id) == nil, !state.isDeleted(id) else { return nil }
            let ticket = try journal()
            stage(StagedWrite(ticket: ticket, tenant: tenant, id: id, change: .delete(version: version)), in: &state)
            return ticket
        }
    }

    /// Makes every staged write up to `ticket` durable, so visible to readers: the journal has them on disk.
    func promote(through ticket: UInt64) {
        // One promote at a time: a writer whose write another writer's promote took must not answer before that
        // promote has made it visible.
        promoting.withLock { _ in
            let ready = stagedQueue.withLock { queue -> [StagedWrite] in
                var ready: [StagedWrite] = []
                while let first = queue.first, first.ticket <= ticket { ready.append(queue.removeFirst()) }
                return ready
            }
            guard !ready.isEmpty else { return }
            // Each shop's writes in ticket order, under its lock; a write of a product promoted after a newer one
            // of it (by another writer's promote) changes nothing, by version.
            var byTenant: [String: [StagedWrite]] = [:]
            for write in ready { byTenant[write.tenant, default: []].append(write) }
            let now = ContinuousClock.now
            for (tenant, writes) in byTenant {
                withShop(tenant) { state in
                    for write in writes { state.apply(.durable(ticket: write.ticket, id: write.id, write.change), at: now) }
                }
            }
        }
    }

    /// Forgets every staged write after `ticket`: the journal failed and will never have them.
    func discardStaged(after ticket: UInt64) {
        promote(through: ticket)
        let lost = stagedQueue.withLock { queue -> Deque<StagedWrite> in
            defer { queue.removeAll() }
            return queue
        }
        let now = ContinuousClock.now
        for write in lost {
            _ = withExistingShop(write.tenant) { $0.apply(.failed(ticket: write.ticket, id: write.id), at: now) }
        }
    }

    // MARK: Reloads

    /// A reload's page of the Database Service's catalog, pages read in id order (see `ShopInput.reloadPage`).
    /// Returns how many products it added or replaced, and how many it dropped.
    func reconcilePage(
        tenant: String, _ products: [CachedProduct], after: String?, through: String?, databaseWentBack: Bool = false,
        isPending: (_ id: String) -> Bool
    ) -> (updated: Int, dropped: Int) {
        let applied = withoutActuallyEscaping(isPending) { isPending in
            apply(.reloadPage(products, after: after, through: through, isPending: isPending, databaseWentBack: databaseWentBack), tenant: tenant)
        }
        return (applied.put, applied.removed)
    }

    // MARK: The memory budget

    /// The cache's estimate of its memory: this many bytes per byte of JSON, plus this many per product, plus this
    /// many per product in a name index.
    static let bytesPerJSONByte = 1
    static let bytesPerProduct = 224
    static let bytesPerIndexedName = 336
    /// An entry of the handle or the SKU index: its dictionary slot and the key's string.
    static let bytesPerIndexedKey = 96

    /// What the estimate counts for these products once cached (tests size budgets with it).
    static func approximateBytes(of products: [Product]) -> Int {
        products.reduce(0) { $0 + CachedProduct($1).jsonByteCount * bytesPerJSONByte + bytesPerProduct }
    }

    /// Whether the shop was evicted under the memory budget: then a miss or a listing is not an answer.
    func isEvicted(tenant: String) -> Bool {
        withExistingShop(tenant) { $0.evicted } ?? false
    }

    /// Each shop's approximate bytes, when it was last used, and whether it is evicted.
    func residency() -> [(tenant: String, bytes: Int, lastUsed: UInt64, evicted: Bool, evictedAt: UInt64, residentBytes: Int)] {
        allSlots.map { tenant, slot in
            let (bytes, lastUsed, evicted, evictedAt, residentBytes) = slot.state.withLock {
                ($0.approximateBytes, $0.lastUsed, $0.evicted, $0.evictedAt, $0.residentBytes)
            }
            return (tenant, bytes, lastUsed, evicted, evictedAt, residentBytes)
        }
    }

    /// Evicts a shop: keeps only its products with writes staged or not yet confirmed (`unconfirmed`, the
    /// journal's, read under this lock so that every write is either in it or staged after it) and the
    /// tombstones of its unconfirmed deletes; everything else is dropped and read from the Database Service
    /// from now on. The products are checked outside the lock; a write made durable meanwhile makes it look
    /// again (false after three tries). A shop the cache does not know yet is recorded as evicted. Returns
    /// whether it was evicted, and the bytes it freed.
    func evict(tenant: String, unconfirmed: () -> UnconfirmedProducts) -> (evicted: Bool, freed: Int) {
        for _ in 0..<3 {
            let (ids, pending, ticket) = withShop(tenant) { state in
                (state.order, unconfirmed(), state.lastDurableTicket)
            }
            let keep = Set(ids.lazy.filter { pending.contains(tenant: tenant, id: $0) })
            let now = tick()
            let dropped = withShop(tenant) { state -> (ShopState, kept: Int)? in
                guard state.lastDurableTicket == ticket else { return nil }
                let old = state.evict(keeping: { keep.contains($0) }, at: .now, tick: now)
                return (old, state.approximateBytes)
            }
            // The dropped entries are freed here, outside the lock.
            if let (old, kept) = dropped { return (true, old.approximateBytes - kept) }
        }
        return (false, 0)
    }

    /// When the shop was last evicted, on the cache's clock (0: never).
    func evictedAt(tenant: String) -> UInt64 {
        withExistingShop(tenant) { $0.evictedAt } ?? 0
    }

    /// Marks an evicted shop resident again once a reload has brought its whole catalog, unless it was evicted
    /// again since `evictedAt` (then what it holds is partial). Returns whether it did.
    @discardableResult
    func markResident(tenant: String, evictedAt: UInt64) -> Bool {
        withExistingShop(tenant) { $0.markResident(evictedAt: evictedAt) } ?? false
    }

    /// Runs `body` while holding the shop's lock: tests show that other shops are not held up.
    func whileHoldingLock(of tenant: String, _ body: () -> Void) {
        withShop(tenant) { _ in body() }
    }

    // MARK: Statistics

    private static let hits = Counter(label: "products_cache_hits")
    private static let misses = Counter(label: "products_cache_misses")

    /// Figures summed over shops, for `/metrics`.
    struct Totals: Sendable {
        var products = 0
        var approximateBytes = 0
        var tombstones = 0
        var tombstoneBytes = 0
    }

    /// Products, approximate bytes and tombstones across all shops.
    var totals: Totals {
        allSlots.reduce(into: Totals()) { total, entry in
            entry.slot.state.withLock { state in
                total.products += state.products.count
                total.approximateBytes += state.approximateBytes
                total.tombstones += state.tombstones.count
                total.tombstoneBytes += state.tombstones.bytes
            }
        }
    }

    struct Statistics: Sendable {
        var totalProducts: Int
        var approximateBytes: Int
        var productTypes: [String: Int]
        var hits: Int
        var misses: Int
    }

    /// One tenant's figures; kept up to date by every change, so reading them is O(types), not O(products).
    func statistics(tenant: String) -> Statistics {
        withExistingShop(tenant) { replica in
            Statistics(
                totalProducts: replica.products.count, approximateBytes: replica.approximateBytes, productTypes: replica.productTypes,
                hits: replica.hits, misses: replica.misses)
        } ?? Statistics(totalProducts: 0, approximateBytes: 0, productTypes: [:], hits: 0, misses: 0)
    }
}

extension ProductChange {
    /// The state a stored or journaled operation leaves its product in.
    init(_ operation: WriteOperation) {
        switch operation {
        case .upsert(_, let product): self = .put(CachedProduct(product))
        case .delete(_, _, let version, _): self = .delete(version: version)
        }
    }
}
