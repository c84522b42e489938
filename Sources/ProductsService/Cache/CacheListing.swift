import Shared

/// Listings and searches over the cache, and the indexes they build: products copied out of a shop's lock a chunk
/// at a time and filtered outside it.
struct CacheListing: Sendable {
    let cache: CatalogCache

    /// Where a listing starts in a shop's ids.
    enum ListPosition: Sendable {
        case start
        case after(String)
        case before(String)
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
        let now = cache.tick()
        cache.withShop(tenant) { $0.lastUsed = now }
        return await list(tenant: tenant, query: query, where: nil)
    }

    /// `list` with the filters given as a predicate (tests pause in it), used when the query has filters;
    /// nil: the query's own.
    func list(
        tenant: String, query: ProductQuery, where matches: (@Sendable (CachedProduct) -> Bool)?
    ) async -> (products: [CachedProduct], hasMore: Bool) {
        if let handle = query.handle {
            // At most one product holds a handle: the index names it.
            let owner = cache.handleOwner(tenant: tenant, handle: handle)
            return await search(tenant: tenant, query: query, candidates: .ids(owner.map { [$0] } ?? []), where: matches)
        }
        if let skus = query.skus {
            let owners = Set(skus.compactMap { cache.skuOwner(tenant: tenant, sku: $0) })
            return await search(tenant: tenant, query: query, candidates: .ids(owners.sorted()), where: matches)
        }
        if query.ids == nil, let needle = query.foldedSearch, let lists = await searchCandidates(tenant: tenant, needle: needle) {
            return await search(tenant: tenant, query: query, candidates: .slots(NameIndex.intersection(lists)), where: matches)
        }
        if query.ids == nil, let bounds = query.createdBounds, let ids = await createdCandidates(tenant: tenant, bounds: bounds) {
            return await search(tenant: tenant, query: query, candidates: .ids(ids), where: matches)
        }
        var scan = ListScan(tenant: tenant, query: query)
        scan.filter(scan.copy(from: cache, chunks: 1), matches: matches)
        while !scan.isDone {
            // Chunks are copied out here, at the request's own priority, and filtered in the scan pool: a pool
            // thread, of the lowest priority, never holds the lock, so it can never keep others waiting on it
            // while the scheduler has put it aside.
            let copied = scan.copy(from: cache, chunks: Self.chunksPerScanStep)
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

    /// Products an index build copies out per lock hold: about a millisecond.
    static let indexBuildChunk = 4096

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
        func products(_ range: Range<Int>, in replica: ShopState) -> [CachedProduct] {
            switch self {
            case .slots(let slots): slots[range].compactMap { slot in replica.names.id(inSlot: slot).flatMap { replica.products[$0] } }
            case .ids(let ids): ids[range].compactMap { replica.products[$0] }
            }
        }
    }

    /// The ids of the products whose creation time may be within `bounds`, from the tenant's created index, which
    /// is built first when there is none (unless another listing is building it); nil when walking the catalog in
    /// order is the better plan: more than max(4,096, an eighth of the tenant's products) in range, as for `q`.
    private func createdCandidates(tenant: String, bounds: ClosedRange<Int64>) async -> [String]? {
        enum Plan { case ids([String]), walk, build }
        for _ in 0..<2 {
            let plan = cache.withExistingShop(tenant) { replica -> Plan in
                if let range = replica.created.range(from: bounds.lowerBound, through: bounds.upperBound) {
                    guard range.count <= max(Self.indexedSearchMinimum, replica.products.count / Self.indexedSearchFraction) else {
                        return .walk
                    }
                    return .ids(replica.created.entries![range].map(\.id))
                }
                if replica.created.isBuilding || replica.products.count < Self.indexedSearchMinimum { return .walk }
                replica.created.beginBuild()
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
            let chunk = cache.withExistingShop(tenant) { $0.chunk(of: $0.order, from: position, limit: Self.indexBuildChunk) } ?? []
            for cached in chunk { if let milliseconds = cached.createdAt { pairs.append((milliseconds, cached.id)) } }
            guard chunk.count == Self.indexBuildChunk, let last = chunk.last?.id else { break }
            position = .after(last)
        }
        let unsorted = pairs
        let sorted = await ScanPool.run { unsorted.sorted { ($0.milliseconds, $0.id) < ($1.milliseconds, $1.id) } }
        cache.withExistingShop(tenant) { replica in
            if let sorted { replica.created.finishBuild(sorted) } else { replica.created.cancelBuild() }
        }
    }

    /// The posting lists whose intersection holds every product a listing with `q` may find, copied out of the
    /// lock; nil when walking the catalog in order is the better plan (see `NameIndex.candidateLists`). The
    /// tenant's first such listing starts building its name index, and listings wait for the build (6.6 s at a
    /// million products, where a walk competing with it took 7.4 s), up to the cache's `nameIndexWait`; past it, they walk.
    private func searchCandidates(tenant: String, needle: String) async -> [[UInt32]]? {
        enum Plan { case lists([[UInt32]]?), build, wait }
        let deadline = ContinuousClock.now + cache.nameIndexWait
        while true {
            let plan = cache.withExistingShop(tenant) { replica -> Plan in
                switch replica.names.coverage {
                case .none:
                    replica.names.beginBuild()
                    return .build
                case .through:
                    return .wait
                case .all:
                    return .lists(replica.names.candidateLists(
                        forFolded: needle, limit: max(Self.indexedSearchMinimum, replica.products.count / Self.indexedSearchFraction)))
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


    /// Builds the tenant's name index, begun by `searchCandidates` (or a test): `nameIndexChunk` products per lock
    /// hold, in id order. Returns when it is complete.
    func buildNameIndex(tenant: String) async {
        while indexNextNames(tenant: tenant, limit: Self.nameIndexChunk) { await Task.yield() }
    }

    /// One step of `buildNameIndex` (beginning the build if need be): whether more products remain to index.
    func indexNextNames(tenant: String, limit: Int) -> Bool {
        cache.withExistingShop(tenant) { replica in
            replica.names.beginBuild()
            return replica.indexNextNames(limit: limit)
        } ?? false
    }

    /// Products the name index's build adds per lock hold: about 3 ms in a release build.
    static let nameIndexChunk = 512

    /// Whether the tenant's name index is complete and holds exactly these names (by id): the tests' check.
    func nameIndexHoldsExactly(tenant: String, _ names: [String: String]) -> Bool {
        cache.withExistingShop(tenant) { $0.names.coverage == .all && $0.names.holdsExactly(names) } ?? false
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
                let range = start..<min(start + CatalogCache.listChunk, candidates.count)
                start += CatalogCache.listChunk
                copied += cache.withExistingShop(tenant) { replica in candidates.products(range, in: replica) } ?? []
            }
            let check = { @Sendable (copied: [CachedProduct]) -> [CachedProduct] in
                copied.filter { cached in
                    query.admitsByCursor(cached.id)
                        && (matches?(cached) ?? query.matches(cached))
                }
            }
            if candidates.count > CatalogCache.listChunk, let checked = await ScanPool.run({ [copied] in check(copied) }) {
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
                let chunk = cache.withExistingShop(tenant) { replica in
                    replica.chunk(of: query.ids ?? replica.order, from: position, limit: chunkSize)
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
}

extension ShopState {
    /// Adds the next products, in id order, to the name index being built; whether more remain.
    mutating func indexNextNames(limit: Int) -> Bool {
        guard case .some(let last) = names.coverage.buildPosition else { return false }
        let (ids, complete) = nextToIndex(after: last, limit: limit)
        names.extend(
            with: ids.lazy.compactMap { [products] id in products[id].map { (id: id, name: $0.name) } }, through: ids.last ?? last,
            complete: complete)
        return !complete
    }

    /// Adds the next products, in id order, to the search index being built; whether more remain.
    mutating func indexNextSearch(limit: Int) -> Bool {
        guard case .some(let last) = search.coverage.buildPosition else { return false }
        let (ids, complete) = nextToIndex(after: last, limit: limit)
        search.extend(with: ids.lazy.compactMap { [products] in products[$0] }, through: ids.last ?? last, complete: complete)
        return !complete
    }

    /// Copies up to `limit` products out, walking `ids` (sorted) in paging order from `position`.
    func chunk(of ids: [String], from position: CacheListing.ListPosition, limit: Int) -> [CachedProduct] {
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
