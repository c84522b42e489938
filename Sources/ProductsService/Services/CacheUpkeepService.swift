import Logging
import ServiceLifecycle

/// Keeps the cache within its bounds, every `interval`: ages every shop's tombstones (`--tombstone-retention`), so
/// that an idle shop keeps none past it; and under `--cache-budget`, once every shop is loaded, evicts the least
/// recently used shops while the cache is over its budget, and brings back a shop used since its eviction when
/// there is room (`Replication.readmitRecentlyUsed`).
struct CacheUpkeepService: Service {
    let replica: Replica
    let interval: Duration
    let logger: Logger

    func run() async throws {
        try? await cancelWhenGracefulShutdown { () async throws in
            while !Task.isCancelled {
                try await Task.sleep(for: interval)
                replica.cache.ageTombstones()
                guard replica.replication.cacheBudget != nil, replica.isLoaded else { continue }
                replica.replication.enforceBudget(logger: logger)
                do {
                    try await replica.replication.readmitRecentlyUsed(logger: logger)
                } catch {
                    logger.warning("bringing a shop back into the cache failed; it is tried again later", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
