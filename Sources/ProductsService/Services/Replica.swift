import Foundation
import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import Shared
import Synchronization

/// This replica: its operations on the shops' catalogs. The cache answers, the journal makes writes durable, the
/// Database Service fills misses, and `replication` keeps the cache following it. Controllers, the loader and
/// metrics go through it; its parts stay private.
final class Replica: Sendable {
    let cache: CatalogCache
    let journal: Journal
    /// The Database Service; the public API also reaches it directly for what the catalog does not hold (events, webhooks).
    let database: any DatabaseServiceClient
    let worker: PersistenceWorker
    let gate: SyncGate
    /// The load, the change feed, reconciliation and the memory budget.
    let replication: Replication
    let idempotency: IdempotencyStore
    let ids = ProductIDGenerator()
    let variantIDs = ProductIDGenerator(prefix: VariantRules.variantIDPrefix)
    /// This replica's writer number, stamped on every version it makes; -1 until the Database Service gave one.
    let writer = Atomic<Int64>(-1)
    /// Large products as last written or decoded, for the next write on them.
    let decodedProducts = DecodedProducts()
    /// Misses waiting for a product another replica may have just created (`awaitingRecent`).
    let recentWaiters = Atomic<Int>(0)
    /// Whether the Database Service has granted `writer` (not a provisional number): only then are backlog reports sent.
    let writerConfirmed = Atomic<Bool>(false)
    /// The other replicas' backlog reports, as last fetched (`awaitingRecent`).
    let peerBacklogs = PeerBacklogs()

    /// What a catalog is made of, opened on a data directory: the journal replayed into the cache and the
    /// idempotency store. Tests keep the parts to look inside.
    struct Parts: Sendable {
        let cache: CatalogCache
        let journal: Journal
        let idempotency: IdempotencyStore
        let deadLetters: DeadLetterStore
        let database: any DatabaseServiceClient

        /// Opens the stores in `directory` (nil: memory only, `--journal off`).
        init(
            directory: String?, database: any DatabaseServiceClient, logger: Logger, segmentSize: Int = 16 << 20,
            beforeWrite: (@Sendable () -> Void)? = nil, sync: @escaping AppendOnlyFile.Sync = AppendOnlyFile.syncData,
            idempotencyBytes: Int = IdempotencyStore.defaultByteLimit, journalMemoryLimit: Int = Journal.defaultMemoryLimit,
            shopLimits: ShopState.Limits = ShopState.Limits()
        ) throws {
            let idempotency = IdempotencyStore(byteLimit: idempotencyBytes)
            let cache = CatalogCache(limits: shopLimits)
            var replayed = 0
            journal = try Journal(
                directory: directory.map { $0 + "/journal" }, segmentSize: segmentSize, memoryLimit: journalMemoryLimit, logger: logger,
                beforeWrite: beforeWrite, sync: sync,
                recovered: { sequence, record, confirmed in
                    if !confirmed {
                        cache.replay(record.operation)
                        replayed += 1
                    }
                })
            self.idempotency = idempotency
            self.cache = cache
            deadLetters = try DeadLetterStore(directory: directory)
            if replayed > 0 {
                logger.notice("replayed pending writes from the journal", metadata: ["operations": "\(replayed)"])
            }
            self.database = database
        }
    }

    init(
        _ parts: Parts, persistence: PersistenceSettings, cacheBudget: Int? = nil, readmissionInterval: Duration = .seconds(10),
        logger: Logger
    ) {
        cache = parts.cache
        journal = parts.journal
        database = parts.database
        idempotency = parts.idempotency
        gate = SyncGate()
        replication = Replication(
            cache: parts.cache, journal: parts.journal, database: parts.database, gate: gate, cacheBudget: cacheBudget,
            readmissionInterval: readmissionInterval)
        worker = PersistenceWorker(
            journal: parts.journal, cache: parts.cache, database: parts.database, deadLetters: parts.deadLetters, gate: gate,
            settings: persistence, logger: logger)
    }

    /// The services that persist the catalog: the persistence worker, and (after it stops) the journal's closing.
    var services: [any Service] { [JournalCloser(journal: journal), JournalRecoveryService(journal: journal), worker] }

    /// True once the full catalog has been loaded from the Database Service: a cache miss is then authoritative.
    var isLoaded: Bool { replication.isLoaded }

    /// Whether the cache alone answers for this tenant (a miss is "absent", a listing is complete): the catalog
    /// is loaded and the tenant was not evicted under the memory budget.
    func isAuthoritative(tenant: String) -> Bool { isLoaded && !cache.isEvicted(tenant: tenant) }

    // MARK: Writes

    /// What a write answered: the product it wrote, or the first answer of an idempotent request retried.
    enum WriteResult: Sendable {
        case written(CachedProduct)
        case replayed(IdempotencyRecord)
    }

    /// Creates a product, durable once this returns. With an `Idempotency-Key`, the Database Service stores it
    /// with the key's answer (see `coordinated`).
    func create(tenant: String, _ input: ProductInput, idempotent: IdempotentRequest? = nil) async throws -> WriteResult {
        let now = Timestamp.now()
        for attempt in 1...3 {
            var product = input.applied(to: Product(id: ids.next(), createdAt: now, updatedAt: now, version: 1))
            // The handle is chosen under the shop's lock and the product encoded outside it: held meanwhile, so that
            // a concurrent create makes another.
            let claims = try cache.withShop(tenant) { shop in
                let claims = try completed(&product, previous: nil, tenant: tenant, shop: &shop)
                shop.reserveHandle(product.handle, for: product.id)
                return claims
            }
            defer { cache.withExistingShop(tenant) { [product] shop in shop.releaseHandle(product.handle, for: product.id) } }
            if idempotent != nil || claims.needCoordination {
                return try await coordinated(idempotent) { () async throws -> Decision in
                    .write(
                        .upsert(tenant: tenant, product: product), expectedVersion: nil, answer: CachedProduct(product), status: 201,
                        handleGiven: claims.handleGiven)
                } onConflict: { _ in }!
            }
            let cached = CachedProduct(product)
            let mintedAt = ProductIDGenerator.mintMilliseconds(of: product.id)
            // Stalled since the id was minted (a starved process): minted again, rather than refused by the journal.
            if attempt < 3, let mintedAt, Timestamp.nowMilliseconds() - mintedAt > Journal.maxMintAge / 2 { continue }
            let staged = try journaling {
                try cache.stage(tenant: tenant, cached) {
                    try journal.append(JournalRecord(upsert: tenant, product, encoded: cached), mintedAtMs: mintedAt)
                }
            }
            guard let ticket = staged else {
                throw APIError.versionConflict("Another product took this one's handle while it was being created; retry")
            }
            decodedProducts.remember(product, as: cached, tenant: tenant)
            try await waitUntilDurable(ticket)
            return .written(cached)
        }
        throw Self.unavailable(.stalled("the process stalled three times between minting an id and journaling it"))
    }

    /// Updates a product (cached, or read through first) with `change`, at the next version; journaled like a
    /// create. With `If-Match` or an `Idempotency-Key`, the Database Service decides (see `coordinated`).
    func update(
        tenant: String, id: String, condition: EntityTag.Condition?, idempotent: IdempotentRequest? = nil,
        change: @escaping (Product) throws(APIError) -> Product
    ) async throws -> WriteResult {
        func decided() async throws -> WriteResult {
            try await coordinated(idempotent) { () async throws -> Decision in
                let current = try await self.storedForCoordination(tenant: tenant, id: id, condition: condition)
                let (product, claims) = try self.cache.withShop(tenant) { shop in try self.changed(current, by: change, tenant: tenant, shop: &shop) }
                return .write(
                    .upsert(tenant: tenant, product: product), expectedVersion: current.version, answer: CachedProduct(product), status: 200,
                    handleGiven: claims.handleGiven)
            } onConflict: { storedVersion in
                // Without If-Match the write only needed the stored version to build on: build again.
                if condition != nil { throw APIError.preconditionFailed(id: id, currentVersion: storedVersion) }
            }!
        }
        if condition != nil || idempotent != nil { return try await decided() }
        for _ in 0..<3 {
            if cache.latest(tenant: tenant, id: id) == nil {
                if cache.isPendingDelete(tenant: tenant, id: id) { throw productNotFound }
                _ = try await product(tenant: tenant, id: id)
            }
            let staged: (CachedProduct, UInt64)?
            do {
                staged = try journaling {
                    try cache.stageUpdate(tenant: tenant, id: id) { current, shop in
                        let previous = decodedProducts.product(of: current, tenant: tenant)
                        let (product, claims) = try changed(previous, by: change, tenant: tenant, shop: &shop)
                        if claims.needCoordination { throw NeedsCoordination() }
                        let cached = CachedProduct(product, capacity: current.jsonByteCount + 512)
                        decodedProducts.remember(product, as: cached, tenant: tenant)
                        let ticket = try journal.append(JournalRecord(upsert: tenant, product, encoded: cached))
                        return (cached, ticket, ticket)
                    }
                }
            } catch is NeedsCoordination {
                return try await decided()
            }
            // Not cached: deleted meanwhile, or the read-through was not cached because a delete raced it.
            guard let (updated, ticket) = staged else { continue }
            try await waitUntilDurable(ticket)
            return .written(updated)
        }
        if cache.isPendingDelete(tenant: tenant, id: id) { throw productNotFound }
        throw APIError.versionConflict("Product \(id) changed while being updated; retry")
    }

    /// `change` applied to `current`, as the next version: id and creation time kept, `updated_at` now, completed
    /// (see `completed`).
    func changed(
        _ current: Product, by change: (Product) throws(APIError) -> Product, tenant: String, shop: inout ShopState
    ) throws(APIError) -> (Product, Claims) {
        var product = try change(current)
        product.id = current.id
        product.createdAt = current.createdAt
        product.updatedAt = Timestamp.now()
        product.version = try nextVersion(after: current.version)
        let claims = try completed(&product, previous: current, tenant: tenant, shop: &shop)
        return (product, claims)
    }

    /// Completes an imported line's product: ids for variants without one, positions, a handle made from the name
    /// when it has none (free among the products this replica shows), its structure checked. The Database Service
    /// settles its handle and SKUs as it stores it (lines of one import that make the same handle get suffixes
    /// there, and come back to the cache through the feed).
    func completeImported(_ product: inout Product, tenant: String) throws(APIError) {
        product.assignVariantIDs(previous: [], newID: { variantIDs.next() })
        if product.handle.isEmpty {
            let base = VariantRules.handle(from: product.name)
            let id = product.id
            product.handle = cache.withExistingShop(tenant) { $0.freeHandle(base: base, id: id) } ?? base
        }
        try product.checkStructure()
    }

    /// What a write claims that other replicas may claim at the same time: the Database Service grants it.
    struct Claims {
        /// The client gave a handle the product did not hold.
        var handleGiven = false
        /// A variant has a SKU the product did not hold.
        var newSKUs = false
        /// The product is in a category it was not in: the Database Service knows the shop's categories.
        var newCategories = false

        var needCoordination: Bool { handleGiven || newSKUs || newCategories }
    }

    /// Completes a product a client's write made: ids for new variants (kept for variants with the options of one
    /// of `previous`), positions, and a handle made from the name when it has none, free as far as this replica
    /// knows. Checks the product's structure, and refuses at once (409) a handle or SKU this replica knows another
    /// product holds. Returns what it claims that only the Database Service can grant. `shop` is the shop's state,
    /// under its lock.
    func completed(_ product: inout Product, previous: Product?, tenant: String, shop: inout ShopState) throws(APIError) -> Claims {
        product.assignVariantIDs(previous: previous?.variants ?? [], newID: { variantIDs.next() })
        var claims = Claims()
        if product.handle.isEmpty {
            product.handle = shop.freeHandle(base: VariantRules.handle(from: product.name), id: product.id)
        } else if product.handle != previous?.handle {
            if let owner = shop.handleHolder(product.handle, other: product.id) {
                throw .handleTaken(product.handle, productID: owner)
            }
            claims.handleGiven = true
        }
        try product.checkStructure(after: previous)
        claims.newCategories = !Set(product.categoryIDs).isSubset(of: previous?.categoryIDs ?? [])
        if !product.keepsSKUs(of: previous) {
            claims.newSKUs = true
            for (index, variant) in product.variants.enumerated() {
                if let sku = variant.sku, let owner = shop.skus[sku], owner != product.id {
                    let holder = shop.latest(owner)?.product.variants.first { $0.sku == sku }?.id ?? "unknown"
                    throw .skuTaken(sku, productID: owner, variantID: holder, param: "variants[\(index)][sku]")
                }
            }
        }
        return claims
    }

    /// Deletes a product, cached or found only in the Database Service; returns the deleted product's name.
    /// With `If-Match`, the Database Service decides (see `coordinated`).
    func delete(tenant: String, id: String, condition: EntityTag.Condition? = nil) async throws -> String {
        let deletedAt = Timestamp.now()
        if condition != nil {
            var name = ""
            _ = try await coordinated(nil) { () async throws -> Decision in
                let current = try await self.storedForCoordination(tenant: tenant, id: id, condition: condition)
                name = current.name
                let version = try self.nextVersion(after: current.version)
                return .write(.delete(tenant: tenant, id: id, version: version, deletedAt: deletedAt), expectedVersion: current.version, answer: nil, status: 200)
            } onConflict: { storedVersion in
                throw APIError.preconditionFailed(id: id, currentVersion: storedVersion)
            }
            return name
        }
        // A read-through may cache the product while we look it up; then the cached path applies.
        for _ in 0..<3 {
            let staged = try journaling {
                try cache.stageDelete(tenant: tenant, id: id) { current in
                    let version = try nextVersion(after: current.version)
                    return (version, try journal.append(JournalRecord(.delete(tenant: tenant, id: id, version: version, deletedAt: deletedAt))))
                }
            }
            if let (removed, ticket) = staged {
                try await waitUntilDurable(ticket)
                return removed.name
            }
            if cache.isPendingDelete(tenant: tenant, id: id) { throw productNotFound }
            guard let stored = try await databaseProduct(tenant: tenant, id: id) else {
                // Just created on another replica: delete it once this one knows it (never a 404 that leaves it alive).
                let appeared = try await awaitingRecent(id: id) { askDatabase async throws -> Bool? in
                    if cache.latest(tenant: tenant, id: id) != nil { return true }
                    if cache.isVisiblyDeleted(tenant: tenant, id: id) { throw productNotFound }
                    return askDatabase ? try await databaseProduct(tenant: tenant, id: id).map { _ in true } : nil
                }
                if appeared != nil { continue }
                throw productNotFound
            }
            let version = try nextVersion(after: stored.version)
            let uncached = try journaling {
                try cache.stageUncachedDelete(tenant: tenant, id: id, version: version) {
                    try journal.append(JournalRecord(.delete(tenant: tenant, id: id, version: version, deletedAt: deletedAt)))
                }
            }
            if let ticket = uncached {
                try await waitUntilDurable(ticket)
                return stored.name
            }
        }
        throw APIError.versionConflict("Product \(id) changed while being deleted; retry")
    }

    // MARK: Versions

    /// This replica's writer number, once the Database Service has given it.
    var writerNode: Int64? {
        let node = writer.load(ordering: .acquiring)
        return node < 0 ? nil : node
    }

    func setWriterNode(_ node: Int64) { writer.store(node, ordering: .releasing) }

    /// The version of a change that replaces `previous`: see `Versions`.
    func nextVersion(after previous: Int64) throws(APIError) -> Int64 {
        guard let node = writerNode else {
            throw APIError.serviceUnavailable(
                "database_unavailable",
                "This replica has not yet been given its writer number by the Database Service; updates and deletes wait for it")
        }
        return Versions.next(after: previous, writer: node)
    }

    // MARK: Status

    /// One tenant's cache figures.
    func statistics(tenant: String) -> CatalogCache.Statistics { cache.statistics(tenant: tenant) }

    /// Products cached and their approximate bytes, across tenants.
    var totals: CatalogCache.Totals { cache.totals }

    /// The write-behind queue as it stands.
    struct PersistenceState: Sendable {
        var journalIsDurable: Bool
        var backlog: Journal.Backlog
        var worker: PersistenceStatus
        var deadLetters: DeadLetterStore.Snapshot
    }

    /// What the replica's idempotency answers hold, in bytes (`--idempotency-budget`).
    var idempotencyBytes: Int { idempotency.bytes }

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

    var productNotFound: APIError { .notFound("Product not found", param: "id") }

    /// A write that claims a handle or a SKU, found while staging: the Database Service decides it instead.
    struct NeedsCoordination: Error {}

    func journaling<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as JournalError { throw Self.unavailable(error) }
    }

    /// Waits until the journal has the write on disk, then shows it (and every write before it) to readers.
    /// If the journal fails instead, every write not on disk is dropped from the cache before the client hears.
    func waitUntilDurable(_ ticket: UInt64) async throws {
        do {
            try await journal.waitUntilDurable(ticket)
        } catch let error as JournalError {
            cache.discardStaged(after: journal.latestSequence)
            throw Self.unavailable(error)
        }
        cache.promote(through: ticket)
    }

    static func unavailable(_ error: JournalError) -> APIError {
        if case .stalled = error { return .serviceUnavailable("write_stalled", "The write was refused: \(error); retry") }
        return .serviceUnavailable("journal_unavailable", "Writes are refused: the journal cannot be written (\(error))")
    }
}
