import DequeModule
import Foundation
import NIOPosix
import Metrics
import NIOCore
import Shared
import Synchronization

/// The in-memory catalog: every tenant's products by id and in creation (id) order.
///
/// A write is **staged** while its journal record is not yet durable: later writes build on it, but readers
/// do not see it until `promote(through:)` makes it visible, and `discardStaged(after:)` drops it if the journal
/// fails. So no reader ever sees a write that could still be lost.
///
/// It also keeps a tombstone of each delete until the change feed brings it back, so that a read-through, a
/// reconciliation or an older change from the feed can never bring a deleted product back.
///
/// Each tenant's catalog has its own lock, so that no shop waits on another's; the map of tenants has one more,
/// held only to find or add a tenant. Locks are taken in the order tenant, then the staged queue (then the
/// journal's, inside a tenant's, for writes), never the other way.
final class CatalogCache: Sendable {
    private let tenants = Mutex<[String: TenantSlot]>([:])
    /// Writes journaled but not yet durable, in ticket order.
    private let stagedQueue = Mutex<Deque<StagedWrite>>([])
    /// Ticks on every use of a tenant, for eviction by recency.
    private let clock = Atomic<UInt64>(0)

    /// Products a listing copies out of the lock at a time: the longest any filter keeps others waiting.
    static let listChunk = 256

    /// A tenant's catalog and its lock.
    private final class TenantSlot: Sendable {
        let catalog = Mutex(TenantCatalog())
    }

    /// The tenant's slot; made when missing if `create`.
    private func slot(_ tenant: String, create: Bool) -> TenantSlot? {
        tenants.withLock { map in
            if let slot = map[tenant] { return slot }
            guard create else { return nil }
            let slot = TenantSlot()
            map[tenant] = slot
            return slot
        }
    }

    /// Runs `body` on the tenant's catalog under its lock, making the tenant when missing.
    private func withCatalog<T>(_ tenant: String, _ body: (inout TenantCatalog) throws -> T) rethrows -> T {
        try slot(tenant, create: true)!.catalog.withLock { catalog in try body(&catalog) }
    }

    /// Runs `body` on the tenant's catalog under its lock; nil when the cache does not know the tenant.
    private func withExistingCatalog<T>(_ tenant: String, _ body: (inout TenantCatalog) throws -> T) rethrows -> T? {
        guard let slot = slot(tenant, create: false) else { return nil }
        return try slot.catalog.withLock { catalog in try body(&catalog) }
    }

    /// Every tenant's slot, for the figures summed over tenants.
    private var allSlots: [(tenant: String, slot: TenantSlot)] {
        tenants.withLock { map in map.map { ($0.key, $0.value) } }
    }

    /// The next tick of the recency clock.
    private func tick() -> UInt64 { clock.wrappingAdd(1, ordering: .relaxed).newValue }

    /// Stages a write in the tenant's catalog (whose lock the caller holds) and queues it for `promote`.
    private func stage(_ write: StagedWrite, in catalog: inout TenantCatalog) {
        catalog.staged[write.id] = (write.ticket, write.change)
        catalog.lastUsed = tick()
        stagedQueue.withLock { queue in
            // Tickets come from the journal in order, but writers of different tenants reach here in any order.
            var index = queue.endIndex
            while index > queue.startIndex, queue[index - 1].ticket > write.ticket { index -= 1 }
            queue.insert(write, at: index)
        }
    }

    private struct StagedWrite {
        var ticket: UInt64
        var tenant: String
        var id: String
        var change: Change
    }

    /// A change the Database Service stored, for `applyStored`.
    typealias StoredChange = Change

    /// The newest state a write gave a product: its new version, or its deletion at a version.
    enum Change {
        case put(CachedProduct)
        case delete(version: Int64)

        var product: CachedProduct? {
            if case .put(let product) = self { product } else { nil }
        }
    }

    private struct TenantCatalog {
        var products: [String: CachedProduct] = [:]
        /// Ids in ascending order, which is creation order.
        var order: [String] = []
        /// Tombstones of this replica's deletes (id to the delete's version), kept until the change feed brings the
        /// delete back (or a newer change): until then a read-through, a reconciliation or an older change from
        /// the feed could show the product again. At most the deletes the feed has not yet caught up with.
        var pendingDeletes: [String: Int64] = [:]
        /// The newest staged change of each product that has one, and its journal ticket.
        var staged: [String: (ticket: UInt64, change: Change)] = [:]
        /// Counts deletes (and, while evicted, changes from the feed it did not apply), so that a read-through
        /// that raced with one does not cache its stale answer.
        var deleteCount: UInt64 = 0
        /// Trigrams of the names readers see, for `q`.
        var names = NameIndex()
        /// Products by creation time, for `created[...]`.
        var created = CreatedIndex()
        var jsonBytes = 0
        var productTypes: [String: Int] = [:]
        var hits = 0
        var misses = 0
        /// Evicted under the memory budget: the cache holds only the products with writes not yet confirmed, and
        /// those read or written since; misses and listings go to the Database Service (see `Catalog`).
        var evicted = false
        /// When the tenant was last used, on the cache's clock.
        var lastUsed: UInt64 = 0
        /// When it was evicted, on the cache's clock, and its size then: whether it fits again.
        var evictedAt: UInt64 = 0
        var residentBytes = 0
        /// The journal ticket of the last write made visible: an eviction checks no write came in while it looked.
        var lastPromotedTicket: UInt64 = 0

        /// Each product's allocation (its JSON and kept fields), its id, its dictionary and order entries, and,
        /// once built, its name index entries. Calibrated against process RSS at a million products of 267 bytes
        /// of JSON with names of about 40 characters: 477 bytes a product after the load, 336 more for the index.
        var approximateBytes: Int {
            jsonBytes * CatalogCache.bytesPerJSONByte + products.count * CatalogCache.bytesPerProduct
                + names.count * CatalogCache.bytesPerIndexedName
        }

        /// What a writer builds on: the staged change if there is one, else what readers see.
        func latest(_ id: String) -> CachedProduct? {
            if let staged = staged[id] { return staged.change.product }
            return products[id]
        }

        /// Whether a delete of this product is staged or waiting for the Database Service.
        func isDeleted(_ id: String) -> Bool {
            if let staged = staged[id] { return staged.change.product == nil }
            return pendingDeletes[id] != nil
        }

        mutating func put(_ cached: CachedProduct) {
            let id = cached.id
            let old = products.updateValue(cached, forKey: id)
            names.put(id: id, name: cached.name, oldName: old?.name)
            created.put(id: id, milliseconds: cached.createdAt, previous: old.map { $0.createdAt })
            if let old {
                jsonBytes -= old.jsonByteCount
                countType(old.type, -1)
            } else if let last = order.last, last > id {
                order.insert(id, at: order.insertionIndex(of: id))
            } else {
                order.append(id)
            }
            jsonBytes += cached.jsonByteCount
            countType(cached.type, 1)
        }

        mutating func remove(_ id: String) -> CachedProduct? {
            guard let old = products.removeValue(forKey: id) else { return nil }
            names.remove(id: id, name: old.name)
            created.remove(count: products.count)
            jsonBytes -= old.jsonByteCount
            countType(old.type, -1)
            let index = order.insertionIndex(of: id)
            if index < order.count, order[index] == id { order.remove(at: index) }
            return old
        }

        mutating func delete(_ id: String, version: Int64) {
            if let existing = products[id], existing.version >= version { return }
            _ = remove(id)
            pendingDeletes[id] = max(pendingDeletes[id] ?? 0, version)
            deleteCount &+= 1
        }

        private mutating func countType(_ type: String, _ delta: Int) {
            let count = productTypes[type, default: 0] + delta
            productTypes[type] = count == 0 ? nil : count
        }

        /// Adds the next products, in id order, to the name index being built; whether more remain.
        mutating func indexNextNames(limit: Int) -> Bool {
            guard case .some(let last) = names.buildPosition else { return false }
            var start = last.map { order.insertionIndex(of: $0) } ?? 0
            if let last, start < order.count, order[start] == last { start += 1 }
            let end = min(start + limit, order.count)
            let ids = order[start..<end]
            names.extend(
                with: ids.lazy.compactMap { [products] id in products[id].map { (id: id, name: $0.name) } }, through: ids.last ?? last,
                complete: end == order.count)
            return end < order.count
        }

        /// Copies up to `limit` products out, walking `ids` (sorted) in paging order from `position`.
        func chunk(of ids: [String], from position: ListPosition, limit: Int) -> [CachedProduct] {
            var chunk: [CachedProduct] = []
            chunk.reserveCapacity(limit)
            switch position {
            case .start:
                for id in ids {
                    if let cached = products[id] { chunk.append(cached) }
                    if chunk.count == limit { break }
                }
            case .after(let cursor):
                var index = ids.insertionIndex(of: cursor)
                if index < ids.count, ids[index] == cursor { index += 1 }
                for id in ids[index...] {
                    if let cached = products[id] { chunk.append(cached) }
                    if chunk.count == limit { break }
                }
            case .before(let cursor):
                for id in ids[..<ids.insertionIndex(of: cursor)].reversed() {
                    if let cached = products[id] { chunk.append(cached) }
                    if chunk.count == limit { break }
                }
            }
            return chunk
        }
    }

    private enum ListPosition: Sendable {
        case start
        case after(String)
        case before(String)
    }

    // MARK: Reads

    /// The product as readers see it, counting a hit or a miss.
    func get(tenant: String, id: String) -> CachedProduct? {
        let now = tick()
        let found = withCatalog(tenant) { catalog in
            let found = catalog.products[id]
            catalog.lastUsed = now
            if found == nil { catalog.misses += 1 } else { catalog.hits += 1 }
            return found
        }
        if found == nil { Self.misses.increment() } else { Self.hits.increment() }
        return found
    }

    /// The product as writers see it: with staged writes, and nil when deleted.
    func latest(tenant: String, id: String) -> CachedProduct? {
        withExistingCatalog(tenant) { $0.latest(id) } ?? nil
    }

    /// The products matching a query's filters from its cursor on, at most `limit` of them in creation (id) order,
    /// and whether more match in the direction of paging.
    ///
    /// The lock is held only to copy a chunk of products out, by the request's own task, and filters run outside
    /// it. A listing that needs more than its first chunk (a selective filter over a large catalog) filters the
    /// rest in the background scan pool: threads of the lowest priority, half the cores at most, so other
    /// requests keep their threads and their share of the CPU; those threads never hold the lock, which a thread
    /// the scheduler keeps waiting could otherwise hold for everyone. A page read across chunks sees each product
    /// once, as it was when its chunk was copied.
    func list(tenant: String, query: ProductQuery) async -> (products: [CachedProduct], hasMore: Bool) {
        let now = tick()
        withCatalog(tenant) { $0.lastUsed = now }
        return await list(tenant: tenant, query: query, where: nil)
    }

    /// `list` with the filters given as a predicate (tests pause in it), used when the query has filters;
    /// nil: the query's own.
    func list(
        tenant: String, query: ProductQuery, where matches: (@Sendable (CachedProduct) -> Bool)?
    ) async -> (products: [CachedProduct], hasMore: Bool) {
        if query.ids == nil, let needle = query.foldedSearch, let lists = await searchCandidates(tenant: tenant, needle: needle) {
            return await search(tenant: tenant, query: query, candidates: .slots(NameIndex.intersection(lists)), where: matches)
        }
        if query.ids == nil, let bounds = query.createdBounds, let ids = await createdCandidates(tenant: tenant, bounds: bounds) {
            return await search(tenant: tenant, query: query, candidates: .ids(ids), where: matches)
        }
        var scan = ListScan(tenant: tenant, query: query)
        scan.filter(scan.copy(from: self, chunks: 1), matches: matches)
        while !scan.isDone {
            // Chunks are copied out here, at the request's own priority, and filtered in the scan pool: a pool
            // thread, of the lowest priority, never holds the lock, so it can never keep others waiting on it
            // while the scheduler has put it aside.
            let copied = scan.copy(from: self, chunks: Self.chunksPerScanStep)
            let pending = scan
            if let filtered = await ScanPool.run({
                var scan = pending
                scan.filter(copied, matches: matches)
                return scan
            }) {
                scan = filtered
            } else {
                scan.filter(copied, matches: matches)
            }
        }
        return scan.takePage()
    }

    /// Chunks copied out per trip to the scan pool: fewer trips, each lock hold still one chunk.
    static let chunksPerScanStep = 4

    /// What an index hands a listing to check: name index slots, or ids.
    private enum Candidates: Sendable {
        case slots([UInt32])
        case ids([String])

        var count: Int {
            switch self {
            case .slots(let slots): slots.count
            case .ids(let ids): ids.count
            }
        }

        /// The cached products of the candidates in `range`.
        func products(_ range: Range<Int>, in catalog: TenantCatalog) -> [CachedProduct] {
            switch self {
            case .slots(let slots): slots[range].compactMap { slot in catalog.names.id(inSlot: slot).flatMap { catalog.products[$0] } }
            case .ids(let ids): ids[range].compactMap { catalog.products[$0] }
            }
        }
    }

    /// The ids of the products whose creation time may be within `bounds`, from the tenant's created index, which
    /// is built first when there is none (unless another listing is building it); nil when walking the catalog in
    /// order is the better plan: more than max(4,096, an eighth of the tenant's products) in range, as for `q`.
    private func createdCandidates(tenant: String, bounds: ClosedRange<Int64>) async -> [String]? {
        enum Plan { case ids([String]), walk, build }
        for _ in 0..<2 {
            let plan = withExistingCatalog(tenant) { catalog -> Plan in
                if let range = catalog.created.range(from: bounds.lowerBound, through: bounds.upperBound) {
                    guard range.count <= max(Self.indexedSearchMinimum, catalog.products.count / Self.indexedSearchFraction) else {
                        return .walk
                    }
                    return .ids(catalog.created.entries![range].map(\.id))
                }
                if catalog.created.isBuilding || catalog.products.count < Self.indexedSearchMinimum { return .walk }
                catalog.created.beginBuild()
                return .build
            } ?? .ids([])
            switch plan {
            case .ids(let ids): return ids
            case .walk: return nil
            case .build: await buildCreatedIndex(tenant: tenant)
            }
        }
        return nil
    }

    /// Builds a tenant's created index: pairs copied out a chunk per lock hold, sorted in the scan pool, then
    /// installed with the products put meanwhile merged in (one lock hold: a few milliseconds at a million).
    private func buildCreatedIndex(tenant: String) async {
        var pairs: [(milliseconds: Int64, id: String)] = []
        var position = ListPosition.start
        while true {
            let chunk = withExistingCatalog(tenant) { $0.chunk(of: $0.order, from: position, limit: Self.reconcileChunk) } ?? []
            for cached in chunk { if let milliseconds = cached.createdAt { pairs.append((milliseconds, cached.id)) } }
            guard chunk.count == Self.reconcileChunk, let last = chunk.last?.id else { break }
            position = .after(last)
        }
        let unsorted = pairs
        let sorted = await ScanPool.run { unsorted.sorted { ($0.milliseconds, $0.id) < ($1.milliseconds, $1.id) } }
        withExistingCatalog(tenant) { catalog in
            if let sorted { catalog.created.finishBuild(sorted) } else { catalog.created.cancelBuild() }
        }
    }

    /// The posting lists whose intersection holds every product a listing with `q` may find, copied out of the
    /// lock; nil when walking the catalog in order is the better plan (see `NameIndex.candidateLists`). The
    /// tenant's first such listing starts building its name index, and listings wait for the build (6.6 s at a
    /// million products, where a walk competing with it took 7.4 s), up to `nameIndexWait`; past it, they walk.
    private func searchCandidates(tenant: String, needle: String) async -> [[UInt32]]? {
        enum Plan { case lists([[UInt32]]?), build, wait }
        let deadline = ContinuousClock.now + Self.nameIndexWait
        while true {
            let plan = withExistingCatalog(tenant) { catalog -> Plan in
                switch catalog.names.coverage {
                case .none:
                    catalog.names.beginBuild()
                    return .build
                case .through:
                    return .wait
                case .all:
                    return .lists(catalog.names.candidateLists(
                        forFolded: needle, limit: max(Self.indexedSearchMinimum, catalog.products.count / Self.indexedSearchFraction)))
                }
            } ?? .lists([[]])
            switch plan {
            case .lists(let lists): return lists
            case .build: Task.detached { await self.buildNameIndex(tenant: tenant) }
            case .wait: break
            }
            guard ContinuousClock.now < deadline, (try? await Task.sleep(for: .milliseconds(5))) != nil else { return nil }
        }
    }

    /// How long a listing with `q` waits for its tenant's name index to be built before walking instead.
    static let nameIndexWait = Duration.seconds(20)

    /// Builds the tenant's name index, begun by `searchCandidates` (or a test): `nameIndexChunk` products per lock
    /// hold, in id order. Returns when it is complete.
    func buildNameIndex(tenant: String) async {
        while indexNextNames(tenant: tenant, limit: Self.nameIndexChunk) { await Task.yield() }
    }

    /// One step of `buildNameIndex` (beginning the build if need be): whether more products remain to index.
    func indexNextNames(tenant: String, limit: Int) -> Bool {
        withExistingCatalog(tenant) { catalog in
            catalog.names.beginBuild()
            return catalog.indexNextNames(limit: limit)
        } ?? false
    }

    /// Products the name index's build adds per lock hold: about 3 ms in a release build.
    static let nameIndexChunk = 512

    /// Whether the tenant's name index is complete and holds exactly these names (by id): the tests' check.
    func nameIndexHoldsExactly(tenant: String, _ names: [String: String]) -> Bool {
        withExistingCatalog(tenant) { $0.names.coverage == .all && $0.names.holdsExactly(names) } ?? false
    }

    /// A listing with `q` uses the name index when its rarest trigram is in at most this many names, or in at
    /// most this fraction (1/n) of the tenant's products: past that, matches are dense enough that walking the
    /// catalog in order fills a page sooner than checking every candidate.
    static let indexedSearchMinimum = 4096
    static let indexedSearchFraction = 8

    /// Checks every candidate against the query (copied out of the lock a chunk at a time, like a listing; in the
    /// background scan pool when there are many), then pages the matches in id order.
    private func search(
        tenant: String, query: ProductQuery, candidates: Candidates, where matches: (@Sendable (CachedProduct) -> Bool)?
    ) async -> (products: [CachedProduct], hasMore: Bool) {
        // As for walks: products are copied out of the lock here, a chunk per hold, and checked in the scan pool
        // when there are many, so that no low-priority thread ever holds the lock.
        var found: [CachedProduct] = []
        var start = 0
        while start < candidates.count {
            var copied: [CachedProduct] = []
            for _ in 0..<Self.chunksPerScanStep where start < candidates.count {
                let range = start..<min(start + Self.listChunk, candidates.count)
                start += Self.listChunk
                copied += withExistingCatalog(tenant) { catalog in candidates.products(range, in: catalog) } ?? []
            }
            let check = { @Sendable (copied: [CachedProduct]) -> [CachedProduct] in
                copied.filter { cached in
                    query.admitsByCursor(cached.id)
                        && (matches?(cached) ?? query.matches(cached))
                }
            }
            if candidates.count > Self.listChunk, let checked = await ScanPool.run({ [copied] in check(copied) }) {
                found += checked
            } else {
                found += check(copied)
            }
        }
        found.sort { $0.id < $1.id }
        // A slot freed and reused while the candidates were checked can name a product twice.
        var page: [CachedProduct] = []
        page.reserveCapacity(min(found.count, query.limit + 1))
        if case .endingBefore = query.cursor {
            for cached in found.reversed() where cached.id != page.last?.id {
                page.append(cached)
                if page.count > query.limit { break }
            }
            let hasMore = page.count > query.limit
            if hasMore { page.removeLast() }
            return (page.reversed(), hasMore)
        }
        for cached in found where cached.id != page.last?.id {
            page.append(cached)
            if page.count > query.limit { break }
        }
        let hasMore = page.count > query.limit
        if hasMore { page.removeLast() }
        return (page, hasMore)
    }

    /// A listing in progress: where it is in the tenant's ids, and the matches so far.
    private struct ListScan: Sendable {
        let tenant: String
        let query: ProductQuery
        let backwards: Bool
        /// Without filters every product copied is a match: one chunk of the page's size does.
        let chunkSize: Int
        var position: ListPosition
        var result: [CachedProduct] = []
        /// The copies reached the end of the tenant's ids.
        private var isExhausted = false
        private(set) var isDone = false

        init(tenant: String, query: ProductQuery) {
            self.tenant = tenant
            self.query = query
            backwards = if case .endingBefore = query.cursor { true } else { false }
            chunkSize = query.hasFilters ? CatalogCache.listChunk : query.limit + 1
            position =
                switch query.cursor {
                case nil: .start
                case .startingAfter(let cursor): .after(cursor)
                case .endingBefore(let cursor): .before(cursor)
                }
            result.reserveCapacity(min(query.limit + 1, 1024))
        }

        /// Copies up to `chunks` chunks out from where the scan is, one lock hold each, and moves on past them.
        mutating func copy(from cache: CatalogCache, chunks: Int) -> [CachedProduct] {
            var copied: [CachedProduct] = []
            for _ in 0..<chunks where !isExhausted {
                let (tenant, query, position, chunkSize) = (tenant, query, position, chunkSize)
                let chunk = cache.withExistingCatalog(tenant) { catalog in
                    catalog.chunk(of: query.ids ?? catalog.order, from: position, limit: chunkSize)
                } ?? []
                if copied.isEmpty { copied = chunk } else { copied += chunk }
                if chunk.count == chunkSize, let last = chunk.last?.id {
                    self.position = backwards ? .before(last) : .after(last)
                } else {
                    isExhausted = true
                }
            }
            return copied
        }

        /// Keeps the copied products that match, in paging order; done once the page is full or nothing is left.
        mutating func filter(_ copied: [CachedProduct], matches: ((CachedProduct) -> Bool)?) {
            if result.isEmpty, !query.hasFilters {
                result = copied  // a page without filters: every product copied is on it, at most limit + 1
            } else {
                for cached in copied where matches?(cached) ?? query.matches(cached) {
                    result.append(cached)
                    if result.count > query.limit { break }
                }
            }
            if isExhausted || result.count > query.limit { isDone = true }
        }

        /// Hands over the page, in creation order, and whether more match.
        mutating func takePage() -> (products: [CachedProduct], hasMore: Bool) {
            var products: [CachedProduct] = []
            swap(&products, &result)
            let hasMore = products.count > query.limit
            if hasMore { products.removeLast() }
            if backwards { products.reverse() }
            return (products, hasMore)
        }
    }

    /// Which of these ids the cache decides for: cached, or deleted and not yet confirmed.
    func decided(tenant: String, ids: some Sequence<String>) -> Set<String> {
        withExistingCatalog(tenant) { catalog in
            Set(ids.filter { catalog.products[$0] != nil || catalog.pendingDeletes[$0] != nil })
        } ?? []
    }

    /// Whether a delete of this product is staged or waiting for the Database Service.
    func isPendingDelete(tenant: String, id: String) -> Bool {
        withExistingCatalog(tenant) { $0.isDeleted(id) } ?? false
    }

    /// Whether readers are told this product is gone: its delete is durable and its tombstone kept.
    func isVisiblyDeleted(tenant: String, id: String) -> Bool {
        withExistingCatalog(tenant) { $0.pendingDeletes[id] != nil } ?? false
    }

    /// A token that changes whenever a product of the tenant is deleted.
    func deleteCount(tenant: String) -> UInt64 {
        withExistingCatalog(tenant) { $0.deleteCount } ?? 0
    }

    // MARK: Writes

    /// Stages a new product; `journal` records it in the same critical section, so that the journal holds the
    /// changes of each product in the order the cache saw them. Returns the journal's ticket.
    func stage(tenant: String, _ cached: CachedProduct, journal: () throws -> UInt64) rethrows -> UInt64 {
        try withCatalog(tenant) { catalog in
            let ticket = try journal()
            stage(StagedWrite(ticket: ticket, tenant: tenant, id: cached.id, change: .put(cached)), in: &catalog)
            return ticket
        }
    }

    /// Stages what `change` makes of the latest version of a product, in the critical section where `change`
    /// also journals it (returning the new version and its ticket). Returns nil, changing nothing, when the
    /// cache holds no such product.
    func stageUpdate<Result>(
        tenant: String, id: String, change: (_ current: CachedProduct) throws -> (CachedProduct, ticket: UInt64, Result)
    ) rethrows -> (CachedProduct, Result)? {
        try withCatalog(tenant) { catalog in
            guard let current = catalog.latest(id) else { return nil }
            let (updated, ticket, result) = try change(current)
            stage(StagedWrite(ticket: ticket, tenant: tenant, id: id, change: .put(updated)), in: &catalog)
            return (updated, result)
        }
    }

    /// Stages the delete of a cached product, in the critical section where `journal` records it (returning
    /// the delete's version and its ticket). Returns the product deleted and the ticket; nil, journaling nothing,
    /// when the product is not cached.
    func stageDelete(
        tenant: String, id: String, journal: (_ removed: CachedProduct) throws -> (version: Int64, ticket: UInt64)
    ) rethrows -> (removed: CachedProduct, ticket: UInt64)? {
        try withCatalog(tenant) { catalog in
            guard let current = catalog.latest(id) else { return nil }
            let (version, ticket) = try journal(current)
            stage(StagedWrite(ticket: ticket, tenant: tenant, id: id, change: .delete(version: version)), in: &catalog)
            return (current, ticket)
        }
    }

    /// Stages the delete of a product the cache does not hold (found only in the Database Service) unless it was
    /// cached, written or deleted meanwhile; `journal` records it. Returns the ticket; nil when it was.
    func stageUncachedDelete(tenant: String, id: String, version: Int64, journal: () throws -> UInt64) rethrows -> UInt64? {
        try withCatalog(tenant) { catalog in
            guard catalog.latest(id) == nil, !catalog.isDeleted(id) else { return nil }
            let ticket = try journal()
            stage(StagedWrite(ticket: ticket, tenant: tenant, id: id, change: .delete(version: version)), in: &catalog)
            return ticket
        }
    }

    /// Makes every staged write up to `ticket` visible to readers: the journal has them on disk.
    func promote(through ticket: UInt64) {
        let ready = stagedQueue.withLock { queue -> [StagedWrite] in
            var ready: [StagedWrite] = []
            while let first = queue.first, first.ticket <= ticket { ready.append(queue.removeFirst()) }
            return ready
        }
        // Each tenant's writes in ticket order, under its lock; a write of a product promoted after a newer one of
        // it (by another writer's promote) changes nothing, by version.
        var byTenant: [String: [StagedWrite]] = [:]
        for write in ready { byTenant[write.tenant, default: []].append(write) }
        for (tenant, writes) in byTenant {
            withCatalog(tenant) { catalog in
                for write in writes {
                    switch write.change {
                    case .put(let cached):
                        let id = cached.id
                        let newer = (catalog.products[id]?.version ?? 0) < cached.version
                            && (catalog.pendingDeletes[id] ?? 0) < cached.version
                        if newer { catalog.put(cached) }
                    case .delete(let version):
                        catalog.delete(write.id, version: version)
                    }
                    if catalog.staged[write.id]?.ticket == write.ticket { catalog.staged[write.id] = nil }
                    catalog.lastPromotedTicket = max(catalog.lastPromotedTicket, write.ticket)
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
        for write in lost {
            withExistingCatalog(write.tenant) { catalog in
                if catalog.staged[write.id]?.ticket == write.ticket { catalog.staged[write.id] = nil }
            }
        }
    }

    /// Caches a product read from the Database Service, unless a delete happened since `deleteCount` was taken
    /// or a newer version is already cached.
    func putIfUnchanged(tenant: String, _ cached: CachedProduct, deleteCount: UInt64) {
        withCatalog(tenant) { catalog in
            guard catalog.deleteCount == deleteCount, catalog.pendingDeletes[cached.id] == nil else { return }
            if let existing = catalog.products[cached.id], existing.version >= cached.version { return }
            catalog.put(cached)
        }
    }

    /// Drops a product if the cache holds exactly this version of it (a write refused for good);
    /// a later read goes to the Database Service for the state it does hold.
    func evict(tenant: String, id: String, version: Int64) {
        withExistingCatalog(tenant) { catalog in
            guard catalog.products[id]?.version == version else { return }
            _ = catalog.remove(id)
        }
    }

    /// Forgets a delete's tombstone when no change of the product can come back any more: the Database Service
    /// refused the delete for good (dead-lettered).
    func confirmDelete(tenant: String, id: String, version: Int64) {
        withExistingCatalog(tenant) { catalog in
            if let pending = catalog.pendingDeletes[id], pending <= version { catalog.pendingDeletes[id] = nil }
        }
    }

    /// Replays a journaled operation at start (it is durable): applies it if newer than what is cached.
    func replay(_ operation: WriteOperation) {
        withCatalog(operation.tenant) { catalog in
            let id = operation.productID
            if let existing = catalog.products[id], existing.version >= operation.version { return }
            if let deleted = catalog.pendingDeletes[id], deleted >= operation.version { return }
            switch operation {
            case .upsert(_, let product): catalog.put(CachedProduct(product))
            case .delete(_, _, let version, _): catalog.delete(id, version: version)
            }
        }
    }

    /// Applies a change the Database Service has stored (another replica's write, or the newer state behind a
    /// write of ours it found stale) if it is newer than what readers see. Returns whether it changed anything.
    @discardableResult
    func applyStored(_ operation: WriteOperation, deletesOnly: Bool = false) -> Bool {
        switch operation {
        case .upsert(let tenant, let product):
            applyStored(tenant: tenant, id: product.id, version: product.version, .put(CachedProduct(product)), deletesOnly: deletesOnly)
        case .delete(let tenant, let id, let version, _):
            applyStored(tenant: tenant, id: id, version: version, .delete(version: version), deletesOnly: deletesOnly)
        }
    }

    /// `applyStored` of a product already cached as JSON (from the change feed), or of a delete.
    @discardableResult
    func applyStored(tenant: String, id: String, version: Int64, _ change: StoredChange, deletesOnly: Bool = false) -> Bool {
        withCatalog(tenant) { catalog in
            if let existing = catalog.products[id], existing.version >= version { return false }
            if let tombstone = catalog.pendingDeletes[id] {
                if tombstone > version { return false }
                if tombstone == version {
                    // This replica's own delete, back from the Database Service: the tombstone has done its job.
                    if case .delete = change { catalog.pendingDeletes[id] = nil }
                    return false
                }
            }
            switch change {
            case .put(let cached):
                if deletesOnly { return false }
                // An evicted tenant keeps only what it holds up to date; the Database Service answers the rest. A
                // read-through that fetched an older state meanwhile sees the count move and does not cache it.
                if catalog.evicted && catalog.products[id] == nil {
                    catalog.deleteCount &+= 1
                    return false
                }
                catalog.pendingDeletes[id] = nil
                catalog.put(cached)
            case .delete:
                guard catalog.remove(id) != nil else {
                    if catalog.evicted {
                        // Nothing older comes from the feed for what an evicted tenant lacks; a read-through that
                        // raced the delete sees the count move.
                        catalog.deleteCount &+= 1
                        return false
                    }
                    // Not cached: keep the delete as a tombstone (until the next full load), so that an older
                    // state fetched meanwhile (a stale write's catch-up, a read-through) cannot bring it back.
                    catalog.pendingDeletes[id] = version
                    catalog.deleteCount &+= 1
                    return false
                }
                catalog.pendingDeletes[id] = nil
                catalog.deleteCount &+= 1
            }
            return true
        }
    }

    /// Whether the cache has the product at `version` or newer, or a delete at least that new.
    func holds(tenant: String, id: String, version: Int64) -> Bool {
        withExistingCatalog(tenant) { catalog in
            if let cached = catalog.products[id], cached.version >= version { return true }
            return catalog.pendingDeletes[id].map { $0 >= version } ?? false
        } ?? false
    }

    /// The version readers see of a product, nil when it is not cached.
    func visibleVersion(tenant: String, id: String) -> Int64? {
        withExistingCatalog(tenant) { $0.products[id]?.version } ?? nil
    }

    /// Makes the tenant's cache match the Database Service's full catalog, keeping what is still pending: the
    /// three steps below, for a catalog already read whole. Returns how many products were added or replaced,
    /// and how many dropped.
    ///
    /// `databaseProducts` is every live product the Database Service holds; `isPending` tells whether a product
    /// of the tenant has a write not yet confirmed by it. The caller guarantees no confirmation happens between
    /// the listing and the end of this call. A full load (`dropConfirmedTombstones`) also forgets the tombstones
    /// of deletes the Database Service has confirmed: the change feed resumes from where the load started, so no
    /// older change can follow.
    @discardableResult
    func reconcile(
        tenant: String, databaseProducts: [CachedProduct], dropConfirmedTombstones: Bool = false, isPending: (_ id: String) -> Bool
    ) -> (updated: Int, dropped: Int) {
        if dropConfirmedTombstones { self.dropConfirmedTombstones(tenant: tenant, isPending: isPending) }
        let updated = putNewer(tenant: tenant, databaseProducts[...])
        let dropped = dropMissing(tenant: tenant, inDatabase: Set(databaseProducts.lazy.map(\.id)), isPending: isPending)
        return (updated, dropped)
    }

    /// Reconciliation, first step of a full load: forgets the tombstones of deletes no pending write explains.
    func dropConfirmedTombstones(tenant: String, isPending: (_ id: String) -> Bool) {
        withExistingCatalog(tenant) { catalog in
            catalog.pendingDeletes = catalog.pendingDeletes.filter { isPending($0.key) }
        }
    }

    /// Reconciliation, second step, for each part of the Database Service's catalog as it is read: caches each
    /// product newer than what the cache holds and than its tombstone (so a write made meanwhile wins), a chunk
    /// per lock hold. Returns how many it added or replaced.
    func putNewer(tenant: String, _ products: ArraySlice<CachedProduct>) -> Int {
        var updated = 0
        var start = products.startIndex
        while start < products.endIndex {
            let chunk = products[start..<min(start + Self.reconcileChunk, products.endIndex)]
            start = chunk.endIndex
            updated += withCatalog(tenant) { catalog in
                var updated = 0
                for cached in chunk {
                    if let deleted = catalog.pendingDeletes[cached.id], deleted >= cached.version { continue }
                    if let existing = catalog.products[cached.id], existing.version >= cached.version { continue }
                    catalog.put(cached)
                    updated += 1
                }
                return updated
            }
        }
        return updated
    }

    /// Reconciliation of one page of the Database Service's catalog, pages read in id order: caches what is newer
    /// (as `putNewer`), then drops the cached products in the page's id range, after `after` (from the first when
    /// nil) through `through` (to the last when nil), that the page lacks and no pending write explains (as
    /// `dropMissing`, asking `isPending` under the lock). A full load needs no set of every id it read.
    func reconcilePage(
        tenant: String, _ products: [CachedProduct], after: String?, through: String?, isPending: (_ id: String) -> Bool
    ) -> (updated: Int, dropped: Int) {
        let updated = putNewer(tenant: tenant, products[...])
        let inPage = Set(products.lazy.map(\.id))
        let dropped = withExistingCatalog(tenant) { catalog in
            var lower = after.map { catalog.order.insertionIndex(of: $0) } ?? 0
            if let after, lower < catalog.order.count, catalog.order[lower] == after { lower += 1 }
            var upper = through.map { catalog.order.insertionIndex(of: $0) } ?? catalog.order.count
            if let through, upper < catalog.order.count, catalog.order[upper] == through { upper += 1 }
            guard lower < upper else { return 0 }
            let stale = catalog.order[lower..<upper].filter { !inPage.contains($0) && !isPending($0) }
            for id in stale { _ = catalog.remove(id) }
            return stale.count
        } ?? 0
        return (updated, dropped)
    }

    /// Reconciliation, last step, once the whole catalog was read: drops what the Database Service lacks and no
    /// pending write explains, `isPending` being asked inside the critical section (the order writes take their
    /// locks in, so a write is either seen by it or comes after). Returns how many it dropped.
    func dropMissing(tenant: String, inDatabase: Set<String>, isPending: (_ id: String) -> Bool) -> Int {
        withExistingCatalog(tenant) { catalog in
            let stale = catalog.order.filter { !inDatabase.contains($0) && !isPending($0) }
            for id in stale { _ = catalog.remove(id) }
            return stale.count
        } ?? 0
    }

    /// `reconcile` with decoded products.
    @discardableResult
    func reconcile(
        tenant: String, databaseProducts: [Product], dropConfirmedTombstones: Bool = false, isPending: (_ id: String) -> Bool
    ) -> (updated: Int, dropped: Int) {
        reconcile(
            tenant: tenant, databaseProducts: databaseProducts.map(CachedProduct.init), dropConfirmedTombstones: dropConfirmedTombstones,
            isPending: isPending)
    }

    /// Products a reconciliation puts in per lock hold: about a millisecond.
    static let reconcileChunk = 4096

    // MARK: The memory budget

    /// The cache's estimate of its memory: this many bytes per byte of JSON, plus this many per product, plus this
    /// many per product in a name index.
    static let bytesPerJSONByte = 1
    static let bytesPerProduct = 224
    static let bytesPerIndexedName = 336

    /// What the estimate counts for these products once cached (tests size budgets with it).
    static func approximateBytes(of products: [Product]) -> Int {
        products.reduce(0) { $0 + CachedProduct($1).jsonByteCount * bytesPerJSONByte + bytesPerProduct }
    }

    /// Whether the tenant was evicted under the memory budget: then a miss or a listing is not an answer.
    func isEvicted(tenant: String) -> Bool {
        withExistingCatalog(tenant) { $0.evicted } ?? false
    }

    /// Each tenant's approximate bytes, when it was last used, and whether it is evicted.
    func residency() -> [(tenant: String, bytes: Int, lastUsed: UInt64, evicted: Bool, evictedAt: UInt64, residentBytes: Int)] {
        allSlots.map { tenant, slot in
            let (bytes, lastUsed, evicted, evictedAt, residentBytes) = slot.catalog.withLock {
                ($0.approximateBytes, $0.lastUsed, $0.evicted, $0.evictedAt, $0.residentBytes)
            }
            return (tenant, bytes, lastUsed, evicted, evictedAt, residentBytes)
        }
    }

    /// Evicts a tenant: keeps only its products with writes staged or not yet confirmed (`unconfirmed`, the
    /// journal's, read under this lock so that every write is either in it or staged after it) and the
    /// tombstones of its unconfirmed deletes; everything else is dropped and read from the Database Service
    /// from now on. The products are checked outside the lock; a write made visible meanwhile makes it look
    /// again (false after three tries). A tenant the cache does not know yet is recorded as evicted. Returns
    /// whether it was evicted, and the bytes it freed.
    func evict(tenant: String, unconfirmed: () -> UnconfirmedProducts) -> (evicted: Bool, freed: Int) {
        for _ in 0..<3 {
            let (ids, pending, ticket) = withCatalog(tenant) { catalog in
                (catalog.order, unconfirmed(), catalog.lastPromotedTicket)
            }
            let keep = Set(ids.lazy.filter { pending.contains(tenant: tenant, id: $0) })
            let now = tick()
            let dropped = withCatalog(tenant) { catalog -> (TenantCatalog, kept: Int)? in
                guard catalog.lastPromotedTicket == ticket else { return nil }
                var kept = TenantCatalog()
                kept.evicted = true
                kept.lastUsed = catalog.lastUsed
                kept.evictedAt = now
                // An evicted tenant that was being loaded again keeps the larger figure: it did not fit at that size.
                kept.residentBytes = catalog.evicted ? max(catalog.residentBytes, catalog.approximateBytes) : catalog.approximateBytes
                kept.hits = catalog.hits
                kept.misses = catalog.misses
                kept.deleteCount = catalog.deleteCount
                kept.staged = catalog.staged
                kept.lastPromotedTicket = catalog.lastPromotedTicket
                kept.pendingDeletes = catalog.pendingDeletes.filter {
                    pending.contains(tenant: tenant, id: $0.key) || catalog.staged[$0.key] != nil
                }
                for id in keep.union(catalog.staged.keys) {
                    if let cached = catalog.products[id] { kept.put(cached) }
                }
                swap(&catalog, &kept)
                return (kept, catalog.approximateBytes)
            }
            // The dropped entries are freed here, outside the lock.
            if let (catalog, kept) = dropped { return (true, catalog.approximateBytes - kept) }
        }
        return (false, 0)
    }

    /// When the tenant was last evicted, on the cache's clock (0: never).
    func evictedAt(tenant: String) -> UInt64 {
        withExistingCatalog(tenant) { $0.evictedAt } ?? 0
    }

    /// Marks an evicted tenant resident again once a reconciliation has loaded its whole catalog, unless it was
    /// evicted again since `evictedAt` (then what it holds is partial). Returns whether it did.
    @discardableResult
    func markResident(tenant: String, evictedAt: UInt64) -> Bool {
        withExistingCatalog(tenant) { catalog in
            guard catalog.evictedAt == evictedAt else { return false }
            catalog.evicted = false
            return true
        } ?? false
    }

    /// Runs `body` while holding the tenant's lock: tests show that other tenants are not held up.
    func whileHoldingLock(of tenant: String, _ body: () -> Void) {
        withCatalog(tenant) { _ in body() }
    }

    // MARK: Statistics

    private static let hits = Counter(label: "products_cache_hits")
    private static let misses = Counter(label: "products_cache_misses")

    /// Products and approximate bytes across all tenants, for `/metrics`.
    var totals: (products: Int, approximateBytes: Int) {
        allSlots.reduce((0, 0)) { total, entry in
            let (products, bytes) = entry.slot.catalog.withLock { ($0.products.count, $0.approximateBytes) }
            return (total.0 + products, total.1 + bytes)
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
        withExistingCatalog(tenant) { catalog in
            Statistics(
                totalProducts: catalog.products.count, approximateBytes: catalog.approximateBytes, productTypes: catalog.productTypes,
                hits: catalog.hits, misses: catalog.misses)
        } ?? Statistics(totalProducts: 0, approximateBytes: 0, productTypes: [:], hits: 0, misses: 0)
    }
}

/// The threads long listings run on: half the cores (at least one), at a lower scheduling priority, so that
/// however many searches are asked at once, the other requests keep the rest of the machine.
enum ScanPool {
    private static let shared: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: max(1, System.coreCount / 2))
        pool.start()
        return pool
    }()

    /// Runs `body` on a scan thread at nice 19; nil when the pool is shut down.
    ///
    /// The waiting task is resumed from an event loop thread, never from the scan thread itself. Resuming a task
    /// enqueues it on Dispatch, which on Linux creates a worker thread from the enqueuing thread when it wants
    /// one, and a thread inherits its creator's nice value. Resumed from here, a Swift concurrency worker (and any
    /// process it later starts) would run at nice 19 for good; seen as test processes' children crawling.
    static func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T? {
        let loop = MultiThreadedEventLoopGroup.singleton.any()
        return await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
            shared.submit { state in
                guard case .active = state else {
                    loop.execute { continuation.resume(returning: nil) }
                    return
                }
                lowerCurrentThreadPriority()
                let result = body()
                loop.execute { continuation.resume(returning: result) }
            }
        }
    }

    /// Nice 19 for the calling thread (Linux keeps the nice value per thread): while request threads want the
    /// CPU the scheduler gives a scan little of it, and all of it when they do not. Measured at a million
    /// products (`bench/search-stall`): nice 10 left GET p99 at 2.7 to 3.2 times idle, nice 19 at 2.5.
    private static func lowerCurrentThreadPriority() {
        #if os(Linux)
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
        #endif
    }
}
