import Logging
import ServiceLifecycle
import Shared

/// Loads the full catalog from the Database Service at start, retrying in the background until it succeeds.
struct ReplicaLoader: Service {
    let replica: Replica
    let retryMaxDelay: Duration
    let logger: Logger

    func run() async throws {
        try? await cancelWhenGracefulShutdown { () async throws in await self.loadUntilDone() }
        // A service that returns ends the group: once loaded, wait for shutdown instead.
        try? await gracefulShutdown()
    }

    private func loadUntilDone() async {
        let started = ContinuousClock.now
        var attempt = 0
        while !Task.isCancelled {
            attempt += 1
            do {
                try await replica.replication.load(logger: logger)
                logger.notice(
                    "catalog loaded; ready",
                    metadata: ["products": "\(replica.totals.products)", "seconds": "\((ContinuousClock.now - started).seconds)"])
                return
            } catch {
                if Task.isCancelled { return }
                logger.warning(
                    "loading the catalog failed; serving from the journal and retrying",
                    metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                await RetryPolicy(base: .milliseconds(400), cap: retryMaxDelay).wait(afterFailures: attempt)
            }
        }
    }
}
