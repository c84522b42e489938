import Foundation
import Shared
import Synchronization

/// A product another replica created moments ago: behind a round-robin load balancer, a client may read, change
/// or delete it here before this replica's feed (or the Database Service, which the other replica's worker fills
/// within milliseconds) has it. Product ids are ULIDs, so a miss on an id minted in the last few seconds waits a
/// little, cheaply, before it is a 404.
///
/// The other replica may also still hold the create unconfirmed for longer: killed before its worker sent it, or
/// cut off from the Database Service. Every replica reports every second what its writes are confirmed through
/// (`BacklogReporter`); a miss is a 404 only once every other replica seen in the last minute vouches for the
/// id's mint time, and a 503 `product_unconfirmed` when one still does not 6 s after it.
extension Replica {
    /// How recent an id's mint time must be for a miss to wait (and how far ahead of this clock it may be).
    static let recentWindow: TimeInterval = 5
    /// The longest a miss waits for the feed or the Database Service.
    static let recentWait: Duration = .seconds(1)
    /// How often the cache is looked at meanwhile; the Database Service is asked only twice, at 250 ms and at the end.
    static let recentPoll: Duration = .milliseconds(20)
    /// Misses waiting at once, at most; more answer at once (a bound on what made-up fresh ids can hold).
    static let maxRecentWaiters = 512
    /// A replica whose last backlog report is older than this is presumed gone: its unconfirmed writes, if any,
    /// are not waited for.
    static let reportHorizonMs: Int64 = 60_000
    /// How long after an id's mint time a miss waits for every other replica to vouch for it, before a 503.
    static let vouchWaitMs: Int64 = 6_000
    /// How often a miss waiting for that looks again.
    static let vouchPoll: Duration = .milliseconds(250)

    /// Whether `id` is a product id minted within `recentWindow` of now.
    static func isRecent(_ id: String, now: Date = Date()) -> Bool {
        guard let minted = ProductIDGenerator.mintTime(of: id) else { return false }
        return abs(minted.timeIntervalSince(now)) <= recentWindow
    }

    /// For a miss on a product id: asks `find` again until it has an answer, with `askDatabase` true when the
    /// Database Service is to be asked, false to look at the cache only. An id minted in the last seconds is waited
    /// for up to `recentWait` (the Database Service asked at 250 ms and at the end); then, for any product id, nil
    /// only once no other replica may hold its create unconfirmed, else 503 `product_unconfirmed`. Nil at once
    /// for an id this replica did not mint the kind of, or when `maxRecentWaiters` already wait.
    func awaitingRecent<T>(id: String, _ find: (_ askDatabase: Bool) async throws -> T?) async throws -> T? {
        guard let minted = ProductIDGenerator.mintMilliseconds(of: id) else { return nil }
        guard recentWaiters.wrappingAdd(1, ordering: .relaxed).newValue <= Self.maxRecentWaiters else {
            recentWaiters.wrappingSubtract(1, ordering: .relaxed)
            return nil
        }
        defer { recentWaiters.wrappingSubtract(1, ordering: .relaxed) }
        if Self.isRecent(id) {
            let start = ContinuousClock.now
            let deadline = start + Self.recentWait
            var databaseAsks = [start + .milliseconds(250), deadline]
            while !databaseAsks.isEmpty {
                try await Task.sleep(for: Self.recentPoll)
                let now = ContinuousClock.now
                let ask = databaseAsks.first.map { now >= $0 } ?? false
                if ask { databaseAsks.removeFirst() }
                if let found = try await find(ask) { return found }
            }
        }
        return try await unlessHeldElsewhere(id: id, minted: minted, find)
    }

    /// Nil once every other replica vouches that it holds no unconfirmed create of an id minted at `minted`, the
    /// Database Service being asked after each vouching report was made; what `find` answers if it appears
    /// meanwhile; 503 `product_unconfirmed` if a replica still does not vouch `vouchWaitMs` after the mint time.
    private func unlessHeldElsewhere<T>(id: String, minted: Int64, _ find: (_ askDatabase: Bool) async throws -> T?) async throws -> T? {
        // Never longer than `vouchWaitMs` from now either: an id may claim a mint time far ahead.
        let giveUp = min(minted, Timestamp.nowMilliseconds()) + Self.vouchWaitMs
        while true {
            let holders = try await possibleHolders(mintedAtMs: minted)
            if holders.isEmpty { return try await find(true) }
            if Timestamp.nowMilliseconds() >= giveUp {
                throw APIError.serviceUnavailable(
                    "product_unconfirmed",
                    "Product \(id) is not found here, but it may have been created on another replica (writer \(holders.map(String.init).joined(separator: ", "))) that has not stored it yet; retry")
            }
            try await Task.sleep(for: Self.vouchPoll)
            if let found = try await find(true) { return found }
        }
    }

    /// The other replicas, seen within `reportHorizonMs`, that may hold an unconfirmed create of an id minted at
    /// `mintedAtMs`.
    func possibleHolders(mintedAtMs: Int64) async throws -> [Int64] {
        let reports: [WriterBacklog]
        do { reports = try await peerBacklogs.reports(from: database) } catch {
            throw APIError.serviceUnavailable("database_unavailable", "The other replicas' backlogs could not be read: \(error)")
        }
        let own = writerNode
        return reports.filter { $0.node != own && $0.reportedAgoMs <= Self.reportHorizonMs && $0.clearThroughMs < mintedAtMs }.map(\.node)
    }
}

/// The other replicas' backlog reports, fetched at most every 250 ms however many misses ask.
final class PeerBacklogs: Sendable {
    private let last = Mutex<(fetched: ContinuousClock.Instant, reports: [WriterBacklog])?>(nil)
    static let freshFor: Duration = .milliseconds(250)

    func reports(from database: any DatabaseServiceClient) async throws(DatabaseClientError) -> [WriterBacklog] {
        if let last = last.withLock({ $0 }), ContinuousClock.now - last.fetched < Self.freshFor { return last.reports }
        let reports = try await database.writerBacklogs()
        last.withLock { $0 = (ContinuousClock.now, reports) }
        return reports
    }
}
