import Foundation
import NIOCore
import PostgresNIO
import Shared
import Synchronization

/// The connections of one chosen server's pool that are in use: closed all at once when that server is replaced,
/// and each transaction on them given up as soon as its connection closes.
final class Leases: Sendable {
    private typealias GiveUp = @Sendable () -> Void

    private struct State {
        var closed = false
        var inUse: [ObjectIdentifier: PostgresConnection] = [:]
        /// Every connection whose closing is watched, with what to do if it closes now (nil between transactions).
        var watched: [ObjectIdentifier: GiveUp?] = [:]
    }

    private let state = Mutex(State())

    /// Registers `connection`; false once the server has been replaced.
    func add(_ connection: PostgresConnection) -> Bool {
        state.withLock { state in
            guard !state.closed else { return false }
            state.inUse[ObjectIdentifier(connection)] = connection
            return true
        }
    }

    func remove(_ connection: PostgresConnection) {
        _ = state.withLock { $0.inUse.removeValue(forKey: ObjectIdentifier(connection)) }
    }

    /// Closes every connection in use; the transactions on them end with an error.
    func closeAll() {
        let connections = state.withLock { state in
            state.closed = true
            return Array(state.inUse.values)
        }
        for connection in connections { let _: EventLoopFuture<Void> = connection.close() }
    }

    /// Runs `work` in a task of its own, and throws `PostgresUnavailable` as soon as `connection` closes, leaving
    /// `work` cancelled to end by itself: a statement it writes to the closed connection would never be answered.
    /// Cancelling the caller cancels `work` too, unless `finishing` (a transaction, once begun, is finished or
    /// rolled back).
    func whileOpen<T: Sendable>(
        _ connection: PostgresConnection, finishing: Bool, _ work: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let key = ObjectIdentifier(connection)
        let task = Task { try await work() }
        return try await withTaskCancellationHandler {
            try await watch(connection, key: key, task: task)
        } onCancel: {
            if !finishing { task.cancel() }
        }
    }

    private func watch<T: Sendable>(_ connection: PostgresConnection, key: ObjectIdentifier, task: Task<T, any Error>) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let pending = OnceContinuation(continuation)
            let giveUp: GiveUp = {
                task.cancel()
                pending.resume(with: .failure(PostgresUnavailable(reason: "the connection to the server closed")))
            }
            let firstSeen = state.withLock { state in
                defer { state.watched[key] = giveUp }
                return state.watched[key] == nil
            }
            // One callback per connection for its whole life, not one per transaction.
            if firstSeen { connection.closeFuture.whenComplete { _ in self.closed(key) } }
            if connection.isClosed { giveUp() }
            Task {
                let result = await task.result
                state.withLock { state in
                    if state.watched[key] != nil { state.watched[key] = .some(nil) }
                }
                pending.resume(with: result)
            }
        }
    }

    private func closed(_ key: ObjectIdentifier) {
        let giveUp = state.withLock { $0.watched.removeValue(forKey: key) } ?? nil
        giveUp?()
    }
}
