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

/// Shuts the shared HTTP client down last, after the worker's final flush.
struct HTTPClientCloser: Service {
    let client: HTTPClient

    func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}
