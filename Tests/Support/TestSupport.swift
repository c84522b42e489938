import Foundation
import Shared

/// A product of the default tenant, created now unless `createdAt` says when.
package func product(
    _ id: String, version: Int64 = 1, name: String? = nil, type: String = "physical", metadata: [String: String] = [:],
    createdAt: String? = nil
) -> Product {
    let created = createdAt ?? Timestamp.now()
    // A handle of its own, as the services give every product they write.
    return Product(
        id: id, name: name ?? id, type: type, handle: VariantRules.handle(from: id), metadata: metadata, createdAt: created,
        updatedAt: created, version: version)
}

/// A fresh temporary directory, named after `prefix`.
package func temporaryDirectory(_ prefix: String = "products-test") throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// What a test waited for and never saw.
package struct TimedOut: Error, CustomStringConvertible {
    package let what: String
    package let lastError: (any Error)?
    package var description: String { "timed out waiting for: \(what)\(lastError.map { " (last error: \($0))" } ?? "")" }
}

/// Polls `condition` every 20 ms until it holds; throws `TimedOut` (failing the test) after `timeout`. An error
/// the condition throws counts as "not yet", and is reported if it never holds.
package func eventually(_ what: String, timeout: Duration = .seconds(120), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    var lastError: (any Error)?
    while ContinuousClock.now < deadline {
        do {
            if try await condition() { return }
        } catch {
            lastError = error
        }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw TimedOut(what: what, lastError: lastError)
}

/// A clock a test moves by hand.
package final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current = ContinuousClock.now

    package init() {}

    package var now: ContinuousClock.Instant { lock.withLock { current } }

    package func advance(by duration: Duration) {
        lock.withLock { current += duration }
    }
}
