import Metrics

/// `database_storage_query_duration_seconds{operation, backend}`: every store call's trip to its database, timed
/// once, where the backends reach their database, and named by the store method that made it.
enum StoreMetrics {
    static func timed<T>(_ function: String, backend: String, _ body: () async throws -> T) async rethrows -> T {
        let started = ContinuousClock.now
        defer { record(function, backend: backend, since: started) }
        return try await body()
    }

    static func record(_ function: String, backend: String, since started: ContinuousClock.Instant) {
        Timer(label: "database_storage_query_duration", dimensions: [("operation", operation(function)), ("backend", backend)])
            .recordInterval(since: started)
    }

    /// The method's base name: `product(tenant:id:)` is `product`.
    static func operation(_ function: String) -> String { String(function.prefix { $0 != "(" }) }
}
