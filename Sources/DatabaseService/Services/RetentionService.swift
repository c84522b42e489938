import Logging
import ServiceLifecycle
import Shared

/// Runs every retention of the Database Service: purges changes (events), tombstones, finished webhook deliveries and import jobs older than the
/// retention, and idempotency answers past 24 hours; fails import jobs whose replica went silent; on PostgreSQL, listens
/// for other processes' commits so waiting readers wake at once.
struct RetentionService: Service {
    let store: any DataStore
    let retention: Duration
    var purgeInterval: Duration = .seconds(60)
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await store.changes.listenForChanges() }
                group.addTask { await purgeUntilCancelled() }
                await group.waitForAll()
            }
        }
    }

    /// Idempotency keys' answers are kept 24 hours, as the Products Service promises.
    static let answerRetentionMs: Int64 = 24 * 3600 * 1000

    private func purgeUntilCancelled() async {
        let started = ContinuousClock.now
        while !Task.isCancelled {
            let cutoff = Timestamp.nowMilliseconds() - Int64(retention.components.seconds * 1000)
                - Int64(retention.components.attoseconds / 1_000_000_000_000_000)
            do {
                let purged = try await store.changes.purgeChanges(recordedBefore: cutoff)
                if purged > 0 { logger.info("purged changes past retention", metadata: ["changes": "\(purged)"]) }
                let tombstones = try await store.products.purgeTombstones(deletedBefore: cutoff)
                if tombstones > 0 { logger.info("purged tombstones past retention", metadata: ["tombstones": "\(tombstones)"]) }
                let deliveries = try await store.webhooks.purgeDeliveries(before: cutoff)
                if deliveries > 0 { logger.info("purged webhook deliveries past retention", metadata: ["rows": "\(deliveries)"]) }
                let answers = try await store.products.purgeAnswers(createdBefore: Timestamp.nowMilliseconds() - Self.answerRetentionMs)
                if answers > 0 { logger.info("purged idempotency answers past 24 hours", metadata: ["answers": "\(answers)"]) }
                let imports = try await store.imports.purgeImports(finishedBefore: cutoff)
                if imports > 0 { logger.info("purged import jobs past retention", metadata: ["jobs": "\(imports)"]) }
                // Only once this process has been up that long: a replica cannot report while the Database Service is down.
                if ContinuousClock.now - started >= .milliseconds(ImportRules.silenceBeforeFailingMs) {
                    let now = Timestamp.nowMilliseconds()
                    let silent = try await store.imports.failSilentImports(silentSinceMs: now - ImportRules.silenceBeforeFailingMs, nowMs: now)
                    if silent > 0 { logger.warning("failed import jobs whose replica stopped reporting", metadata: ["jobs": "\(silent)"]) }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("purging the change log failed; will retry", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: purgeInterval)
        }
    }
}
