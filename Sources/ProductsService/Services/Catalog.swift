import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Shared
import Synchronization

/// The Products Service's operations on the catalog: the cache answers, the journal makes writes durable,
/// the Database Service fills misses and is reconciled with. Controllers, the loader and metrics go through it;
/// its parts stay private.
final class Catalog: Sendable {
    private let cache: CatalogCache
    private let journal: Journal
    private let database: any DatabaseServiceClient
    private let worker: PersistenceWorker
    private let gate: SyncGate
    private let idempotency: IdempotencyStore
    private let ids = ProductIDGenerator()
    private let loaded = Atomic<Bool>(false)

    /// Catalog pages asked of the Database Service when loading or reconciling.
    static let pageSize = 1000

    /// What a catalog is made of, opened on a data directory: the journal replayed into the cache and the
    /// idempotency records restored. Tests keep the parts to look inside.
    struct Parts: Sendable {
        let cache: CatalogCache
        let journal: Journal
        let idempotency: IdempotencyStore
        let deadLetters: DeadLetterStore
        let database: any DatabaseServiceClient

        /// Opens the stores in `directory` (nil: memory only, `--journal off`).
        init(
            directory: String?, database: any DatabaseServiceClient, logger: Logger, segmentSize: Int = 16 << 20,
            beforeWrite: (@Sendable () -> Void)? = nil, sync: @escaping AppendOnlyFile.Sync = AppendOnlyFile.syncData
        ) throws {
            let idempotency = try IdempotencyStore(directory: directory)
            journal = try Journal(
                directory: directory.map { $0 + "/journal" }, segmentSize: segmentSize, logger: logger,
                beforeDropping: { try idempotency.file(through: $0) }, beforeWrite: beforeWrite, sync: sync)
            let recovered = journal.takeRecoveredRecords()
            idempotency.restore(recovered)
            self.idempotency = idempotency
            deadLetters = try DeadLetterStore(directory: directory)
            cache = CatalogCache()
            let pending = journal.unconfirmedOperations()
            for operation in pending { cache.replay(operation) }
            if !pending.isEmpty {
                logger.notice("replayed pending writes from the journal", metadata: ["operations": "\(pending.count)"])
            }
            self.database = database
        }
    }

    init(_ parts: Parts, persistence: PersistenceSettings, logger: Logger) {
        cache = parts.cache
        journal = parts.journal
        database = parts.database
        idempotency = parts.idempotency
        gate = SyncGate()
        worker = PersistenceWorker(
            journal: parts.journal, cache: parts.cache, database: parts.database, deadLetters: parts.deadLetters, gate: gate,
            settings: persistence, logger: logger)
    }

    /// The services that persist the catalog: the persistence worker, and (after it stops) the journal's closing.
    var services: [any Service] { [JournalCloser(journal: journal), worker] }

    /// True once the full catalog has been loaded from the Database Service: a cache miss is then authoritative.
    var isLoaded: Bool { loaded.load(ordering: .acquiring) }

    // MARK: Writes

    /// What a write answered: the product it wrote, or the first answer of an idempotent request retried.
    enum WriteResult: Sendable {
        case written(CachedProduct)
        case replayed(IdempotencyRecord)
    }

    /// Creates a product, durable once this returns.
    func create(tenant: String, _ input: ProductInput, idempotent: IdempotentRequest? = nil) async throws -> WriteResult {
        try await idempotently(idempotent, status: 201) { makeRecord in
            let now = Timestamp.now()
            let product = Product(
                id: ids.next(), name: input.name, type: input.type, metadata: input.metadata,
                createdAt: now, updatedAt: now, version: 1)
            let cached = CachedProduct(product)
            let record = makeRecord(cached)
            let ticket = try journaling {
                try cache.stage(tenant: tenant, cached) { try journal(.upsert(tenant: tenant, product: product), record) }
            }
            try await waitUntilDurable(ticket)
            return (cached, record)
        }
    }

    /// Updates a product (cached, or read through first) with `change`, at the next version, if `condition`
    /// (an `If-Match`) holds; journaled like a create.
    func update(
        tenant: String, id: String, condition: EntityTag.Condition?, idempotent: IdempotentRequest? = nil,
        change: (Product) throws(APIError) -> Product
    ) async throws -> WriteResult {
        try await idempotently(idempotent, status: 200) { makeRecord in
            for _ in 0..<3 {
                if cache.latest(tenant: tenant, id: id) == nil {
                    if cache.isPendingDelete(tenant: tenant, id: id) { throw productNotFound }
                    _ = try await product(tenant: tenant, id: id)
                }
                let now = Timestamp.now()
                let staged = try journaling {
                    try cache.stageUpdate(tenant: tenant, id: id) { current in
                        if let condition, !condition.matchesStrongly(current.etag) {
                            throw APIError.preconditionFailed(id: id, currentVersion: current.product.version)
                        }
                        var product = try change(current.product)
                        product.id = id
                        product.createdAt = current.product.createdAt
                        product.updatedAt = now
                        product.version = current.product.version + 1
                        let updated = CachedProduct(product)
                        let record = makeRecord(updated)
                        let ticket = try journal(.upsert(tenant: tenant, product: product), record)
                        return (updated, ticket, (ticket, record))
                    }
                }
                // Not cached: deleted meanwhile, or the read-through was not cached because a delete raced it.
                guard let (updated, (ticket, record)) = staged else { continue }
                try await waitUntilDurable(ticket)
                return (updated, record)
            }
            if cache.isPendingDelete(tenant: tenant, id: id) { throw productNotFound }
            throw APIError.versionConflict("Product \(id) changed while being updated; retry")
        }
    }

    /// Deletes a product, cached or found only in the Database Service, if `condition` (an `If-Match`) holds;
    /// returns the deleted product's name.
    func delete(tenant: String, id: String, condition: EntityTag.Condition? = nil) async throws -> String {
        let deletedAt = Timestamp.now()
        // A read-through may cache the product while we look it up; then the cached path applies.
        for _ in 0..<3 {
            let staged = try journaling {
                try cache.stageDelete(tenant: tenant, id: id) { current in
                    if let condition, !condition.matchesStrongly(current.etag) {
                        throw APIError.preconditionFailed(id: id, currentVersion: current.product.version)
                    }
                    let version = current.product.version + 1
                    return (version, try journal(.delete(tenant: tenant, id: id, version: version, deletedAt: deletedAt), nil))
                }
            }
            if let (removed, ticket) = staged {
                try await waitUntilDurable(ticket)
                return removed.product.name
            }
            if cache.isPendingDelete(tenant: tenant, id: id) { throw productNotFound }
            guard let stored = try await databaseProduct(tenant: tenant, id: id) else { throw productNotFound }
            if let condition, !condition.matchesStrongly(EntityTag.product(id: id, version: stored.version)) {
                throw APIError.preconditionFailed(id: id, currentVersion: stored.version)
            }
            let version = stored.version + 1
            let uncached = try journaling {
                try cache.stageUncachedDelete(tenant: tenant, id: id, version: version) {
                    try journal(.delete(tenant: tenant, id: id, version: version, deletedAt: deletedAt), nil)
                }
            }
            if let ticket = uncached {
                try await waitUntilDurable(ticket)
                return stored.name
            }
        }
        throw APIError.versionConflict("Product \(id) changed while being deleted; retry")
    }

    // MARK: Idempotency

    /// Runs a write at most once per `Idempotency-Key`, the one place where a key is begun, replayed, finished
    /// or abandoned. `write` gets the maker of the key's record, to journal it in the same line as the write,
    /// and returns the product written and that record.
    private func idempotently(
        _ request: IdempotentRequest?, status: Int,
        write: (_ makeRecord: (CachedProduct) -> IdempotencyRecord?) async throws -> (CachedProduct, IdempotencyRecord?)
    ) async throws -> WriteResult {
        guard let request else { return .written(try await write { _ in nil }.0) }
        if let record = try idempotency.begin(request) { return .replayed(record) }
        do {
            let (product, record) = try await write { product in
                self.idempotency.record(for: request, status: status, product: product)
            }
            if let record { idempotency.finish(record) }
            return .written(product)
        } catch {
            idempotency.abandon(request)
            throw error
        }
    }

    /// Journals a write with its idempotency record; call it in the cache's critical section. The record is
    /// queued for `idempotency.jsonl` in journal order.
    private func journal(_ operation: WriteOperation, _ record: IdempotencyRecord?) throws(JournalError) -> UInt64 {
        let ticket = try journal.append(JournalRecord(operation, idempotency: record))
        if let record { idempotency.journaled(record, sequence: ticket) }
        return ticket
    }

    // MARK: Reads

    /// A product from the cache, else from the Database Service (then cached).
    func product(tenant: String, id: String) async throws -> CachedProduct {
        if let cached = cache.get(tenant: tenant, id: id) { return cached }
        if cache.isVisiblyDeleted(tenant: tenant, id: id) { throw productNotFound }
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
        if isLoaded { return await cache.list(tenant: tenant, query: query) }
        do {
            return try await listMerged(tenant: tenant, query: query)
        } catch let error as DatabaseClientError {
            if isLoaded { return await cache.list(tenant: tenant, query: query) }
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
        let cached = await cache.list(tenant: tenant, query: fromCache).products
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
        try await flush(timeout: flushTimeout)
        do {
            return try await gate.withGate {
                let products = try await self.fetchAll(tenant: tenant, logger: nil)
                return self.cache.reconcile(tenant: tenant, databaseProducts: products, pending: self.journal.unconfirmedOperations)
            }
        } catch let error as DatabaseClientError {
            throw APIError.serviceUnavailable("database_unavailable", "Could not read the catalog from the Database Service: \(error)")
        }
    }

    /// Waits until every write accepted before the call is confirmed by the Database Service.
    func flush(timeout: Duration) async throws(APIError) {
        let target = journal.latestSequence
        let confirmed = await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await self.journal.waitUntilConfirmed(target)) != nil }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            defer { group.cancelAll() }
            return await group.next() ?? false
        }
        guard confirmed else {
            throw APIError.serviceUnavailable(
                "database_unavailable",
                "Pending writes could not be flushed to the Database Service: \(worker.status.lastError ?? "timed out")")
        }
    }

    /// Loads every tenant's full catalog (the Database Service's tenants, `default`, and those with writes in
    /// the journal) over what the journal replayed, then marks the cache authoritative.
    func load(logger: Logger) async throws {
        let tenants = Set([defaultTenant])
            .union(try await database.tenants())
            .union(journal.unconfirmedOperations().map(\.tenant))
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

    // MARK: Status

    /// One tenant's cache figures.
    func statistics(tenant: String) -> CatalogCache.Statistics { cache.statistics(tenant: tenant) }

    /// Products cached and their approximate bytes, across tenants.
    var totals: (products: Int, approximateBytes: Int) { cache.totals }

    /// The write-behind queue as it stands.
    struct PersistenceState: Sendable {
        var journalIsDurable: Bool
        var backlog: Journal.Backlog
        var worker: PersistenceStatus
        var deadLetters: DeadLetterStore.Snapshot
    }

    var persistence: PersistenceState {
        PersistenceState(
            journalIsDurable: journal.isDurable, backlog: journal.backlog, worker: worker.status, deadLetters: worker.deadLetterSnapshot)
    }

    /// Why writes are refused, once the journal has failed.
    var writeFailure: String? { journal.backlog.failure }

    /// The Database Service's health, and an authenticated call too: a wrong service token shows here rather
    /// than only in failing writes.
    func checkDatabase() async throws(DatabaseClientError) -> DatabaseHealth {
        let health = try await database.health()
        _ = try await database.keyStatus()
        return health
    }

    // MARK: Helpers

    private var productNotFound: APIError { .notFound("Product not found", param: "id") }

    private func journaling<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as JournalError { throw Self.unavailable(error) }
    }

    /// Waits until the journal has the write on disk, then shows it (and every write before it) to readers.
    /// If the journal fails instead, every write not on disk is dropped from the cache before the client hears.
    private func waitUntilDurable(_ ticket: UInt64) async throws {
        do {
            try await journal.waitUntilDurable(ticket)
        } catch let error as JournalError {
            cache.discardStaged(after: journal.latestSequence)
            throw Self.unavailable(error)
        }
        cache.promote(through: ticket)
    }

    private static func unavailable(_ error: JournalError) -> APIError {
        .serviceUnavailable("journal_unavailable", "Writes are refused: the journal cannot be written (\(error))")
    }
}
