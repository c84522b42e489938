/// Serialises the persistence worker's batches with catalog reconciliation.
///
/// While a reconciliation lists the Database Service and merges, no batch is in flight or confirmed,
/// so "pending" and "in the Database Service" cannot change under it.
actor SyncGate {
    private var held = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func withGate<T: Sendable>(_ body: @Sendable () async throws -> T) async rethrows -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        if !held {
            held = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    private func release() {
        if waiters.isEmpty {
            held = false
        } else {
            waiters.removeFirst().resume()
        }
    }
}
