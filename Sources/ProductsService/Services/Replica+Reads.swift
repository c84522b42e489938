import Foundation
import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import Shared
import Synchronization

/// Reads, and making a shop's cache match the Database Service on demand.
extension Replica {
    // MARK: Reads

    /// A product from the cache, else from the Database Service (then cached); one just created on another
    /// replica is waited for (see `awaitingRecent`).
    func product(tenant: String, id: String) async throws -> CachedProduct {
        func find(askDatabase: Bool) async throws -> CachedProduct? {
            if let cached = cache.get(tenant: tenant, id: id) { return cached }
            if cache.isVisiblyDeleted(tenant: tenant, id: id) { throw productNotFound }
            guard askDatabase else { return nil }
            let asked = ContinuousClock.now
            guard let product = try await databaseProduct(tenant: tenant, id: id) else { return nil }
            let cached = CachedProduct(product)
            cache.apply(.fetched(id: id, .stored(cached), since: asked), tenant: tenant)
            return cached
        }
        if let found = try await find(askDatabase: true) { return found }
        if let found = try await awaitingRecent(id: id, find) { return found }
        throw productNotFound
    }

    /// One page of a listing: the products in creation order, and whether more match in the direction of paging.
    ///
    /// Once loaded the cache holds the whole catalog and answers alone. Before that, the Database Service is
    /// asked with the same query, and its answer is merged with what the cache decides (writes and deletes
    /// replayed from the journal or made since start).
    func list(tenant: String, query: ProductQuery) async throws -> (products: [CachedProduct], hasMore: Bool) {
        var query = query
        if let category = query.category, query.categorySubtree == nil { query.categorySubtree = try await subtree(tenant: tenant, category: category) }
        if isAuthoritative(tenant: tenant) { return await cache.listing.list(tenant: tenant, query: query) }
        do {
            for _ in 0..<3 {
                // An eviction between reading what the cache decides and listing it could leave out what it
                // dropped: then the page is made again.
                let evictedAt = cache.evictedAt(tenant: tenant)
                let page = try await listMerged(tenant: tenant, query: query)
                if cache.evictedAt(tenant: tenant) == evictedAt { return page }
            }
            throw APIError.serviceUnavailable("cache_busy", "This shop's cache kept changing while the page was read; retry")
        } catch let error as DatabaseClientError {
            if isAuthoritative(tenant: tenant) { return await cache.listing.list(tenant: tenant, query: query) }
            throw APIError.serviceUnavailable("database_unavailable", "\(notCachedReason(tenant)) and the Database Service is unreachable: \(error)")
        }
    }

    /// A storefront search, from the shop's search index: only a replica that holds the shop's whole catalog can
    /// count exactly, so one still loading it, or that evicted it, answers 503 (and uses it, so it comes back).
    func search(tenant: String, query: SearchQuery) async throws -> (SearchOutcome, [CachedProduct]) {
        guard isAuthoritative(tenant: tenant) else {
            let tick = cache.tick()
            cache.withExistingShop(tenant) { $0.lastUsed = tick }
            throw APIError.serviceUnavailable(
                "search_unavailable", "\(notCachedReason(tenant)); search answers once this replica holds the shop's whole catalog")
        }
        var categories: [String]?
        if let asked = query.categories {
            var subtrees = Set<String>()
            for category in asked { subtrees.formUnion(try await subtree(tenant: tenant, category: category)) }
            categories = subtrees.sorted()
        }
        return try await cache.searches.search(tenant: tenant, query: query, categories: categories)
    }

    /// A category's id and its descendants', sorted, as the Database Service keeps the tree (none when it has no
    /// such category): what `?category=` lists.
    func subtree(tenant: String, category: String) async throws -> [String] {
        let answer = try await Forwarding.send(database, .get, .categories(subpath: "/" + category + "/subtree", query: nil), tenant: tenant, body: nil)
        guard answer.status == 200 else {
            if answer.status == 404 { return [] }
            throw APIError.serviceUnavailable("database_unavailable", "The Database Service could not walk the category tree (status \(answer.status))")
        }
        do { return try JSONDecoder().decode([String].self, from: Data(buffer: answer.body)).sorted() } catch {
            throw APIError.serviceUnavailable("database_unavailable", "The Database Service's category tree was not a list of ids: \(error)")
        }
    }

    func listMerged(tenant: String, query: ProductQuery) async throws -> (products: [CachedProduct], hasMore: Bool) {
        let backwards = if case .endingBefore = query.cursor { true } else { false }
        let wanted = query.limit + 1
        // The Database Service's matches the cache does not decide, in paging order, until `wanted` or its end.
        var fromDatabase: [CachedProduct] = []
        var pageQuery = query
        pageQuery.limit = min(ListLimit.range.upperBound, wanted)
        while true {
            let page = try await Self.databasePage(database, tenant: tenant, query: pageQuery)
            let ordered = backwards ? page.products.reversed() : page.products
            let decided = cache.decided(tenant: tenant, ids: ordered.lazy.map(\.id))
            fromDatabase += ordered.lazy.filter { !decided.contains($0.id) }
            guard page.hasMore, fromDatabase.count < wanted, let last = ordered.last else { break }
            pageQuery.cursor = backwards ? .endingBefore(last.id) : .startingAfter(last.id)
        }
        var fromCache = query
        fromCache.limit = wanted
        let cached = await cache.listing.list(tenant: tenant, query: fromCache).products
        // Merge the two id-ordered lists; keep `wanted` from the cursor's side.
        var merged: [CachedProduct] = []
        for item in (cached + fromDatabase).sorted(by: { $0.id < $1.id }) {
            // A read-through may have cached a product after `decided` was taken: keep one, the newest.
            if let last = merged.last, last.id == item.id {
                if item.version > last.version { merged[merged.count - 1] = item }
                continue
            }
            merged.append(item)
        }
        if merged.count > wanted {
            merged = backwards ? Array(merged.suffix(wanted)) : Array(merged.prefix(wanted))
        }
        let hasMore = merged.count > query.limit
        if hasMore {
            if backwards { merged.removeFirst() } else { merged.removeLast() }
        }
        return (merged, hasMore)
    }

    /// A page of the tenant's products from the Database Service, kept as the JSON it sent.
    static func databasePage(
        _ database: any DatabaseServiceClient, tenant: String, query: ProductQuery
    ) async throws(DatabaseClientError) -> CachedPage {
        try Replication.page(from: try await database.listProductsJSON(tenant: tenant, query: query))
    }

    /// Why the cache cannot answer alone for a tenant.
    func notCachedReason(_ tenant: String) -> String {
        isLoaded ? "This shop's catalog is not in this replica's cache (--cache-budget)" : "The catalog is still loading"
    }

    /// The product as the Database Service holds it; when it cannot be asked, an authoritative cache means "absent".
    func databaseProduct(tenant: String, id: String) async throws -> Product? {
        do {
            return try await database.product(tenant: tenant, id: id)
        } catch {
            if isAuthoritative(tenant: tenant) { return nil }
            throw APIError.serviceUnavailable("database_unavailable", "\(notCachedReason(tenant)) and the Database Service is unreachable: \(error)")
        }
    }

    // MARK: Reconciliation

    /// Flushes pending writes, then makes the tenant's cache match the Database Service's full catalog.
    func sync(tenant: String, flushTimeout: Duration) async throws -> (updated: Int, dropped: Int) {
        try await flush(tenant: tenant, timeout: flushTimeout)
        do {
            return try await replication.resync(tenant: tenant)
        } catch let error as DatabaseClientError {
            throw APIError.serviceUnavailable("database_unavailable", "Could not read the catalog from the Database Service: \(error)")
        }
    }

    /// Waits until every write of `tenant` accepted before the call is confirmed by the Database Service; at once
    /// when the shop has none pending, whatever other shops' backlog.
    func flush(tenant: String, timeout: Duration) async throws(APIError) {
        guard let target = journal.newestUnconfirmed(tenant: tenant) else { return }
        let journal = journal
        guard (try? await withDeadline(timeout, { try await journal.waitUntilConfirmed(target) })) != nil else {
            throw APIError.serviceUnavailable(
                "database_unavailable",
                "Pending writes could not be flushed to the Database Service: \(worker.status.lastError ?? "timed out")")
        }
    }
}
