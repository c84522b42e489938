import DequeModule
import Shared

/// A product's newest state as one change leaves it: its new version, or its deletion at a version.
enum ProductChange: Sendable {
    case put(CachedProduct)
    case delete(version: Int64)

    var product: CachedProduct? {
        if case .put(let product) = self { product } else { nil }
    }

    var version: Int64 {
        switch self {
        case .put(let product): product.version
        case .delete(let version): version
        }
    }
}

/// What the Database Service was found to store for a product, by a request of this replica.
enum FetchedState: Sendable {
    /// A live product: a read-through's answer, a coordinated write's or a restore's result, an imported line.
    case stored(CachedProduct)
    /// Deleted at this version: a coordinated delete's result, or the newer delete behind a stale write.
    case deleted(version: Int64)
    /// No live product, while this replica showed `shownVersion`: that version is dropped if still shown.
    case absent(shownVersion: Int64)
}

/// A change to what a replica believes about a shop, named by where it came from.
enum ShopInput {
    /// A write of this replica, journaled but not yet on disk: writers build on it, readers do not see it.
    case staged(ticket: UInt64, id: String, ProductChange)
    /// A write of this replica whose journal record is on disk: readers see it, unless something newer is known.
    case durable(ticket: UInt64, id: String, ProductChange)
    /// A staged write the journal failed to keep: forgotten, never shown.
    case failed(ticket: UInt64, id: String)
    /// A write read back from the journal at start: durable, not yet confirmed by the Database Service.
    case replayed(id: String, ProductChange)
    /// A write of this replica the Database Service refused for good (dead-lettered): the product shown at
    /// exactly that version is dropped (reads ask the Database Service), a delete's tombstone forgotten.
    case refused(id: String, ProductChange)
    /// What the Database Service stores, found by a request of this replica that began at `since` (when it
    /// asked, or sent the write whose result this is).
    case fetched(id: String, FetchedState, since: ContinuousClock.Instant)
    /// A change the Database Service committed, from the change feed; `deletesOnly` while catching up on what a
    /// full load already reflects.
    case feed(id: String, ProductChange, deletesOnly: Bool)
    /// A full load begins (the feed then resumes from where it began): tombstones of deletes the Database Service
    /// has (every one but those `isPending` still explains) are forgotten.
    case reloadBegan(isPending: (_ id: String) -> Bool)
    /// A page of the Database Service's catalog, read in id order during a reload while the feed waits: what is
    /// newer goes in, and what it lacks in its id range (after `after` through `through`, open when nil) is
    /// dropped unless `isPending` explains it. From a database that went back (it lost changes this replica saw),
    /// what differs goes in even if older, unless `isPending` explains it or a write of it is staged.
    case reloadPage([CachedProduct], after: String?, through: String?, isPending: (_ id: String) -> Bool, databaseWentBack: Bool = false)
    /// Time passed with nothing else coming in: tombstones past their retention go, as after any input.
    case aged
}

/// What a replica believes about one shop, and the only code that changes it. Every change comes in as one
/// `ShopInput` and is decided by version and by origin: readers see only durable writes; a delete leaves a
/// tombstone, so no older state (from the feed, a reload or a late fetch) shows the product again; a fetched
/// state that began before a tombstone was forgotten is not trusted. No I/O, no lock and no clock of its own:
/// `CatalogCache` keeps each shop's state under its lock and passes the time in.
struct ShopState {
    /// How much a shop's tombstones may hold.
    struct Limits: Sendable {
        /// How long a tombstone of a confirmed delete is kept: longer than any request that fetches state.
        var tombstoneRetention: Duration = .seconds(600)
        /// The most a shop's unpinned tombstones may hold, by `Tombstones.bytesPerEntry`; past it the oldest go early.
        var tombstoneBytes: Int = 16 << 20
    }

    let limits: Limits
    private(set) var products: [String: CachedProduct] = [:]
    /// Ids in ascending order, which is creation order.
    private(set) var order: [String] = []
    /// The newest staged write of each product that has one, and its journal ticket.
    private(set) var staged: [String: (ticket: UInt64, change: ProductChange)] = [:]
    private(set) var tombstones = Tombstones()
    /// The latest time at which a forgotten tombstone was recorded, or a feed change was let go (an evicted shop
    /// keeps only what it holds): a fetched state asked no later than this may predate what was forgotten.
    private(set) var forgottenUpTo: ContinuousClock.Instant?
    /// Trigrams of the names readers see, for `q`.
    var names = NameIndex()
    /// Products by creation time, for `created[...]`.
    var created = CreatedIndex()
    /// Words, filters and facets of the products readers see, for `/products/search`.
    var search = SearchIndex()
    /// The products readers see by handle, for `?handle=` and for handles made from names.
    private(set) var handles: [String: String] = [:]
    /// The handles of staged products (not yet durable): taken as much as those readers see, so that two creates
    /// in one group commit never get the same made handle.
    private(set) var stagedHandles: [String: String] = [:]
    /// Handles made for creates being encoded, between choosing them and staging them (`reserveHandle`).
    private(set) var reservedHandles: [String: String] = [:]
    /// The products readers see by the SKUs of their variants, for `/variants?sku=`.
    private(set) var skus: [String: String] = [:]
    /// The suffix each handle base last got: the next product of the same name starts looking there, not at `-2`
    /// (a thousand "T-Shirt"s would otherwise each try every suffix before theirs).
    private(set) var handleSuffixes: [String: Int] = [:]
    private(set) var jsonBytes = 0
    private(set) var productTypes: [String: Int] = [:]
    var hits = 0
    var misses = 0
    /// Evicted under the memory budget: holds only the products with writes not yet confirmed and those read or
    /// written since; misses and listings go to the Database Service (see `Replica`).
    private(set) var evicted = false
    /// When the shop was last used, on the cache's clock.
    var lastUsed: UInt64 = 0
    /// When it was evicted, on the cache's clock, and its size then: whether it fits again.
    private(set) var evictedAt: UInt64 = 0
    private(set) var residentBytes = 0
    /// The journal ticket of the last write made visible: an eviction checks no write came in while it looked.
    private(set) var lastDurableTicket: UInt64 = 0

    init(limits: Limits = Limits()) { self.limits = limits }

    /// Each product's allocation (its JSON and kept fields), its id, its dictionary and order entries, and, once
    /// built, its name index entries; and the tombstones. Calibrated against process RSS at a million products of
    /// 267 bytes of JSON with names of about 40 characters: 477 bytes a product after the load, 336 more for the index.
    var approximateBytes: Int {
        jsonBytes * CatalogCache.bytesPerJSONByte + products.count * CatalogCache.bytesPerProduct
            + names.count * CatalogCache.bytesPerIndexedName + (handles.count + skus.count) * CatalogCache.bytesPerIndexedKey
            + tombstones.bytes + search.approximateBytes
    }

    /// What a writer builds on: the staged change if there is one, else what readers see.
    func latest(_ id: String) -> CachedProduct? {
        if let staged = staged[id] { return staged.change.product }
        return products[id]
    }

    /// Whether a delete of this product is staged or its tombstone kept.
    func isDeleted(_ id: String) -> Bool {
        if let staged = staged[id] { return staged.change.product == nil }
        return tombstones[id] != nil
    }

    /// Whether what the Database Service stores (a feed's change, a reload's product) replaces what this shop holds:
    /// a newer version, or the same version stored otherwise, where the Database Service settled a clash of a
    /// handle or SKU that this replica's write claimed (it keeps the version it was sent with).
    func supersedes(_ cached: CachedProduct) -> Bool {
        if let held = products[cached.id], held.version == cached.version { return !held.hasSameJSON(as: cached) }
        return !holds(cached.id, version: cached.version)
    }

    /// Whether what readers see of the product is not `cached`, byte for byte.
    func differs(_ cached: CachedProduct) -> Bool {
        products[cached.id].map { !$0.hasSameJSON(as: cached) } ?? true
    }

    /// Whether this shop knows the product at `version` or newer, or a delete at least that new.
    func holds(_ id: String, version: Int64) -> Bool {
        if let cached = products[id], cached.version >= version { return true }
        return tombstones[id].map { $0.version >= version } ?? false
    }

    /// The product's own handle if it is `base` or `base-N`; else `base` if no other product readers see holds it,
    /// else the first free `base-N` from the suffix the base last got (a suffix freed since is not reused).
    mutating func freeHandle(base: String, id: String) -> String {
        if let own = products[id]?.handle, own == base || (own.hasPrefix(base + "-") && Int(own.dropFirst(base.count + 1)) != nil) {
            return own
        }
        if handleHolder(base, other: id) != nil {
            var candidate = max(2, handleSuffixes[base] ?? 2)
            while handleHolder(VariantRules.handle(base, candidate: candidate), other: id) != nil { candidate += 1 }
            handleSuffixes[base] = candidate
            return VariantRules.handle(base, candidate: candidate)
        }
        return base
    }

    /// The product other than `id` that holds `handle`, as readers see it or staged.
    func handleHolder(_ handle: String, other id: String) -> String? {
        if let owner = handles[handle], owner != id { return owner }
        if let owner = stagedHandles[handle], owner != id { return owner }
        if let owner = reservedHandles[handle], owner != id { return owner }
        return nil
    }

    /// Holds a handle made for a create until `releaseHandle`, which the create calls once it is staged (or failed).
    mutating func reserveHandle(_ handle: String, for id: String) { reservedHandles[handle] = id }

    mutating func releaseHandle(_ handle: String, for id: String) {
        if reservedHandles[handle] == id { reservedHandles[handle] = nil }
    }

    // MARK: The one door

    /// Applies one change; returns how many products readers now see differently (put or removed).
    @discardableResult
    mutating func apply(_ input: ShopInput, at now: ContinuousClock.Instant) -> (put: Int, removed: Int) {
        defer { expireTombstones(at: now) }
        switch input {
        case .staged(let ticket, let id, let change):
            unstage(id, ticket: nil)
            staged[id] = (ticket, change)
            if let handle = change.product?.handle, !handle.isEmpty { stagedHandles[handle] = id }
            return (0, 0)
        case .durable(let ticket, let id, let change):
            defer {
                unstage(id, ticket: ticket)
                lastDurableTicket = max(lastDurableTicket, ticket)
            }
            return own(id, change, at: now)
        case .failed(let ticket, let id):
            unstage(id, ticket: ticket)
            return (0, 0)
        case .replayed(let id, let change):
            return own(id, change, at: now)
        case .refused(let id, .put(let product)):
            guard products[id]?.version == product.version else { return (0, 0) }
            return (0, remove(id) == nil ? 0 : 1)
        case .refused(let id, .delete(let version)):
            if let tombstone = tombstones[id], tombstone.version <= version { forget(tombstones.remove(id)) }
            return (0, 0)
        case .fetched(let id, let state, let since):
            return fetched(id, state, since: since, at: now)
        case .feed(let id, let change, let deletesOnly):
            return committed(id, change, deletesOnly: deletesOnly, at: now)
        case .aged:
            return (0, 0)
        case .reloadBegan(let isPending):
            for (id, tombstone) in tombstones.entries where !tombstone.pinned || !isPending(id) { forget(tombstones.remove(id)) }
            return (0, 0)
        case .reloadPage(let page, let after, let through, let isPending, let databaseWentBack):
            var put = 0
            for cached in page where supersedes(cached) || (databaseWentBack && differs(cached) && staged[cached.id] == nil && !isPending(cached.id)) {
                insert(cached)
                put += 1
            }
            let inPage = Set(page.lazy.map(\.id))
            var lower = after.map { order.insertionIndex(of: $0) } ?? 0
            if let after, lower < order.count, order[lower] == after { lower += 1 }
            var upper = through.map { order.insertionIndex(of: $0) } ?? order.count
            if let through, upper < order.count, order[upper] == through { upper += 1 }
            guard lower < upper else { return (put, 0) }
            let stale = order[lower..<upper].filter { !inPage.contains($0) && !isPending($0) }
            for id in stale { _ = remove(id) }
            return (put, stale.count)
        }
    }

    /// Drops the product's staged write (only the one with `ticket`, when given) and the handle it held.
    private mutating func unstage(_ id: String, ticket: UInt64?) {
        guard let current = staged[id], ticket == nil || current.ticket == ticket else { return }
        if let handle = current.change.product?.handle, stagedHandles[handle] == id { stagedHandles[handle] = nil }
        staged[id] = nil
    }

    /// A write of this replica made visible (durable, or replayed from the journal): newer than what is known wins.
    private mutating func own(_ id: String, _ change: ProductChange, at now: ContinuousClock.Instant) -> (put: Int, removed: Int) {
        guard !holds(id, version: change.version) else { return (0, 0) }
        switch change {
        case .put(let cached):
            tombstones.remove(id)
            insert(cached)
            return (1, 0)
        case .delete(let version):
            let removed = remove(id) == nil ? 0 : 1
            tombstones.record(id, version: version, pinned: true, at: now)
            return (0, removed)
        }
    }

    /// A change the Database Service committed, from the feed.
    private mutating func committed(
        _ id: String, _ change: ProductChange, deletesOnly: Bool, at now: ContinuousClock.Instant
    ) -> (put: Int, removed: Int) {
        if let tombstone = tombstones[id], tombstone.version == change.version, case .delete = change {
            // This replica's own delete, back from the Database Service: its tombstone now ages like any other.
            tombstones.unpin(id, at: now)
            return (0, 0)
        }
        if case .put(let cached) = change { guard supersedes(cached) else { return (0, 0) } } else {
            guard !holds(id, version: change.version) else { return (0, 0) }
        }
        switch change {
        case .put(let cached):
            guard !deletesOnly else { return (0, 0) }
            // An evicted shop keeps only what it holds up to date; the Database Service answers for the rest.
            guard !evicted || products[id] != nil else {
                forgottenUpTo = now
                return (0, 0)
            }
            tombstones.remove(id)
            insert(cached)
            return (1, 0)
        case .delete(let version):
            guard let _ = remove(id) else {
                if evicted { forgottenUpTo = now } else { tombstones.record(id, version: version, pinned: false, at: now) }
                return (0, 0)
            }
            tombstones.record(id, version: version, pinned: false, at: now)
            return (0, 1)
        }
    }

    /// What a request of this replica found stored: taken by version, unless it began before something it may
    /// predate was forgotten.
    private mutating func fetched(
        _ id: String, _ state: FetchedState, since: ContinuousClock.Instant, at now: ContinuousClock.Instant
    ) -> (put: Int, removed: Int) {
        switch state {
        case .stored(let cached):
            if let forgottenUpTo, since <= forgottenUpTo { return (0, 0) }
            guard !holds(id, version: cached.version) else { return (0, 0) }
            tombstones.remove(id)
            insert(cached)
            return (1, 0)
        case .deleted(let version):
            guard !holds(id, version: version) else { return (0, 0) }
            let removed = remove(id) == nil ? 0 : 1
            tombstones.record(id, version: version, pinned: false, at: now)
            return (0, removed)
        case .absent(let shownVersion):
            guard products[id]?.version == shownVersion else { return (0, 0) }
            return (0, remove(id) == nil ? 0 : 1)
        }
    }

    // MARK: Eviction

    /// Evicts the shop under the memory budget: keeps only the products `keep` names or with staged writes, and
    /// the tombstones of unconfirmed deletes. Returns the state it replaced, to be freed outside the lock.
    mutating func evict(keeping keep: (_ id: String) -> Bool, at now: ContinuousClock.Instant, tick: UInt64) -> ShopState {
        var kept = ShopState(limits: limits)
        kept.evicted = true
        kept.lastUsed = lastUsed
        kept.evictedAt = tick
        // A shop evicted while being loaded again keeps the larger figure: it did not fit at that size.
        kept.residentBytes = evicted ? max(residentBytes, approximateBytes) : approximateBytes
        kept.hits = hits
        kept.misses = misses
        kept.staged = staged
        kept.stagedHandles = stagedHandles
        kept.reservedHandles = reservedHandles
        kept.lastDurableTicket = lastDurableTicket
        kept.forgottenUpTo = forgottenUpTo
        for (id, tombstone) in tombstones.entries {
            if tombstone.pinned || staged[id] != nil {
                kept.tombstones.record(id, version: tombstone.version, pinned: true, at: now)
            } else {
                kept.forget(tombstone)
            }
        }
        for id in order where keep(id) || staged[id] != nil {
            if let cached = products[id] { kept.insert(cached) }
        }
        swap(&self, &kept)
        return kept
    }

    /// Marks an evicted shop resident again once a reload has brought its whole catalog, unless it was evicted
    /// again since `evictedAt`. Returns whether it did.
    mutating func markResident(evictedAt: UInt64) -> Bool {
        guard self.evictedAt == evictedAt else { return false }
        evicted = false
        return true
    }

    // MARK: Products and tombstones

    private mutating func insert(_ cached: CachedProduct) {
        let id = cached.id
        let old = products.updateValue(cached, forKey: id)
        names.put(id: id, name: cached.name, oldName: old?.name)
        created.put(id: id, milliseconds: cached.createdAt, previous: old.map { $0.createdAt })
        search.put(cached)
        indexKeys(id, old: old, new: cached)
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

    private mutating func remove(_ id: String) -> CachedProduct? {
        guard let old = products.removeValue(forKey: id) else { return nil }
        names.remove(id: id, name: old.name)
        created.remove(count: products.count)
        search.remove(id: id)
        indexKeys(id, old: old, new: nil)
        jsonBytes -= old.jsonByteCount
        countType(old.type, -1)
        let index = order.insertionIndex(of: id)
        if index < order.count, order[index] == id { order.remove(at: index) }
        return old
    }

    /// Moves a product's handle and SKUs in their indexes; an entry is removed only by the product it names. The
    /// Database Service settles clashes between replicas, and the feed brings what it stored.
    private mutating func indexKeys(_ id: String, old: CachedProduct?, new: CachedProduct?) {
        let (oldHandle, newHandle) = (old?.handle ?? "", new?.handle ?? "")
        if oldHandle != newHandle {
            if !oldHandle.isEmpty, handles[oldHandle] == id { handles[oldHandle] = nil }
            if !newHandle.isEmpty { handles[newHandle] = id }
        }
        // The same SKUs held by the same variants (a price change): nothing to move.
        if let old, let new, old.skuDigest == new.skuDigest { return }
        let (oldSKUs, newSKUs) = (old?.skus ?? [], new?.skus ?? [])
        guard !oldSKUs.isEmpty || !newSKUs.isEmpty else { return }
        let kept = Set(newSKUs.lazy.map(\.sku))
        for (sku, _) in oldSKUs where !kept.contains(sku) && skus[sku] == id { skus[sku] = nil }
        for (sku, _) in newSKUs { skus[sku] = id }
    }

    private mutating func countType(_ type: String, _ delta: Int) {
        let count = productTypes[type, default: 0] + delta
        productTypes[type] = count == 0 ? nil : count
    }

    /// Notes a tombstone forgotten: fetched states asked before it was recorded are no longer trusted.
    private mutating func forget(_ tombstone: Tombstones.Entry?) {
        guard let tombstone else { return }
        forgottenUpTo = max(forgottenUpTo ?? tombstone.recordedAt, tombstone.recordedAt)
    }

    /// Forgets the tombstones past their retention, then the oldest while over the byte limit.
    private mutating func expireTombstones(at now: ContinuousClock.Instant) {
        while let oldest = tombstones.oldestUnpinned,
              now - oldest.recordedAt > limits.tombstoneRetention || tombstones.unpinnedBytes > limits.tombstoneBytes
        {
            forget(tombstones.remove(oldest.id))
        }
    }
}

/// Deleted products' versions, so that no older state shows them again: pinned while this replica's own delete
/// is not yet confirmed, then kept in the order they age.
struct Tombstones {
    struct Entry: Sendable {
        var version: Int64
        var pinned: Bool
        var recordedAt: ContinuousClock.Instant
    }

    private(set) var entries: [String: Entry] = [:]
    /// Unpinned tombstones in the order they were recorded; an entry replaced or removed since is skipped.
    private var aging = Deque<(id: String, version: Int64)>()
    private(set) var bytes = 0
    private(set) var unpinnedBytes = 0

    /// What one tombstone costs, beyond its id's bytes: its dictionary entry and place in the aging queue.
    static let bytesPerEntry = 96

    subscript(id: String) -> Entry? { entries[id] }

    var count: Int { entries.count }

    mutating func record(_ id: String, version: Int64, pinned: Bool, at now: ContinuousClock.Instant) {
        remove(id)
        entries[id] = Entry(version: version, pinned: pinned, recordedAt: now)
        let cost = id.utf8.count + Self.bytesPerEntry
        bytes += cost
        if !pinned {
            unpinnedBytes += cost
            aging.append((id, version))
        }
    }

    /// Starts a pinned tombstone's ageing, from now.
    mutating func unpin(_ id: String, at now: ContinuousClock.Instant) {
        guard let entry = entries[id], entry.pinned else { return }
        record(id, version: entry.version, pinned: false, at: now)
    }

    @discardableResult
    mutating func remove(_ id: String) -> Entry? {
        guard let entry = entries.removeValue(forKey: id) else { return nil }
        let cost = id.utf8.count + Self.bytesPerEntry
        bytes -= cost
        if !entry.pinned { unpinnedBytes -= cost }
        return entry
    }

    /// The oldest unpinned tombstone, dropping queue entries that no longer match one.
    var oldestUnpinned: (id: String, recordedAt: ContinuousClock.Instant)? {
        mutating get {
            while let first = aging.first {
                if let entry = entries[first.id], !entry.pinned, entry.version == first.version { return (first.id, entry.recordedAt) }
                aging.removeFirst()
            }
            return nil
        }
    }
}
