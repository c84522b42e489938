/// Serialises the persistence worker's batches with catalog reloads, and reloads with the change feed.
///
/// While a reload lists the Database Service and merges, no batch is in flight or confirmed and no feed change
/// is applied, so "pending" and "in the Database Service" cannot change under it. A task waiting for the gate
/// leaves the queue when cancelled.
actor SyncGate {
    private var held = false
    private var waiters: [(id: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
    private var nextID: UInt64 = 0

    /// Runs `body` holding the gate; throws `CancellationError` if cancelled while waiting for it.
    func withGate<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        try await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async throws {
        try Task.checkCancellation()
        if !held {
            held = true
            return
        }
        let id = nextID
        nextID += 1
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in waiters.append((id, continuation)) }
        } onCancel: {
            // Runs after the continuation is queued: this actor is busy queueing it until then.
            Task { await self.leave(id) }
        }
    }

    private func leave(_ id: UInt64) {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return }
        waiters.remove(at: index).continuation.resume(throwing: CancellationError())
    }

    private func release() {
        if waiters.isEmpty {
            held = false
        } else {
            waiters.removeFirst().continuation.resume()
        }
    }
}
