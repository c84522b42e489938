import Metrics
import NIOCore
import Shared
import Synchronization

/// A product as cached: the value and its JSON, encoded once per change so reads never re-encode.
struct CachedProduct: Sendable {
    var product: Product
    var json: ByteBuffer
    /// `created_at` in milliseconds since the Unix epoch, for the `created[...]` filters.
    var createdAt: Int64?
    /// The strong entity tag of this version, made once like the JSON.
    var etag: String

    init(_ product: Product) {
        self.product = product
        self.json = product.json
        self.createdAt = Timestamp.epochMilliseconds(product.createdAt)
        self.etag = EntityTag.product(id: product.id, version: product.version)
    }
}

/// The in-memory catalog: every tenant's products by id and in creation (id) order.
///
/// It also remembers deletes that the Database Service has not confirmed yet, so that a read-through
/// or a reconciliation can never bring a deleted product back.
final class CatalogCache: Sendable {
    private let state = Mutex(State())

    private struct State {
        var tenants: [String: TenantCatalog] = [:]
    }

    private struct TenantCatalog {
        var products: [String: CachedProduct] = [:]
        /// Ids in ascending order, which is creation order.
        var order: [String] = []
        /// Unconfirmed deletes: id to the version of the delete.
        var pendingDeletes: [String: Int64] = [:]
        /// Counts deletes, so a read-through that raced with one does not cache its stale answer.
        var deleteCount: UInt64 = 0
        var jsonBytes = 0
        var hits = 0
        var misses = 0

        /// The JSON buffer, the decoded value's strings and metadata (about twice the JSON again), and per-entry
        /// bookkeeping (dictionary slot, order array, buffer and string headers, the ETag). Calibrated against
        /// process RSS: 200,000 products with two metadata entries measured about 1.1 KB each, before the ETag.
        var approximateBytes: Int { jsonBytes * 3 + products.count * 464 }

        mutating func put(_ cached: CachedProduct) {
            let id = cached.product.id
            if let old = products.updateValue(cached, forKey: id) {
                jsonBytes -= old.json.readableBytes
            } else if let last = order.last, last > id {
                order.insert(id, at: order.insertionIndex(of: id))
            } else {
                order.append(id)
            }
            jsonBytes += cached.json.readableBytes
        }

        mutating func remove(_ id: String) -> CachedProduct? {
            guard let old = products.removeValue(forKey: id) else { return nil }
            jsonBytes -= old.json.readableBytes
            let index = order.insertionIndex(of: id)
            if index < order.count, order[index] == id { order.remove(at: index) }
            return old
        }
    }

    // MARK: Reads

    /// The cached product, counting a hit or a miss.
    func get(tenant: String, id: String) -> CachedProduct? {
        state.withLock { state in
            let found = state.tenants[tenant]?.products[id]
            if found == nil {
                state.tenants[tenant, default: TenantCatalog()].misses += 1
                Self.misses.increment()
            } else {
                state.tenants[tenant]?.hits += 1
                Self.hits.increment()
            }
            return found
        }
    }

    /// The products matching a query's filters from its cursor on, at most `limit` of them in creation (id) order,
    /// and whether more match in the direction of paging.
    func list(tenant: String, query: ProductQuery) -> (products: [CachedProduct], hasMore: Bool) {
        state.withLock { state in
            guard let catalog = state.tenants[tenant] else { return ([], false) }
            var result: [CachedProduct] = []
            result.reserveCapacity(min(query.limit + 1, catalog.products.count))
            func visit(_ id: String) -> Bool {
                if let cached = catalog.products[id], query.matches(cached.product, createdAt: cached.createdAt) {
                    result.append(cached)
                }
                return result.count <= query.limit
            }
            // With `ids`, walk those (sorted) instead of the whole catalog.
            let order = query.ids ?? catalog.order
            switch query.cursor {
            case nil:
                for id in order where !visit(id) { break }
            case .startingAfter(let cursor):
                var index = order.insertionIndex(of: cursor)
                if index < order.count, order[index] == cursor { index += 1 }
                for id in order[index...] where !visit(id) { break }
            case .endingBefore(let cursor):
                for id in order[..<order.insertionIndex(of: cursor)].reversed() where !visit(id) { break }
                result.reverse()
            }
            let hasMore = result.count > query.limit
            if hasMore {
                if case .endingBefore = query.cursor { result.removeFirst() } else { result.removeLast() }
            }
            return (result, hasMore)
        }
    }

    /// Which of these ids the cache decides for: cached, or deleted and not yet confirmed.
    func decided(tenant: String, ids: some Sequence<String>) -> Set<String> {
        state.withLock { state in
            guard let catalog = state.tenants[tenant] else { return [] }
            return Set(ids.filter { catalog.products[$0] != nil || catalog.pendingDeletes[$0] != nil })
        }
    }

    /// Whether a delete of this product is waiting for the Database Service.
    func isPendingDelete(tenant: String, id: String) -> Bool {
        state.withLock { $0.tenants[tenant]?.pendingDeletes[id] != nil }
    }

    /// A token that changes whenever a product of the tenant is deleted.
    func deleteCount(tenant: String) -> UInt64 {
        state.withLock { $0.tenants[tenant]?.deleteCount ?? 0 }
    }

    // MARK: Writes

    /// Stores a product and runs `record` (which journals the change) in the same critical section,
    /// so that the journal holds the changes of each product in the order the cache saw them.
    func put<Result>(tenant: String, _ cached: CachedProduct, record: () throws -> Result) rethrows -> Result {
        try state.withLock { state in
            let result = try record()
            state.tenants[tenant, default: TenantCatalog()].put(cached)
            return result
        }
    }

    /// Replaces a cached product with what `change` makes of it, in the critical section where `change` also
    /// journals it. Returns nil (changing nothing) when the product is not cached.
    func update<Result>(
        tenant: String, id: String, change: (_ current: CachedProduct) throws -> (CachedProduct, Result)
    ) rethrows -> (CachedProduct, Result)? {
        try state.withLock { state in
            guard let current = state.tenants[tenant]?.products[id] else { return nil }
            let (updated, result) = try change(current)
            state.tenants[tenant]?.put(updated)
            return (updated, result)
        }
    }

    /// Removes a product, remembers its delete until confirmed, and journals it in the same critical section.
    /// Returns nil (journaling nothing) when the product is not cached.
    func remove<Result>(
        tenant: String, id: String, record: (_ removed: CachedProduct) throws -> (Result, deleteVersion: Int64)
    ) rethrows -> (CachedProduct, Result)? {
        try state.withLock { state in
            guard let cached = state.tenants[tenant]?.products[id] else { return nil }
            let (result, version) = try record(cached)
            var catalog = state.tenants.removeValue(forKey: tenant) ?? TenantCatalog()
            _ = catalog.remove(id)
            catalog.pendingDeletes[id] = version
            catalog.deleteCount &+= 1
            state.tenants[tenant] = catalog
            return (cached, result)
        }
    }

    /// Journals the delete of a product the cache does not hold (found only in the Database Service),
    /// unless it was cached or deleted meanwhile. Returns nil when it was deleted meanwhile.
    func recordUncachedDelete<Result>(
        tenant: String, id: String, version: Int64, record: () throws -> Result
    ) rethrows -> Result? {
        try state.withLock { state in
            var catalog = state.tenants.removeValue(forKey: tenant) ?? TenantCatalog()
            defer { state.tenants[tenant] = catalog }
            guard catalog.pendingDeletes[id] == nil, catalog.products[id] == nil else { return nil }
            let result = try record()
            catalog.pendingDeletes[id] = version
            catalog.deleteCount &+= 1
            return result
        }
    }

    /// Caches a product read from the Database Service, unless a delete happened since `deleteCount` was taken
    /// or a newer version is already cached.
    func putIfUnchanged(tenant: String, _ cached: CachedProduct, deleteCount: UInt64) {
        state.withLock { state in
            let catalog = state.tenants[tenant]
            guard (catalog?.deleteCount ?? 0) == deleteCount, catalog?.pendingDeletes[cached.product.id] == nil else { return }
            if let existing = catalog?.products[cached.product.id], existing.product.version >= cached.product.version { return }
            state.tenants[tenant, default: TenantCatalog()].put(cached)
        }
    }

    /// Drops a product if the cache holds exactly this version of it (a write refused for good);
    /// a later read goes to the Database Service for the state it does hold.
    func evict(tenant: String, id: String, version: Int64) {
        state.withLock { state in
            guard state.tenants[tenant]?.products[id]?.product.version == version else { return }
            _ = state.tenants[tenant]?.remove(id)
        }
    }

    /// Forgets a pending delete once the Database Service has stored it (or a newer state).
    func confirmDelete(tenant: String, id: String, version: Int64) {
        state.withLock { state in
            if let pending = state.tenants[tenant]?.pendingDeletes[id], pending <= version {
                state.tenants[tenant]?.pendingDeletes[id] = nil
            }
        }
    }

    /// Replays a journaled operation at start: applies it if newer than what is cached.
    func replay(_ operation: WriteOperation) {
        state.withLock { state in
            var catalog = state.tenants.removeValue(forKey: operation.tenant) ?? TenantCatalog()
            defer { state.tenants[operation.tenant] = catalog }
            let id = operation.productID
            if let existing = catalog.products[id], existing.product.version >= operation.version { return }
            if let deleted = catalog.pendingDeletes[id], deleted >= operation.version { return }
            switch operation {
            case .upsert(_, let product):
                catalog.put(CachedProduct(product))
            case .delete(_, _, let version, _):
                _ = catalog.remove(id)
                catalog.pendingDeletes[id] = version
                catalog.deleteCount &+= 1
            }
        }
    }

    /// Makes the tenant's cache match the Database Service's full catalog, keeping what is still pending.
    ///
    /// `databaseProducts` is every live product the Database Service holds; `pending` returns every operation
    /// not yet confirmed by it. It is read inside the cache's critical section, the order writes take their locks
    /// in, so a write is either in it or comes after the merge. The caller guarantees no confirmation happens
    /// between the listing and this call. Returns how many products were added or replaced, and how many dropped.
    @discardableResult
    func reconcile(tenant: String, databaseProducts: [Product], pending: () -> [WriteOperation]) -> (updated: Int, dropped: Int) {
        state.withLock { state in
            let pendingIDs = Set(pending().lazy.filter { $0.tenant == tenant }.map(\.productID))
            var catalog = state.tenants.removeValue(forKey: tenant) ?? TenantCatalog()
            defer { state.tenants[tenant] = catalog }
            var updated = 0
            var inDatabase = Set<String>(minimumCapacity: databaseProducts.count)
            for product in databaseProducts {
                inDatabase.insert(product.id)
                if let deleted = catalog.pendingDeletes[product.id], deleted >= product.version { continue }
                if let existing = catalog.products[product.id], existing.product.version >= product.version { continue }
                catalog.put(CachedProduct(product))
                updated += 1
            }
            let stale = catalog.order.filter { !inDatabase.contains($0) && !pendingIDs.contains($0) }
            for id in stale { _ = catalog.remove(id) }
            return (updated, stale.count)
        }
    }

    // MARK: Statistics

    private static let hits = Counter(label: "products_cache_hits")
    private static let misses = Counter(label: "products_cache_misses")

    /// Products and approximate bytes across all tenants, for `/metrics`.
    var totals: (products: Int, approximateBytes: Int) {
        state.withLock { state in
            state.tenants.values.reduce((0, 0)) { ($0.0 + $1.products.count, $0.1 + $1.approximateBytes) }
        }
    }

    struct Statistics: Sendable {
        var totalProducts: Int
        var approximateBytes: Int
        var productTypes: [String: Int]
        var hits: Int
        var misses: Int
    }

    func statistics(tenant: String) -> Statistics {
        state.withLock { state in
            let catalog = state.tenants[tenant] ?? TenantCatalog()
            var types: [String: Int] = [:]
            for cached in catalog.products.values { types[cached.product.type, default: 0] += 1 }
            return Statistics(
                totalProducts: catalog.products.count, approximateBytes: catalog.approximateBytes, productTypes: types,
                hits: catalog.hits, misses: catalog.misses)
        }
    }

    /// Products cached across all tenants.
    var count: Int {
        state.withLock { $0.tenants.values.reduce(0) { $0 + $1.products.count } }
    }
}
