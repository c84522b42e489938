import Logging
import ServiceLifecycle
import Shared

/// Tells the Database Service every second what this replica's writes are confirmed through
/// (`Journal.clearThroughMs`): another replica asked for a product it cannot find then knows whether this one may
/// still hold its create unconfirmed (`Replica.awaitingRecent`). Stopped with nothing unconfirmed, it says it holds
/// nothing.
struct BacklogReporter: Service {
    let replica: Replica
    let logger: Logger
    var interval: Duration = .seconds(1)

    func run() async throws {
        try? await cancelWhenGracefulShutdown { () async throws in
            var failures = 0
            while !Task.isCancelled {
                if await report(replica.journal.clearThroughMs) {
                    failures = 0
                } else {
                    failures += 1
                    if failures == 1 || failures % 60 == 0 {
                        logger.warning("the backlog report did not reach the Database Service", metadata: ["attempt": "\(failures)"])
                    }
                }
                try await Task.sleep(for: interval)
            }
        }
        // Stopped after the worker's last flush: with nothing left unconfirmed, no create of this replica is missing.
        if replica.journal.backlog.count == 0 { _ = await report(.max) }
    }

    /// Sends one report once the writer number is granted; whether it was taken.
    private func report(_ clearThroughMs: Int64) async -> Bool {
        guard replica.writerConfirmed.load(ordering: .acquiring), let node = replica.writerNode else { return true }
        do {
            try await replica.database.reportBacklog(node: node, BacklogReport(clearThroughMs: clearThroughMs))
            return true
        } catch {
            logger.debug("backlog report failed", metadata: ["error": "\(error)"])
            return false
        }
    }
}
