import Synchronization

/// How a retried call waits between tries: doubling from `base` up to `cap`, each wait drawn between half and
/// all of that ("equal jitter"), so that replicas failing together do not retry in step.
package struct RetryPolicy: Sendable {
    package var base: Duration
    package var cap: Duration

    package init(base: Duration, cap: Duration) {
        self.base = base
        self.cap = max(cap, base)
    }

    /// The wait before try `failures + 1`, after `failures` (1 or more) failed in a row.
    package func delay(afterFailures failures: Int) -> Duration {
        let doubled = base * Int(1 << min(max(failures - 1, 0), 20))
        return min(doubled, cap) * Double.random(in: 0.5...1.0)
    }

    /// Sleeps the wait after `failures` failures, at most until `deadline`; false when cancelled.
    @discardableResult
    package func wait(afterFailures failures: Int, until deadline: ContinuousClock.Instant? = nil) async -> Bool {
        var delay = delay(afterFailures: failures)
        if let deadline { delay = min(delay, max(.zero, deadline - .now)) }
        return (try? await Task.sleep(for: delay)) != nil
    }
}

/// A call that did not finish within its deadline.
package struct DeadlineExceeded: Error, CustomStringConvertible {
    package let after: Duration
    package var description: String { "timed out after \(after)" }
}

/// Runs `operation`, cancelling it and throwing `DeadlineExceeded` when it has not finished within `timeout`.
/// The operation's own error is thrown as it is; cancelling the caller cancels the operation. Like any task group,
/// it returns once the operation has ended: one that ignores cancellation (a blocking DNS lookup) is waited for.
package func withDeadline<T: Sendable>(
    _ timeout: Duration, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw DeadlineExceeded(after: timeout)
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// Runs `operation` in a task of its own; returns its result, or throws `DeadlineExceeded` after `timeout` without
/// waiting for it: the operation is cancelled and left to end by itself. For calls that may not honour cancellation
/// soon (a connection pool's wait for a connection, a server that accepts and never answers).
package func withAbandonedDeadline<T: Sendable>(
    _ timeout: Duration, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let work = Task { try await operation() }
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let pending = OnceContinuation(continuation)
            let timer = Task {
                try? await Task.sleep(for: timeout)
                guard let continuation = pending.take() else { return }
                work.cancel()
                continuation.resume(throwing: DeadlineExceeded(after: timeout))
            }
            Task {
                let result = await work.result
                timer.cancel()
                pending.take()?.resume(with: result)
            }
        }
    } onCancel: {
        work.cancel()
    }
}

/// A continuation resumed by whichever of several callers comes first; the others do nothing.
package final class OnceContinuation<T: Sendable>: Sendable {
    private let continuation: Mutex<CheckedContinuation<T, any Error>?>
    package init(_ continuation: CheckedContinuation<T, any Error>) { self.continuation = Mutex(continuation) }
    package func take() -> CheckedContinuation<T, any Error>? { continuation.withLock { $0.take() } }
    package func resume(with result: Result<T, any Error>) { take()?.resume(with: result) }
}
