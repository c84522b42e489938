import Foundation
import Testing

@testable import ProductsService
import Shared

/// A fresh temporary directory.
func temporaryDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("products-test-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A product of the default tenant.
func product(_ id: String, version: Int64 = 1, name: String? = nil, type: String = "physical") -> Product {
    let now = Timestamp.now()
    return Product(id: id, name: name ?? id, type: type, metadata: [:], createdAt: now, updatedAt: now, version: version)
}

/// An upsert of `product(id)` for the default tenant.
func upsert(_ id: String, version: Int64 = 1, name: String = "Name") -> WriteOperation {
    .upsert(tenant: defaultTenant, product: product(id, version: version, name: name))
}

/// Polls `condition` every 10 ms for up to `timeout`; records an issue if it never holds.
func waitFor(_ what: String, timeout: Duration = .seconds(4), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    Issue.record("timed out waiting for \(what)")
}

/// A clock a test moves by hand.
final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current = ContinuousClock.now

    var now: ContinuousClock.Instant { lock.withLock { current } }

    func advance(by duration: Duration) {
        lock.withLock { current += duration }
    }
}

/// Holds the journal's group commit before it writes, so a write stays in flight while the test looks.
final class HeldGroup: @unchecked Sendable {
    private let condition = NSCondition()
    private var held = false
    private var holding = false

    func hold() { condition.withLock { held = true } }

    func release() {
        condition.withLock {
            held = false
            condition.broadcast()
        }
    }

    /// Called on the journal's I/O thread.
    func wait() {
        condition.withLock {
            while held {
                holding = true
                condition.wait()
            }
            holding = false
        }
    }

    func waitUntilHolding() async throws {
        for _ in 0..<500 {
            if condition.withLock({ holding }) { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("no group commit reached the hold")
    }
}
