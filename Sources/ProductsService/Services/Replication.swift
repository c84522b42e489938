import Foundation
import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import Shared
import Synchronization

/// How this replica's cache follows the Database Service: the full load, the change feed, reconciling a shop
/// with the Database Service's pages, and the memory budget, which evicts shops and brings them back.
final class Replication: Sendable {
    let cache: CatalogCache
    let journal: Journal
    let database: any DatabaseServiceClient
    /// Shared with the persistence worker: a batch and a reload never run at once.
    let gate: SyncGate
    /// Serialises applying the change feed with reconciliation, which would otherwise drop a product the feed
    /// brought after its listing was read.
    let feedGate = SyncGate()
    let loaded = Atomic<Bool>(false)
    /// The most the cache may hold by its own estimate (`--cache-budget`); nil: no limit.
    let cacheBudget: Int?
    /// When a tenant was last brought back into the cache under the budget: one at a time, at most every
    /// `readmissionInterval`, so that shops taking turns cannot keep it reloading.
    let lastReadmission = Mutex<ContinuousClock.Instant?>(nil)
    let readmissionInterval: Duration
    /// Where the change feed stands: the last full load's starting point, and what the follower reports.
    let feed = FeedState()

    /// Catalog pages asked of the Database Service when loading or reconciling.
    static let pageSize = 1000

    init(
        cache: CatalogCache, journal: Journal, database: any DatabaseServiceClient, gate: SyncGate, cacheBudget: Int?,
        readmissionInterval: Duration
    ) {
        self.cache = cache
        self.journal = journal
        self.database = database
        self.gate = gate
        self.cacheBudget = cacheBudget
        self.readmissionInterval = readmissionInterval
    }

    /// True once every shop has been loaded from the Database Service: a cache miss is then authoritative.
    var isLoaded: Bool { loaded.load(ordering: .acquiring) }

    /// Makes the tenant's cache match the Database Service's full catalog, and marks it resident if it was evicted
    /// and now fits.
    func resync(tenant: String) async throws -> (updated: Int, dropped: Int) {
        try await gate.withGate {
            try await self.feedGate.withGate {
                let evictedAt = self.cache.evictedAt(tenant: tenant)
                let result = try await self.reconcile(tenant: tenant, logger: nil, dropConfirmedTombstones: false, protecting: [])
                if result.complete, evictedAt != 0 { self.cache.markResident(tenant: tenant, evictedAt: evictedAt) }
                return (result.updated, result.dropped)
            }
        }
    }

    /// A page of products as the Database Service wrote it, read into cached products.
    static func page(from body: ByteBuffer) throws(DatabaseClientError) -> CachedPage {
        do { return try CachedPage(json: body) } catch { throw .invalidResponse("a page of products: \(error)") }
    }

    /// Loads every tenant's full catalog (the Database Service's tenants, `default`, and those with writes in
    /// the journal) over what the journal replayed, then marks the cache authoritative. After the database went
    /// back (`ChangeFeedRead.wentBack`), what it holds replaces what this replica holds even where older.
    func load(logger: Logger, databaseWentBack: Bool = false) async throws {
        // Taken first: a change committed during the load is either in the load or after this cursor.
        let head = try await database.changeHead()
        let tenants = Set([defaultTenant])
            .union(try await database.tenants())
            .union(journal.unconfirmedTenants)
        try await gate.withGate {
            try await self.feedGate.withGate {
                // Under a budget, shops are loaded in name order while they fit: one that does not is evicted as soon
                // as it goes over (read from the Database Service, and back by recency: `readmitRecentlyUsed`), and
                // the next is tried in the room left; shops already loaded stay.
                var loadedTenants: Set<String> = []
                for tenant in tenants.sorted() {
                    let evictedAt = self.cache.evictedAt(tenant: tenant)
                    let result = try await self.reconcile(
                        tenant: tenant, logger: logger, dropConfirmedTombstones: true, protecting: loadedTenants,
                        databaseWentBack: databaseWentBack)
                    guard result.complete else { continue }
                    if evictedAt != 0 { self.cache.markResident(tenant: tenant, evictedAt: evictedAt) }
                    loadedTenants.insert(tenant)
                }
            }
        }
        feed.loaded(through: head)
        loaded.store(true, ordering: .releasing)
    }

    // MARK: Change feed

    /// The Database Service's changes after `cursor`, waiting up to `wait` for one, or why they cannot follow it.
    func changes(after cursor: ChangeCursor, wait: Duration) async throws(DatabaseClientError) -> ChangeFeedRead {
        try await database.changes(after: cursor, limit: 1000, wait: wait)
    }

    /// Applies stored changes to the cache by version: older or repeated ones change nothing. Catching up on
    /// changes a full load already reflects, only deletes are applied (they may remove writes replayed from
    /// the journal that lost to them), so that no reader sees an old state come back for a moment.
    ///
    /// A product is read (into its cached form, its JSON kept as sent) only when the cache does not hold that
    /// version or a newer one already, or holds that version with other bytes (a clash the Database Service
    /// settled): this replica's own writes come back through the feed, and decoding them cost a tenth of its CPU
    /// under a stream of writes. A product that cannot be read fails the page, which the
    /// follower asks for again.
    func apply(_ changes: [Change], deletesOnly: Bool) async throws -> Int {
        var decoded: [(tenant: String, id: String, change: ProductChange)] = []
        decoded.reserveCapacity(changes.count)
        for change in changes {
            switch change.op {
            case .delete:
                decoded.append((change.tenant, change.id, .delete(version: change.version)))
            case .upsert:
                if deletesOnly || !cache.needsFeedProduct(tenant: change.tenant, id: change.id, version: change.version, json: change.encodedProduct) {
                    continue
                }
                let product: CachedProduct
                if let value = change.product {
                    product = CachedProduct(value)
                } else if let encoded = change.encodedProduct {
                    product = try CachedProduct(json: encoded)
                } else {
                    throw JSONSyntaxError(description: "the upsert of \(change.id) has no product")
                }
                decoded.append((change.tenant, product.id, .put(product)))
            }
        }
        return try await feedGate.withGate { [decoded] in
            decoded.reduce(0) { count, item in
                let applied = self.cache.apply(.feed(id: item.id, item.change, deletesOnly: deletesOnly), tenant: item.tenant)
                return count + (applied.put + applied.removed > 0 ? 1 : 0)
            }
        }
    }

    /// The cursor of the newest change now.
    func changeHead() async throws(DatabaseClientError) -> ChangeCursor { try await database.changeHead() }

    /// Asks the Database Service for this replica's writer number.
    func registerWriter(replicaID: String, preferred: Int64?) async throws(DatabaseClientError) -> Int64 {
        try await database.writerNode(replicaID: replicaID, preferred: preferred)
    }

    /// What reconciling a tenant came to: products added or replaced, and dropped; not `complete` when the tenant
    /// did not fit in the cache's budget (it is then evicted).
    struct Reconciled {
        var updated = 0
        var dropped = 0
        var complete = true
    }

    /// Makes the tenant's cache match the Database Service's catalog, read page by page in id order: each page
    /// goes into the cache, and what the Database Service lacks in its range of ids is dropped, while the next
    /// page is parsed and the one after asked for, so both services work at once. Under a budget, colder
    /// tenants (never those in `protecting`) are evicted to make room after each page; when that is not enough,
    /// the tenant itself is evicted and the reconciliation stops.
    func reconcile(
        tenant: String, logger: Logger?, dropConfirmedTombstones: Bool, protecting: Set<String>, databaseWentBack: Bool = false
    ) async throws -> Reconciled {
        let database = database
        @Sendable func fetch(after cursor: String?) async throws -> ByteBuffer {
            try await database.listProductsJSON(
                tenant: tenant, query: ProductQuery(limit: Self.pageSize, cursor: cursor.map(ProductQuery.Cursor.startingAfter)))
        }
        if dropConfirmedTombstones {
            cache.apply(.reloadBegan(isPending: { self.journal.isUnconfirmed(tenant: tenant, id: $0) }), tenant: tenant)
        }
        var result = Reconciled()
        var loaded = 0
        // Where the last page taken ended: each page reconciles the ids after it, through its own last one.
        var takenThrough: String?
        func take(_ page: CachedPage) {
            let through = page.hasMore ? page.products.last?.id : nil
            let (updated, dropped) = cache.reconcilePage(
                tenant: tenant, page.products, after: takenThrough, through: through, databaseWentBack: databaseWentBack
            ) {
                self.journal.isUnconfirmed(tenant: tenant, id: $0)
            }
            result.updated += updated
            result.dropped += dropped
            loaded += page.products.count
            takenThrough = through
        }
        // Three pages at a time: the next one is fetched (from where this one ends, read from its last bytes) while
        // this one is parsed and the one before goes into the cache.
        var body: ByteBuffer? = try await fetch(after: nil)
        var parsed: CachedPage?
        func takeParsed() -> Bool {
            guard let previous = parsed else { return true }
            take(previous)
            parsed = nil
            guard fitsBudget(loading: tenant, protecting: protecting, logger: logger) else { return false }
            if let logger, loaded % 50_000 < Self.pageSize {
                logger.info("loading catalog", metadata: ["tenant": "\(tenant)", "loaded": "\(loaded)"])
            }
            return true
        }
        while let current = body {
            let tail = CachedPage.tail(of: current)
            let parsedFirst = tail == nil ? try Self.page(from: current) : nil
            guard let (lastID, hasMore) = tail ?? parsedFirst.map({ ($0.products.last?.id, $0.hasMore) }), hasMore, let lastID else {
                // The last page (a small shop's only one): nothing to fetch meanwhile.
                guard takeParsed() else { return Reconciled(updated: result.updated, dropped: result.dropped, complete: false) }
                parsed = try parsedFirst ?? Self.page(from: current)
                break
            }
            async let next = fetch(after: lastID)
            async let parsing = parsedFirst ?? Self.page(from: current)
            guard takeParsed() else {
                _ = try? await (next, parsing)
                return Reconciled(updated: result.updated, dropped: result.dropped, complete: false)
            }
            let page = try await parsing
            guard page.products.last?.id == lastID, page.hasMore else {
                throw DatabaseClientError.invalidResponse("a page of products ends unlike its last bytes say")
            }
            parsed = page
            body = try await next
        }
        if !takeParsed() { result.complete = false }
        return result
    }

    // MARK: The memory budget

    /// After a page of `tenant` went into the cache: whether the cache is within its budget, evicting colder
    /// tenants (not `tenant`, not `protecting`) if need be; if it is still over, evicts `tenant` itself.
    func fitsBudget(loading tenant: String, protecting: Set<String>, logger: Logger?) -> Bool {
        guard cacheBudget != nil else { return true }
        if enforceBudget(protecting: protecting.union([tenant]), logger: logger) { return true }
        _ = cache.evict(tenant: tenant, unconfirmed: journal.unconfirmedProducts)
        Self.evictions.increment()
        logger?.notice("a shop's catalog does not fit in the cache budget; its reads go to the Database Service", metadata: ["tenant": "\(tenant)"])
        return false
    }

    /// Evicts the least recently used tenants (never those in `protecting`) until the cache's estimate is within
    /// its budget: resident ones first, then evicted ones holding what reads brought in since. Returns whether it
    /// is within it.
    @discardableResult
    func enforceBudget(protecting: Set<String> = [], logger: Logger?) -> Bool {
        guard let budget = cacheBudget else { return true }
        let residency = cache.residency()
        var total = residency.reduce(0) { $0 + $1.bytes }
        guard total > budget else { return true }
        let order = residency.sorted { ($0.evicted ? 1 : 0, $0.lastUsed) < ($1.evicted ? 1 : 0, $1.lastUsed) }
        for entry in order where !protecting.contains(entry.tenant) && entry.bytes > 0 {
            let (evicted, freed) = cache.evict(tenant: entry.tenant, unconfirmed: journal.unconfirmedProducts)
            guard evicted else { continue }
            total -= freed
            Self.evictions.increment()
            logger?.notice(
                "shop evicted from the cache under its budget; its reads go to the Database Service",
                metadata: ["tenant": "\(entry.tenant)", "freed_bytes": "\(freed)", "cache_bytes": "\(total)", "budget_bytes": "\(budget)"])
            if total <= budget { return true }
        }
        return total <= budget
    }

    /// Brings back the most recently used evicted tenant that was used since its eviction, when its last known
    /// size fits the budget with the room that evicting tenants used less recently than it makes; one at a time,
    /// at most every `readmissionInterval`. Returns the tenant brought back.
    @discardableResult
    func readmitRecentlyUsed(logger: Logger?) async throws -> String? {
        guard let budget = cacheBudget, isLoaded else { return nil }
        if let last = lastReadmission.withLock({ $0 }), ContinuousClock.now - last < readmissionInterval { return nil }
        let residency = cache.residency()
        let candidates = residency.filter { $0.evicted && $0.lastUsed > $0.evictedAt && $0.residentBytes <= budget }
        guard let candidate = candidates.max(by: { $0.lastUsed < $1.lastUsed }) else { return nil }
        var room = budget - residency.reduce(0) { $0 + $1.bytes }
        let colder = residency.filter { !$0.evicted && $0.lastUsed < candidate.lastUsed }.sorted { $0.lastUsed < $1.lastUsed }
        guard room + colder.reduce(0, { $0 + $1.bytes }) >= candidate.residentBytes else { return nil }
        lastReadmission.withLock { $0 = .now }
        for cold in colder where room < candidate.residentBytes {
            let (evicted, freed) = cache.evict(tenant: cold.tenant, unconfirmed: journal.unconfirmedProducts)
            guard evicted else { continue }
            room += freed
            Self.evictions.increment()
            logger?.notice(
                "shop evicted from the cache to make room for one used more recently",
                metadata: ["tenant": "\(cold.tenant)", "for_tenant": "\(candidate.tenant)", "freed_bytes": "\(freed)"])
        }
        let hotter = Set(residency.lazy.filter { $0.lastUsed >= candidate.lastUsed && !$0.evicted }.map(\.tenant))
        let result = try await gate.withGate {
            try await self.feedGate.withGate {
                try await self.reconcile(tenant: candidate.tenant, logger: nil, dropConfirmedTombstones: false, protecting: hotter)
            }
        }
        guard result.complete, cache.markResident(tenant: candidate.tenant, evictedAt: candidate.evictedAt) else { return nil }
        logger?.notice("shop brought back into the cache", metadata: ["tenant": "\(candidate.tenant)", "products": "\(result.updated)"])
        return candidate.tenant
    }

    /// Shops evicted from the cache now.
    var evictedTenantCount: Int { cache.residency().lazy.filter(\.evicted).count }

    static let evictions = Counter(label: "products_cache_evictions")
}
