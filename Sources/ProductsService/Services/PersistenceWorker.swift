import Foundation
import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import Shared
import Synchronization

/// Tuning of the persistence worker.
struct PersistenceSettings: Sendable {
    /// The Database Service accepts at most this many operations per batch.
    static let maxBatchSize = ServiceContract.maxBatchOperations
    var batchSize = 256
    var retryBaseDelay: Duration = .milliseconds(100)
    var retryMaxDelay: Duration = .seconds(5)
    /// How long a graceful shutdown keeps flushing before leaving the rest in the journal.
    var shutdownFlushTimeout: Duration = .seconds(10)
}

/// What the worker has been doing, for `/health` and `/cache/stats`.
struct PersistenceStatus: Sendable {
    var consecutiveFailures = 0
    var lastError: String?
    var lastErrorAt: String?
    var lastFlushAt: String?
    var flushedOperations = 0
}

/// Drains the journal to the Database Service in batches, coalescing writes to one product, retrying
/// without limit with exponential backoff and jitter, and setting aside writes it rejects as invalid.
final class PersistenceWorker: Service, Sendable {
    private let journal: Journal
    private let cache: CatalogCache
    private let database: any DatabaseServiceClient
    private let deadLetters: DeadLetterStore
    private let gate: SyncGate
    private let settings: PersistenceSettings
    private let logger: Logger
    private let state = Mutex(PersistenceStatus())

    init(
        journal: Journal, cache: CatalogCache, database: any DatabaseServiceClient, deadLetters: DeadLetterStore,
        gate: SyncGate, settings: PersistenceSettings, logger: Logger
    ) {
        self.journal = journal
        self.cache = cache
        self.database = database
        self.deadLetters = deadLetters
        self.gate = gate
        self.settings = settings
        self.logger = logger
    }

    var status: PersistenceStatus { state.withLock { $0 } }

    private var failures: Int { state.withLock { $0.consecutiveFailures } }
    private var retry: RetryPolicy { RetryPolicy(base: settings.retryBaseDelay * 2, cap: settings.retryMaxDelay) }

    /// The dead letters kept so far.
    var deadLetterSnapshot: DeadLetterStore.Snapshot { deadLetters.snapshot }

    func run() async throws {
        // Wake on new work until shutdown begins; then keep draining until empty or the deadline passes.
        try? await cancelWhenGracefulShutdown { () async throws in
            for await _ in self.journal.pendingSignals {
                await self.drain(until: nil)
                await self.journal.writeConfirmation()
            }
        }
        let deadline = ContinuousClock.now + settings.shutdownFlushTimeout
        await drain(until: deadline)
        let left = journal.backlog.count
        if left > 0 {
            logger.warning("shutdown flush deadline passed; writes stay in the journal for the next start", metadata: ["pending": "\(left)"])
        } else {
            logger.info("journal flushed before shutdown")
        }
    }

    /// Sends batches until nothing is pending or the deadline (if any) passes.
    func drain(until deadline: ContinuousClock.Instant?) async {
        while true {
            if let deadline, ContinuousClock.now >= deadline { return }
            if deadline == nil, Task.isShuttingDownGracefully { return }
            let entries = Self.withinBodyLimit(await journal.oldestPending(limit: settings.batchSize))
            guard !entries.isEmpty else { return }
            guard let sent = try? await gate.withGate({ await self.send(entries) }) else { return }
            // Draining for shutdown: the time left is short, so retry often rather than sleep it away in one wait.
            if !sent { await retry.wait(afterFailures: failures, until: deadline.map { min($0, .now + .milliseconds(250)) }) }
        }
    }

    /// Sends one batch; returns false when it must be retried.
    private func send(_ entries: [JournalEntry]) async -> Bool {
        let batch = Self.coalesce(entries)
        let started = ContinuousClock.now
        do {
            let (rejected, stale) = try await apply(batch)
            try deadLetters.add(rejected)
            await catchUp(stale)
            for letter in rejected {
                // The cache must not keep showing a write the Database Service will never hold.
                switch letter.operation {
                case .upsert(let tenant, let product):
                    cache.apply(.refused(id: product.id, .put(CachedProduct(product))), tenant: tenant)
                case .delete(let tenant, let id, let version, _):
                    cache.apply(.refused(id: id, .delete(version: version)), tenant: tenant)
                }
                logger.error(
                    "write rejected by the Database Service; dead-lettered",
                    metadata: ["product_id": "\(letter.operation.productID)", "version": "\(letter.operation.version)", "error": "\(letter.error)"])
            }
        } catch {
            Self.flushDuration(outcome: "failed").recordInterval(since: started)
            // Cancelled by shutdown: not a failure; the final flush sends the batch again (harmlessly, if it landed).
            if Task.isCancelled { return false }
            let attempt = state.withLock { status in
                status.consecutiveFailures += 1
                status.lastError = "\(error)"
                status.lastErrorAt = Timestamp.now()
                return status.consecutiveFailures
            }
            logger.warning(
                "persisting batch failed; will retry",
                metadata: [
                    "attempt": "\(attempt)", "operations": "\(batch.count)",
                    "first_product_id": "\(batch.first?.operation.productID ?? "")", "error": "\(error)",
                ])
            return false
        }
        // A delete's tombstone stays in the cache until the change feed brings the delete back: until then the
        // feed may still bring older changes of the product, which must not show it again.
        journal.confirm(through: entries.last!.sequence)
        Self.flushDuration(outcome: "persisted").recordInterval(since: started)
        Self.batchSize.record(batch.count)
        state.withLock { status in
            status.consecutiveFailures = 0
            status.lastFlushAt = Timestamp.now()
            status.flushedOperations += batch.count
        }
        logger.debug("batch persisted", metadata: ["operations": "\(batch.count)"])
        return true
    }

    /// A write the Database Service found stale: it holds a newer version (another replica's write won).
    struct Stale {
        var operation: WriteOperation
        var storedVersion: Int64
        var deleted: Bool
    }

    /// Applies a batch; returns the operations rejected as invalid, and those found stale. A batch refused whole
    /// with a 4xx is retried one operation at a time so that one bad write cannot wedge the queue.
    private func apply(_ batch: [JournalEntry]) async throws(DatabaseClientError) -> (rejected: [DeadLetter], stale: [Stale]) {
        let result: WriteBatchResult
        do {
            result = try await database.apply(json: Self.body(batch), count: batch.count)
        } catch {
            guard error.isClientError else { throw error }
            guard batch.count > 1 else {
                return ([DeadLetter(operation: batch[0].operation, error: "\(error)", deadLetteredAt: Timestamp.now())], [])
            }
            var rejected: [DeadLetter] = []
            var stale: [Stale] = []
            for entry in batch {
                let outcome = try await apply([entry])
                rejected += outcome.rejected
                stale += outcome.stale
            }
            return (rejected, stale)
        }
        var rejected: [DeadLetter] = []
        var stale: [Stale] = []
        for (operation, result) in zip(batch.lazy.map(\.operation), result.results) {
            switch result.outcome {
            case .rejected:
                rejected.append(DeadLetter(operation: operation, error: result.error ?? "rejected", deadLetteredAt: Timestamp.now()))
            case .stale:
                if let storedVersion = result.storedVersion, storedVersion > operation.version {
                    stale.append(Stale(operation: operation, storedVersion: storedVersion, deleted: result.deleted ?? false))
                }
            case .applied:
                break
            }
        }
        return (rejected, stale)
    }

    /// The batch's body, `{"operations":[...]}`, made of the journal's own lines: a batch element is byte for byte
    /// the line (the operation with its `recorded_at_ms`), so nothing is encoded again.
    static func body(_ batch: [JournalEntry]) -> ByteBuffer {
        var body = ByteBuffer()
        body.reserveCapacity(batch.reduce(16) { $0 + $1.line.readableBytes + 1 })
        body.writeJSONArray(batch, opening: "{\"operations\":[", closing: "]}") { entry, body in
            var line = entry.line
            body.writeBuffer(&line)
        }
        return body
    }

    /// Brings the cache up to what the Database Service holds for writes of ours that lost to newer ones. The
    /// change feed would bring the same, unless the newer write predates where it follows from (a write
    /// journaled before a restart); fetching here makes the cache right either way. What is fetched goes in as
    /// fetched state, decided by version against what the feed applied meanwhile (see `ShopState`).
    private func catchUp(_ stale: [Stale]) async {
        for write in stale {
            let (tenant, id) = (write.operation.tenant, write.operation.productID)
            if write.deleted {
                cache.apply(.fetched(id: id, .deleted(version: write.storedVersion), since: .now), tenant: tenant)
                continue
            }
            let shown = cache.visibleVersion(tenant: tenant, id: id)
            guard (shown ?? 0) < write.storedVersion else { continue }
            let asked = ContinuousClock.now
            let found: Product?
            do { found = try await database.product(tenant: tenant, id: id) } catch { continue }
            // nil: deleted since; the feed brings the delete, and a read meanwhile asks the Database Service.
            let state: FetchedState = found.map { .stored(CachedProduct($0)) } ?? .absent(shownVersion: shown ?? -1)
            cache.apply(.fetched(id: id, state, since: asked), tenant: tenant)
        }
    }

    private static let batchSize = Recorder(label: "products_flush_batch_operations", aggregate: true)

    private static func flushDuration(outcome: String) -> Metrics.Timer {
        Metrics.Timer(label: "products_flush_duration", dimensions: [("outcome", outcome)])
    }

    /// The leading entries whose lines fit a batch body: at least one, and at most a quarter of the Database
    /// Service's limit (a product with a 40,000-character description can take 240 KB).
    static func withinBodyLimit(_ entries: [JournalEntry]) -> [JournalEntry] {
        var total = 0
        let count = entries.prefix { entry in
            total += entry.line.readableBytes + 1
            return total <= ServiceContract.maxBatchBodySize / 4
        }.count
        return Array(entries.prefix(max(count, 1)))
    }

    /// Keeps only the newest entry of each product, in the order of first appearance, each with the time it was
    /// recorded (the Database Service refuses one recorded before its tombstone horizon for a product it lacks).
    static func coalesce(_ entries: [JournalEntry]) -> [JournalEntry] {
        struct Key: Hashable { var tenant: String; var id: String }
        var newest: [Key: Int] = [:]
        var kept: [JournalEntry] = []
        for entry in entries {
            let operation = entry.operation
            let key = Key(tenant: operation.tenant, id: operation.productID)
            if let index = newest[key] {
                if operation.version > kept[index].operation.version { kept[index] = entry }
            } else {
                newest[key] = kept.count
                kept.append(entry)
            }
        }
        return kept
    }
}
