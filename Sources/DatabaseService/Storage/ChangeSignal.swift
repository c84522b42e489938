import Synchronization

/// Wakes the change feed's long polls when changes may have committed. A hint only: readers re-read the log
/// on a short tick as well, so a signal that is lost costs at most that tick.
final class ChangeSignal: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var waiters: [ObjectIdentifier: Waiter] = [:]
    }

    /// One suspended `wait`, resumed exactly once: by a signal, or by its timeout or cancellation.
    private final class Waiter: Sendable {
        private let continuation = Mutex<(CheckedContinuation<Void, Never>?, finished: Bool)>((nil, false))

        /// Parks `continuation` unless the waiter already finished; returns false when it should resume now.
        func park(_ newContinuation: CheckedContinuation<Void, Never>) -> Bool {
            continuation.withLock { state in
                if state.finished { return false }
                state.0 = newContinuation
                return true
            }
        }

        func finish() {
            let parked = continuation.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state = (nil, true) }
                return state.finished ? nil : state.0
            }
            parked?.resume()
        }
    }

    private let state = Mutex(State())

    /// Changes seen so far; pass it to `wait` to sleep only if nothing happened since.
    var generation: UInt64 { state.withLock { $0.generation } }

    /// Wakes every waiter.
    func signal() {
        let waiters = state.withLock { state in
            state.generation &+= 1
            defer { state.waiters.removeAll(keepingCapacity: true) }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.finish() }
    }

    /// Returns when a signal comes after `generation`, after `timeout`, or when the task is cancelled.
    func wait(after generation: UInt64, timeout: Duration) async {
        let waiter = Waiter()
        let key = ObjectIdentifier(waiter)
        let registered = state.withLock { state -> Bool in
            guard state.generation == generation else { return false }
            state.waiters[key] = waiter
            return true
        }
        guard registered else { return }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            waiter.finish()
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if !waiter.park(continuation) { continuation.resume() }
            }
        } onCancel: {
            waiter.finish()
        }
        timer.cancel()
        state.withLock { _ = $0.waiters.removeValue(forKey: key) }
    }
}
