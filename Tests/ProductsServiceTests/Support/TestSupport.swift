import Foundation
import Testing

@testable import ProductsService
import Shared
import TestSupport

/// An upsert of `product(id)` for the default tenant.
func upsert(_ id: String, version: Int64 = 1, name: String = "Name") -> WriteOperation {
    .upsert(tenant: defaultTenant, product: product(id, version: version, name: name))
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
