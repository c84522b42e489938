import Foundation
import Logging
import NIOCore
import Shared
import Synchronization

/// The Products Service's operations on the catalog: the cache answers, the journal makes writes durable,
/// the Database Service fills misses and is reconciled with.
final class Catalog: Sendable {
    let cache: CatalogCache
    let journal: Journal
    let database: any DatabaseServiceClient
    let worker: PersistenceWorker
    let gate: SyncGate
    let idempotency: IdempotencyStore
    let ids = ProductIDGenerator()
    private let loaded = Atomic<Bool>(false)

    /// Catalog pages asked of the Database Service when loading or reconciling.
    static let pageSize = 1000

    init(
        cache: CatalogCache, journal: Journal, database: any DatabaseServiceClient, worker: PersistenceWorker, gate: SyncGate,
        idempotency: IdempotencyStore
    ) {
        self.cache = cache
        self.idempotency = idempotency
        self.journal = journal
        self.database = database
        self.worker = worker
        self.gate = gate
    }

    /// True once the full catalog has been loaded from the Database Service: a cache miss is then authoritative.
    var isLoaded: Bool { loaded.load(ordering: .acquiring) }

    // MARK: Writes

    /// Creates a product: cached and journaled (with its idempotency record, if any), then acknowledged once
    /// the journal has it on disk.
    func create(tenant: String, _ input: ProductInput, idempotent: IdempotentRequest? = nil) async throws -> CachedProduct {
        let now = Timestamp.now()
        let product = Product(
            id: ids.next(), name: input.name, type: input.type, metadata: input.metadata,
            createdAt: now, updatedAt: now, version: 1)
        let cached = CachedProduct(product)
        let operation = WriteOperation.upsert(tenant: tenant, product: product)
        let record = idempotent.map { idempotency.record(for: $0, status: 201, product: cached) }
        let line = journalLine(operation, record)
        let ticket = try journaling {
            try cache.put(tenant: tenant, cached) {
                let ticket = try journal.append(operation, encoded: line)
                if let record { idempotency.journaled(record, sequence: ticket) }
                return ticket
            }
        }
        try await waitUntilDurable(ticket)
        if let record { idempotency.finish(record) }
        return cached
    }

    /// Updates a product (cached, or read through first) with `change`, at the next version, if `condition`
    /// (an `If-Match`) holds; journaled like a create.
    func update(
        tenant: String, id: String, condition: EntityTag.Condition?, idempotent: IdempotentRequest? = nil,
        change: (Product) throws(APIError) -> Product
    ) async throws -> CachedProduct {
        for _ in 0..<3 {
            if cache.get(tenant: tenant, id: id) == nil { _ = try await product(tenant: tenant, id: id) }
            let now = Timestamp.now()
            let outcome = try journaling {
                try cache.update(tenant: tenant, id: id) { current in
                    if let condition, !condition.matchesStrongly(current.etag) {
                        throw APIError.preconditionFailed(id: id, currentVersion: current.product.version)
                    }
                    var product = try change(current.product)
                    product.id = id
                    product.createdAt = current.product.createdAt
                    product.updatedAt = now
                    product.version = current.product.version + 1
                    let updated = CachedProduct(product)
                    let operation = WriteOperation.upsert(tenant: tenant, product: product)
                    let record = idempotent.map { idempotency.record(for: $0, status: 200, product: updated) }
                    let ticket = try journal.append(operation, encoded: journalLine(operation, record))
                    if let record { idempotency.journaled(record, sequence: ticket) }
                    return (updated, (ticket, record))
                }
            }
            // Not cached: deleted meanwhile, or the read-through was not cached because a delete raced it.
            guard let (updated, (ticket, record)) = outcome else { continue }
            try await waitUntilDurable(ticket)
            if let record { idempotency.finish(record) }
            return updated
        }
        if cache.isPendingDelete(tenant: tenant, id: id) { throw productNotFound }
        throw APIError.versionConflict("Product \(id) changed while being updated; retry")
    }

    /// Deletes a product, cached or found only in the Database Service, if `condition` (an `If-Match`) holds;
    /// returns the deleted product's name.
    func delete(tenant: String, id: String, condition: EntityTag.Condition? = nil) async throws -> String {
        let deletedAt = Timestamp.now()
        // A read-through may cache the product while we look it up; then the cached path applies.
        for _ in 0..<3 {
            let removed = try journaling {
                try cache.remove(tenant: tenant, id: id) { removed in
                    if let condition, !condition.matchesStrongly(removed.etag) {
                        throw APIError.preconditionFailed(id: id, currentVersion: removed.product.version)
                    }
                    let version = removed.product.version + 1
                    let operation = WriteOperation.delete(tenant: tenant, id: id, version: version, deletedAt: deletedAt)
                    return (try journal.append(operation, encoded: operation.json), version)
                }
            }
            if let (product, ticket) = removed {
                try await waitUntilDurable(ticket)
                return product.product.name
            }
            if cache.isPendingDelete(tenant: tenant, id: id) { throw productNotFound }
            guard let stored = try await databaseProduct(tenant: tenant, id: id) else { throw productNotFound }
            if let condition, !condition.matchesStrongly(EntityTag.product(id: id, version: stored.version)) {
                throw APIError.preconditionFailed(id: id, currentVersion: stored.version)
            }
            let operation = WriteOperation.delete(tenant: tenant, id: id, version: stored.version + 1, deletedAt: deletedAt)
            let ticket = try journaling {
                try cache.recordUncachedDelete(tenant: tenant, id: id, version: stored.version + 1) {
                    try journal.append(operation, encoded: operation.json)
                }
            }
            if let ticket {
                try await waitUntilDurable(ticket)
                return stored.name
            }
        }
        throw APIError.versionConflict("Product \(id) changed while being deleted; retry")
    }

    /// The journal line of a write: the operation, with the idempotency record of its request when there is one.
    private func journalLine(_ operation: WriteOperation, _ record: IdempotencyRecord?) -> ByteBuffer {
        var line = operation.json
        guard let record, let encoded = try? JSONCoding.encoder.encode(record) else { return line }
        line.moveWriterIndex(to: line.writerIndex - 1)  // the operation's closing brace
        line.writeString(#","idempotency":"#)
        line.writeBytes(encoded)
        line.writeInteger(UInt8(ascii: "}"))
        return line
    }

    // MARK: Reads

    /// A product from the cache, else from the Database Service (then cached).
    func product(tenant: String, id: String) async throws -> CachedProduct {
        if let cached = cache.get(tenant: tenant, id: id) { return cached }
        if cache.isPendingDelete(tenant: tenant, id: id) { throw productNotFound }
        let deletes = cache.deleteCount(tenant: tenant)
        guard let product = try await databaseProduct(tenant: tenant, id: id) else { throw productNotFound }
        let cached = CachedProduct(product)
        cache.putIfUnchanged(tenant: tenant, cached, deleteCount: deletes)
        return cached
    }

    /// One page of a listing: the products in creation order, and whether more match in the direction of paging.
    ///
    /// Once loaded the cache holds the whole catalog and answers alone. Before that, the Database Service is
    /// asked with the same query, and its answer is merged with what the cache decides (writes and deletes
    /// replayed from the journal or made since start).
    func list(tenant: String, query: ProductQuery) async throws -> (products: [CachedProduct], hasMore: Bool) {
        if isLoaded { return cache.list(tenant: tenant, query: query) }
        do {
            return try await listMerged(tenant: tenant, query: query)
        } catch let error as DatabaseClientError {
            if isLoaded { return cache.list(tenant: tenant, query: query) }
            throw APIError.serviceUnavailable(
                "database_unavailable", "The catalog is still loading and the Database Service is unreachable: \(error)")
        }
    }

    private func listMerged(tenant: String, query: ProductQuery) async throws -> (products: [CachedProduct], hasMore: Bool) {
        let backwards = if case .endingBefore = query.cursor { true } else { false }
        let wanted = query.limit + 1
        // The Database Service's matches the cache does not decide, in paging order, until `wanted` or its end.
        var fromDatabase: [CachedProduct] = []
        var pageQuery = query
        pageQuery.limit = min(ListLimit.range.upperBound, wanted)
        while true {
            let page = try await database.listProducts(tenant: tenant, query: pageQuery)
            let ordered = backwards ? page.products.reversed() : page.products
            let decided = cache.decided(tenant: tenant, ids: ordered.lazy.map(\.id))
            fromDatabase += ordered.lazy.filter { !decided.contains($0.id) }.map(CachedProduct.init)
            guard page.hasMore, fromDatabase.count < wanted, let last = ordered.last else { break }
            pageQuery.cursor = backwards ? .endingBefore(last.id) : .startingAfter(last.id)
        }
        var fromCache = query
        fromCache.limit = wanted
        let cached = cache.list(tenant: tenant, query: fromCache).products
        // Merge the two id-ordered lists; keep `wanted` from the cursor's side.
        var merged: [CachedProduct] = []
        for item in (cached + fromDatabase).sorted(by: { $0.product.id < $1.product.id }) {
            // A read-through may have cached a product after `decided` was taken: keep one, the newest.
            if let last = merged.last, last.product.id == item.product.id {
                if item.product.version > last.product.version { merged[merged.count - 1] = item }
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

    /// The product as the Database Service holds it; when it cannot be asked, an authoritative cache means "absent".
    private func databaseProduct(tenant: String, id: String) async throws -> Product? {
        do {
            return try await database.product(tenant: tenant, id: id)
        } catch {
            if isLoaded { return nil }
            throw APIError.serviceUnavailable(
                "database_unavailable", "The catalog is still loading and the Database Service is unreachable: \(error)")
        }
    }

    // MARK: Reconciliation

    /// Flushes pending writes, then makes the tenant's cache match the Database Service's full catalog.
    func sync(tenant: String, flushTimeout: Duration) async throws -> (updated: Int, dropped: Int) {
        try await worker.flush(timeout: flushTimeout)
        do {
            return try await gate.withGate {
                let products = try await self.fetchAll(tenant: tenant, logger: nil)
                return self.cache.reconcile(tenant: tenant, databaseProducts: products, pending: self.journal.unconfirmedOperations)
            }
        } catch let error as DatabaseClientError {
            throw APIError.serviceUnavailable("database_unavailable", "Could not read the catalog from the Database Service: \(error)")
        }
    }

    /// Loads every tenant's full catalog at start, over what the journal replayed, then marks the cache authoritative.
    func load(tenants: Set<String>, logger: Logger) async throws {
        try await gate.withGate {
            for tenant in tenants.sorted() {
                let products = try await self.fetchAll(tenant: tenant, logger: logger)
                self.cache.reconcile(tenant: tenant, databaseProducts: products, pending: self.journal.unconfirmedOperations)
            }
        }
        loaded.store(true, ordering: .releasing)
    }

    /// Every live product of a tenant, following `starting_after` through all pages.
    private func fetchAll(tenant: String, logger: Logger?) async throws(DatabaseClientError) -> [Product] {
        var products: [Product] = []
        var cursor: String?
        while true {
            let page = try await database.listProducts(
                tenant: tenant, query: ProductQuery(limit: Self.pageSize, cursor: cursor.map(ProductQuery.Cursor.startingAfter)))
            products += page.products
            if let logger, products.count % 50_000 < Self.pageSize, page.hasMore {
                logger.info("loading catalog", metadata: ["tenant": "\(tenant)", "loaded": "\(products.count)"])
            }
            guard page.hasMore, let last = page.products.last else { return products }
            cursor = last.id
        }
    }

    // MARK: Helpers

    private var productNotFound: APIError { .notFound("Product not found", param: "id") }

    private func journaling<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as JournalError { throw Self.unavailable(error) }
    }

    private func waitUntilDurable(_ ticket: UInt64) async throws {
        do { try await journal.waitUntilDurable(ticket) } catch let error as JournalError { throw Self.unavailable(error) }
    }

    private static func unavailable(_ error: JournalError) -> APIError {
        .serviceUnavailable("journal_unavailable", "Writes are refused: the journal cannot be written (\(error))")
    }
}
