import Foundation
import Logging
import Metrics
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
    /// The Database Service; the public API also reaches it directly for what the catalog does not hold (events, webhooks).
    let database: any DatabaseServiceClient
    private let worker: PersistenceWorker
    private let gate: SyncGate
    /// Serialises applying the change feed with reconciliation, which would otherwise drop a product the feed
    /// brought after its listing was read.
    private let feedGate: SyncGate
    private let idempotency: IdempotencyStore
    private let ids = ProductIDGenerator()
    private let loaded = Atomic<Bool>(false)
    /// The most the cache may hold by its own estimate (`--cache-budget`); nil: no limit.
    let cacheBudget: Int?
    /// When a tenant was last brought back into the cache under the budget: one at a time, at most every
    /// `readmissionInterval`, so that shops taking turns cannot keep it reloading.
    private let lastReadmission = Mutex<ContinuousClock.Instant?>(nil)
    private let readmissionInterval: Duration
    /// This replica's writer number, stamped on every version it makes; -1 until the Database Service gave one.
    private let writer = Atomic<Int64>(-1)
    /// Where the change feed stands: the last full load's starting point, and what the follower reports.
    let feed = FeedState()

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
            beforeWrite: (@Sendable () -> Void)? = nil, sync: @escaping AppendOnlyFile.Sync = AppendOnlyFile.syncData,
            idempotencyCapacity: Int = IdempotencyStore.defaultCapacity, journalMemoryLimit: Int = Journal.defaultMemoryLimit
        ) throws {
            let idempotency = try IdempotencyStore(directory: directory, capacity: idempotencyCapacity)
            let cache = CatalogCache()
            var replayed = 0
            journal = try Journal(
                directory: directory.map { $0 + "/journal" }, segmentSize: segmentSize, memoryLimit: journalMemoryLimit, logger: logger,
                beforeDropping: { try idempotency.file(through: $0) }, beforeWrite: beforeWrite, sync: sync,
                recovered: { sequence, record, confirmed in
                    idempotency.restore(sequence: sequence, record)
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
        self.cacheBudget = cacheBudget
        self.readmissionInterval = readmissionInterval
        cache = parts.cache
        journal = parts.journal
        database = parts.database
        idempotency = parts.idempotency
        gate = SyncGate()
        let feedGate = SyncGate()
        self.feedGate = feedGate
        worker = PersistenceWorker(
            journal: parts.journal, cache: parts.cache, database: parts.database, deadLetters: parts.deadLetters, gate: gate,
            feedGate: feedGate, settings: persistence, logger: logger)
    }

    /// The services that persist the catalog: the persistence worker, and (after it stops) the journal's closing.
    var services: [any Service] { [JournalCloser(journal: journal), worker] }

    /// True once the full catalog has been loaded from the Database Service: a cache miss is then authoritative.
    var isLoaded: Bool { loaded.load(ordering: .acquiring) }

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
        let product = Product(
            id: ids.next(), name: input.name, type: input.type, description: input.description, images: input.images,
            active: input.active, metadata: input.metadata, createdAt: now, updatedAt: now, version: 1)
        if let idempotent {
            return try await coordinated(idempotent) { () async throws -> Decision in
                .write(.upsert(tenant: tenant, product: product), expectedVersion: nil, answer: CachedProduct(product), status: 201)
            } onConflict: { _ in }!
        }
        let cached = CachedProduct(product)
        let ticket = try journaling {
            try cache.stage(tenant: tenant, cached) { try journal.append(JournalRecord(.upsert(tenant: tenant, product: product))) }
        }
        try await waitUntilDurable(ticket)
        return .written(cached)
    }

    /// Updates a product (cached, or read through first) with `change`, at the next version; journaled like a
    /// create. With `If-Match` or an `Idempotency-Key`, the Database Service decides (see `coordinated`).
    func update(
        tenant: String, id: String, condition: EntityTag.Condition?, idempotent: IdempotentRequest? = nil,
        change: @escaping (Product) throws(APIError) -> Product
    ) async throws -> WriteResult {
        if condition != nil || idempotent != nil {
            return try await coordinated(idempotent) { () async throws -> Decision in
                let current = try await self.storedForCoordination(tenant: tenant, id: id, condition: condition)
                let product = try self.changed(current, by: change)
                return .write(.upsert(tenant: tenant, product: product), expectedVersion: current.version, answer: CachedProduct(product), status: 200)
            } onConflict: { storedVersion in
                // Without If-Match the write only needed the stored version to build on: build again.
                if condition != nil { throw APIError.preconditionFailed(id: id, currentVersion: storedVersion) }
            }!
        }
        for _ in 0..<3 {
            if cache.latest(tenant: tenant, id: id) == nil {
                if cache.isPendingDelete(tenant: tenant, id: id) { throw productNotFound }
                _ = try await product(tenant: tenant, id: id)
            }
            let staged = try journaling {
                try cache.stageUpdate(tenant: tenant, id: id) { current in
                    let product = try changed(current.product, by: change)
                    let ticket = try journal.append(JournalRecord(.upsert(tenant: tenant, product: product)))
                    return (CachedProduct(product), ticket, ticket)
                }
            }
            // Not cached: deleted meanwhile, or the read-through was not cached because a delete raced it.
            guard let (updated, ticket) = staged else { continue }
            try await waitUntilDurable(ticket)
            return .written(updated)
        }
        if cache.isPendingDelete(tenant: tenant, id: id) { throw productNotFound }
        throw APIError.versionConflict("Product \(id) changed while being updated; retry")
    }

    /// `change` applied to `current`, as the next version: id and creation time kept, `updated_at` now.
    private func changed(_ current: Product, by change: (Product) throws(APIError) -> Product) throws(APIError) -> Product {
        var product = try change(current)
        product.id = current.id
        product.createdAt = current.createdAt
        product.updatedAt = Timestamp.now()
        product.version = try nextVersion(after: current.version)
        return product
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
            guard let stored = try await databaseProduct(tenant: tenant, id: id) else { throw productNotFound }
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

    // MARK: Coordinated writes

    /// What a coordinated write asks the Database Service to do: store `operation` if the stored version is
    /// still `expectedVersion`; `answer` is the product the client gets (nil for a delete), with `status`.
    struct Decision {
        var operation: WriteOperation
        var expectedVersion: Int64?
        var answer: CachedProduct?
        var status: Int

        static func write(_ operation: WriteOperation, expectedVersion: Int64?, answer: CachedProduct?, status: Int) -> Decision {
            Decision(operation: operation, expectedVersion: expectedVersion, answer: answer, status: status)
        }
    }

    /// A write that one replica cannot decide alone, decided by the Database Service in one transaction:
    /// `If-Match` (compared with the stored version, so of concurrent writes from one version on different
    /// replicas exactly one wins) and `Idempotency-Key` (the key's answer is stored with the write, so a retry
    /// on any replica gets it back). It needs the Database Service: while it cannot be reached these writes are
    /// 503 `database_unavailable`. The write is durable in the Database Service when this returns, and in the
    /// change log every replica follows; this replica's cache has it at once.
    ///
    /// `decide` reads what it needs and says what to write; when the stored version moved meanwhile,
    /// `onConflict` throws (a 412) or lets `decide` run again, up to three times. Returns nil for a delete
    /// (which has no answer to keep), else the product written or the key's first answer.
    private func coordinated(
        _ idempotent: IdempotentRequest?, decide: () async throws -> Decision, onConflict: (_ storedVersion: Int64) throws -> Void
    ) async throws -> WriteResult? {
        if let idempotent, let record = try idempotency.begin(idempotent) { return .replayed(record) }
        // Until answered, a failure frees the key for another try.
        var answered = false
        defer { if !answered, let idempotent { idempotency.abandon(idempotent) } }
        for _ in 0..<3 {
            let decision = try await decide()
            let record = idempotent.flatMap { request in
                decision.answer.map { idempotency.record(for: request, status: decision.status, product: $0) }
            }
            let result = try await submit(decision, record: record)
            if case .done(let answer) = try settle(result, of: decision, record: record, idempotent: idempotent) {
                answered = true
                return answer
            }
            try onConflict(result.storedVersion ?? 0)
        }
        throw APIError.versionConflict("The product kept changing while being written; retry")
    }

    /// Sends a coordinated write; an unreachable Database Service is a 503.
    private func submit(_ decision: Decision, record: IdempotencyRecord?) async throws -> CoordinatedResult {
        let answer = record.map {
            StoredAnswer(key: $0.key, fingerprint: $0.fingerprint, status: $0.status, body: $0.body, etag: $0.etag, createdAt: $0.createdAt)
        }
        do {
            return try await database.write(
                CoordinatedWrite(operation: decision.operation, expectedVersion: decision.expectedVersion, idempotency: answer))
        } catch {
            throw Self.databaseUnavailable(error)
        }
    }

    /// What a coordinated write came to: an answer (nil for a delete), or a stored version that moved meanwhile.
    private enum Settled {
        case done(WriteResult?)
        case conflict
    }

    /// What a coordinated write's result means for the client.
    private func settle(
        _ result: CoordinatedResult, of decision: Decision, record: IdempotencyRecord?, idempotent: IdempotentRequest?
    ) throws(APIError) -> Settled {
        switch result.outcome {
        case .applied:
            cache.applyStored(decision.operation)
            if let record { idempotency.finish(record) }
            return .done(decision.answer.map(WriteResult.written))
        case .replayed:
            guard let idempotent, let stored = result.answer else {
                throw APIError.versionConflict("The Database Service replayed an answer for no key; retry")
            }
            let record = IdempotencyRecord(
                tenant: idempotent.tenant, key: idempotent.key, fingerprint: stored.fingerprint, status: stored.status, body: stored.body,
                etag: stored.etag, createdAt: stored.createdAt, sequence: 0)
            idempotency.finish(record)
            return .done(.replayed(record))
        case .keyReused:
            throw APIError.idempotencyKeyReused
        case .preconditionFailed, .stale:
            if result.deleted == true { throw productNotFound }
            return .conflict
        }
    }

    private static func databaseUnavailable(_ error: DatabaseClientError) -> APIError {
        .serviceUnavailable(
            "database_unavailable", "This write needs the Database Service (If-Match or Idempotency-Key), which is unreachable: \(error)")
    }

    /// The product as the Database Service stores it, once this replica's own pending writes have reached it
    /// (so it stores what clients of this replica last saw), checked against `condition`; the cache learns it.
    private func storedForCoordination(tenant: String, id: String, condition: EntityTag.Condition?) async throws -> Product {
        try await flush(timeout: .seconds(5))
        // Fetched and applied under the feed gate, so that a delete the feed applies meanwhile is not undone.
        let stored: Product = try await feedGate.withGate {
            let stored: Product?
            do { stored = try await self.database.product(tenant: tenant, id: id) } catch let error as DatabaseClientError {
                throw Self.databaseUnavailable(error)
            }
            guard let stored else {
                if let visible = self.cache.visibleVersion(tenant: tenant, id: id) {
                    self.cache.evict(tenant: tenant, id: id, version: visible)
                }
                throw self.productNotFound
            }
            self.cache.applyStored(.upsert(tenant: tenant, product: stored))
            return stored
        }
        if let condition, !condition.matchesStrongly(EntityTag.product(id: id, version: stored.version)) {
            throw APIError.preconditionFailed(id: id, currentVersion: stored.version)
        }
        return stored
    }


    // MARK: History

    /// What restoring a version came to: the product written (`created` when it was deleted), or the Database
    /// Service's refusal, which the client gets as it is.
    enum RestoreResult: Sendable {
        case restored(CachedProduct, created: Bool)
        case refused(ForwardedResponse)
    }

    /// Brings back `version` of a product from its history, as its next version, decided by the Database Service
    /// in one transaction. This replica's pending writes are flushed first, so that the history holds what its
    /// clients last saw; the cache has the result at once, other replicas through the change feed.
    func restore(tenant: String, id: String, version: Int64) async throws -> RestoreResult {
        try await flush(timeout: .seconds(5))
        var body = ByteBuffer()
        body.writeStaticString("{\"version\":")
        body.writeString(String(version))
        body.writeStaticString("}")
        let answer: ForwardedResponse
        do {
            answer = try await database.forward(
                .post, path: "/api/products/\(HTTPDatabaseServiceClient.escape(id))/restore", tenant: tenant, body: body)
        } catch {
            throw APIError.serviceUnavailable("database_unavailable", "Restoring needs the Database Service, which is unreachable: \(error)")
        }
        guard answer.status == 200 || answer.status == 201 else { return .refused(answer) }
        let product: Product
        do { product = try JSONCoding.decoder.decode(Product.self, from: Data(buffer: answer.body)) } catch {
            throw APIError.serviceUnavailable("database_unavailable", "The Database Service's answer to a restore was not a product: \(error)")
        }
        cache.applyStored(.upsert(tenant: tenant, product: product))
        return .restored(CachedProduct(product), created: answer.status == 201)
    }

    /// A product's versions, newest first, as the Database Service lists them from its change log, once this
    /// replica's pending writes have reached it (a client sees its own last write there).
    func versions(tenant: String, id: String, query: ProductHistory.Query) async throws -> ForwardedResponse {
        try await flush(timeout: .seconds(5))
        do {
            return try await database.forward(
                .get, path: "/api/products/\(HTTPDatabaseServiceClient.escape(id))/versions?" + query.queryString(startingAfter: query.startingAfter),
                tenant: tenant, body: nil)
        } catch {
            throw APIError.serviceUnavailable("database_unavailable", "A product's history is kept by the Database Service, which is unreachable: \(error)")
        }
    }

    // MARK: Imports

    /// A new product id, for an imported line.
    func newProductID() -> String { ids.next() }

    /// The version an imported write takes: newer than every version made before now, by any replica.
    func importVersion() throws(APIError) -> Int64 { try nextVersion(after: 0) }

    /// The creation time of a product an import replaces, as far as this replica knows: `.some(nil)` when the
    /// product does not exist, nil when only the Database Service can say (the shop is not held whole here).
    func cachedCreatedAt(tenant: String, id: String) -> String?? {
        if let cached = cache.get(tenant: tenant, id: id) { return .some(cached.product.createdAt) }
        if isAuthoritative(tenant: tenant) || cache.isVisiblyDeleted(tenant: tenant, id: id) { return .some(nil) }
        return nil
    }

    /// The creation times of those of `ids` (at most `ProductQuery.maxIDs`) the Database Service holds, in one listing.
    func storedCreatedAt(tenant: String, ids: [String]) async throws -> [String: String] {
        var query = ProductQuery(limit: ProductQuery.maxIDs)
        query.ids = Array(Set(ids)).sorted()
        let page = try await database.listProducts(tenant: tenant, query: query)
        return Dictionary(page.products.map { ($0.id, $0.createdAt) }, uniquingKeysWith: { first, _ in first })
    }

    /// Imported writes the Database Service stored: this replica's cache has them at once (others through the feed).
    func applyImported(_ products: [(tenant: String, product: CachedProduct)]) {
        for (tenant, product) in products {
            cache.applyStored(tenant: tenant, id: product.id, version: product.version, .put(product))
        }
    }

    // MARK: Versions

    /// This replica's writer number, once the Database Service has given it.
    var writerNode: Int64? {
        let node = writer.load(ordering: .acquiring)
        return node < 0 ? nil : node
    }

    func setWriterNode(_ node: Int64) { writer.store(node, ordering: .releasing) }

    /// The version of a change that replaces `previous`: see `Versions`.
    private func nextVersion(after previous: Int64) throws(APIError) -> Int64 {
        guard let node = writerNode else {
            throw APIError.serviceUnavailable(
                "database_unavailable",
                "This replica has not yet been given its writer number by the Database Service; updates and deletes wait for it")
        }
        return Versions.next(after: previous, writer: node)
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
        if isAuthoritative(tenant: tenant) { return await cache.list(tenant: tenant, query: query) }
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
            if isAuthoritative(tenant: tenant) { return await cache.list(tenant: tenant, query: query) }
            throw APIError.serviceUnavailable("database_unavailable", "\(notCachedReason(tenant)) and the Database Service is unreachable: \(error)")
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
            let page = try await Self.databasePage(database, tenant: tenant, query: pageQuery)
            let ordered = backwards ? page.products.reversed() : page.products
            let decided = cache.decided(tenant: tenant, ids: ordered.lazy.map(\.id))
            fromDatabase += ordered.lazy.filter { !decided.contains($0.id) }
            guard page.hasMore, fromDatabase.count < wanted, let last = ordered.last else { break }
            pageQuery.cursor = backwards ? .endingBefore(last.id) : .startingAfter(last.id)
        }
        var fromCache = query
        fromCache.limit = wanted
        let cached = await cache.list(tenant: tenant, query: fromCache).products
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
    private static func databasePage(
        _ database: any DatabaseServiceClient, tenant: String, query: ProductQuery
    ) async throws(DatabaseClientError) -> CachedPage {
        try page(from: try await database.listProductsJSON(tenant: tenant, query: query))
    }

    /// A page of products as the Database Service wrote it, read into cached products.
    private static func page(from body: ByteBuffer) throws(DatabaseClientError) -> CachedPage {
        do { return try CachedPage(json: body) } catch { throw .invalidResponse("a page of products: \(error)") }
    }

    /// Why the cache cannot answer alone for a tenant.
    private func notCachedReason(_ tenant: String) -> String {
        isLoaded ? "This shop's catalog is not in this replica's cache (--cache-budget)" : "The catalog is still loading"
    }

    /// The product as the Database Service holds it; when it cannot be asked, an authoritative cache means "absent".
    private func databaseProduct(tenant: String, id: String) async throws -> Product? {
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
        try await flush(timeout: flushTimeout)
        do {
            return try await gate.withGate {
                try await self.feedGate.withGate {
                    let evictedAt = self.cache.evictedAt(tenant: tenant)
                    let result = try await self.reconcile(tenant: tenant, logger: nil, dropConfirmedTombstones: false, protecting: [])
                    if result.complete, evictedAt != 0 { self.cache.markResident(tenant: tenant, evictedAt: evictedAt) }
                    return (result.updated, result.dropped)
                }
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
                        tenant: tenant, logger: logger, dropConfirmedTombstones: true, protecting: loadedTenants)
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

    /// The Database Service's changes after `cursor`, waiting up to `wait` for one; nil when the cursor is past
    /// the log's retention.
    func changes(after cursor: ChangeCursor, wait: Duration) async throws(DatabaseClientError) -> ChangePage? {
        try await database.changes(after: cursor, limit: 1000, wait: wait)
    }

    /// Applies stored changes to the cache by version: older or repeated ones change nothing. Catching up on
    /// changes a full load already reflects, only deletes are applied (they may remove writes replayed from
    /// the journal that lost to them), so that no reader sees an old state come back for a moment.
    ///
    /// A product is read (into its cached form, its JSON kept as sent) only when the cache does not hold that
    /// version or a newer one already: this replica's own writes come back through the feed, and decoding them
    /// cost a tenth of its CPU under a stream of writes. A product that cannot be read fails the page, which the
    /// follower asks for again.
    func apply(_ changes: [Change], deletesOnly: Bool) async throws -> Int {
        var decoded: [(tenant: String, id: String, version: Int64, stored: CatalogCache.StoredChange)] = []
        decoded.reserveCapacity(changes.count)
        for change in changes {
            switch change.op {
            case .delete:
                decoded.append((change.tenant, change.id, change.version, .delete(version: change.version)))
            case .upsert:
                if deletesOnly || cache.holds(tenant: change.tenant, id: change.id, version: change.version) { continue }
                let product: CachedProduct
                if let value = change.product {
                    product = CachedProduct(value)
                } else if let encoded = change.encodedProduct {
                    product = try CachedProduct(json: encoded)
                } else {
                    throw JSONSyntaxError(description: "the upsert of \(change.id) has no product")
                }
                decoded.append((change.tenant, product.id, product.version, .put(product)))
            }
        }
        return await feedGate.withGate { [decoded] in
            decoded.reduce(0) { count, item in
                let applied = self.cache.applyStored(tenant: item.tenant, id: item.id, version: item.version, item.stored, deletesOnly: deletesOnly)
                return count + (applied ? 1 : 0)
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
    private struct Reconciled {
        var updated = 0
        var dropped = 0
        var complete = true
    }

    /// Makes the tenant's cache match the Database Service's catalog, read page by page in id order: each page
    /// goes into the cache, and what the Database Service lacks in its range of ids is dropped, while the next
    /// page is parsed and the one after asked for, so both services work at once. Under a budget, colder
    /// tenants (never those in `protecting`) are evicted to make room after each page; when that is not enough,
    /// the tenant itself is evicted and the reconciliation stops.
    private func reconcile(
        tenant: String, logger: Logger?, dropConfirmedTombstones: Bool, protecting: Set<String>
    ) async throws -> Reconciled {
        let database = database
        @Sendable func fetch(after cursor: String?) async throws -> ByteBuffer {
            try await database.listProductsJSON(
                tenant: tenant, query: ProductQuery(limit: Self.pageSize, cursor: cursor.map(ProductQuery.Cursor.startingAfter)))
        }
        if dropConfirmedTombstones { cache.dropConfirmedTombstones(tenant: tenant) { self.journal.isUnconfirmed(tenant: tenant, id: $0) } }
        var result = Reconciled()
        var loaded = 0
        // Where the last page taken ended: each page reconciles the ids after it, through its own last one.
        var takenThrough: String?
        func take(_ page: CachedPage) {
            let through = page.hasMore ? page.products.last?.id : nil
            let (updated, dropped) = cache.reconcilePage(tenant: tenant, page.products, after: takenThrough, through: through) {
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
    private func fitsBudget(loading tenant: String, protecting: Set<String>, logger: Logger?) -> Bool {
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

    private static let evictions = Counter(label: "products_cache_evictions")

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
