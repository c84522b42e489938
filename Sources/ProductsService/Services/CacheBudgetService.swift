import Logging
import ServiceLifecycle

/// Keeps the cache within `--cache-budget` once the catalog is loaded: every `interval` it evicts the least
/// recently used shops while the cache is over its budget, and brings back a shop used since its eviction when
/// there is room (`Replica.readmitRecentlyUsed`). Without a budget it only waits for shutdown.
struct CacheBudgetService: Service {
    let replica: Replica
    let interval: Duration
    let logger: Logger

    func run() async throws {
        if replica.replication.cacheBudget != nil {
            try? await cancelWhenGracefulShutdown { () async throws in
                while !Task.isCancelled {
                    try await Task.sleep(for: interval)
                    guard replica.isLoaded else { continue }
                    replica.replication.enforceBudget(logger: logger)
                    do {
                        try await replica.replication.readmitRecentlyUsed(logger: logger)
                    } catch {
                        logger.warning("bringing a shop back into the cache failed; it is tried again later", metadata: ["error": "\(error)"])
                    }
                }
            }
        }
        // A service that returns ends the group: wait for shutdown instead.
        try? await gracefulShutdown()
    }
}
