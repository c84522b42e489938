import Foundation
import Shared

/// A product another replica created moments ago: behind a round-robin load balancer, a client may read, change
/// or delete it here before this replica's feed (or the Database Service, which the other replica's worker fills
/// within milliseconds) has it. Product ids are ULIDs, so a miss on an id minted in the last few seconds waits a
/// little, cheaply, before it is a 404.
extension Replica {
    /// How recent an id's mint time must be for a miss to wait (and how far ahead of this clock it may be).
    static let recentWindow: TimeInterval = 5
    /// The longest a miss waits.
    static let recentWait: Duration = .seconds(1)
    /// How often the cache is looked at meanwhile; the Database Service is asked only twice, at 250 ms and at the end.
    static let recentPoll: Duration = .milliseconds(20)
    /// Misses waiting at once, at most; more answer at once (a bound on what made-up fresh ids can hold).
    static let maxRecentWaiters = 512

    /// Whether `id` is a product id minted within `recentWindow` of now.
    static func isRecent(_ id: String, now: Date = Date()) -> Bool {
        guard let minted = ProductIDGenerator.mintTime(of: id) else { return false }
        return abs(minted.timeIntervalSince(now)) <= recentWindow
    }

    /// For a miss on a recently minted id: asks `find` again until it has an answer or `recentWait` has passed,
    /// with `askDatabase` true twice (at 250 ms and at the end), false otherwise (look at the cache only). Nil at
    /// once for an id that is not recent, or when `maxRecentWaiters` already wait.
    func awaitingRecent<T>(id: String, _ find: (_ askDatabase: Bool) async throws -> T?) async throws -> T? {
        guard Self.isRecent(id) else { return nil }
        guard recentWaiters.wrappingAdd(1, ordering: .relaxed).newValue <= Self.maxRecentWaiters else {
            recentWaiters.wrappingSubtract(1, ordering: .relaxed)
            return nil
        }
        defer { recentWaiters.wrappingSubtract(1, ordering: .relaxed) }
        let start = ContinuousClock.now
        let deadline = start + Self.recentWait
        var databaseAsks = [start + .milliseconds(250), deadline]
        while true {
            try await Task.sleep(for: Self.recentPoll)
            let now = ContinuousClock.now
            let ask = databaseAsks.first.map { now >= $0 } ?? false
            if ask { databaseAsks.removeFirst() }
            if let found = try await find(ask) { return found }
            if databaseAsks.isEmpty { return nil }
        }
    }
}
