import AsyncHTTPClient
import ServiceLifecycle

/// Closes the journal once every service after it in the group (the server, the worker) has stopped.
struct JournalCloser: Service {
    let journal: Journal

    func run() async throws {
        try? await gracefulShutdown()
        journal.close()
    }
}

/// Tries a failed journal's disk again every `interval` (`Journal.resume`), so that writes are taken again by
/// themselves once the fault is gone, a full disk with room again, say.
struct JournalRecoveryService: Service {
    let journal: Journal
    var interval: Duration = .seconds(1)

    func run() async throws {
        try? await cancelWhenGracefulShutdown { () async throws in
            while !Task.isCancelled {
                try await Task.sleep(for: interval)
                if journal.backlog.failure != nil { await journal.resume() }
            }
        }
    }
}

/// Shuts the shared HTTP client down last, after the worker's final flush.
struct HTTPClientCloser: Service {
    let client: HTTPClient

    func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}
