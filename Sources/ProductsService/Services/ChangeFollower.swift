import Foundation
import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import Shared
import Synchronization

/// Where this replica stands on the Database Service's change feed, for `/health` and `/metrics`.
final class FeedState: Sendable {
    struct Snapshot: Sendable {
        /// The last change applied (or the load's starting point); nil until following.
        var cursor: ChangeCursor?
        /// Where the last full load started: everything before it is in the cache.
        var loadedThrough: ChangeCursor?
        var applied = 0
        /// The last call to the feed failed.
        var failing = false
        var lastError: String?
        var lastErrorAt: String?
        /// When the feed last answered that nothing newer existed (the send time of that long poll).
        var caughtUpAt: ContinuousClock.Instant?
        /// A long poll sent while caught up and not yet answered: the Database Service answers it at once when
        /// a change commits, so until its wait runs out the replica is current.
        var waitingSince: ContinuousClock.Instant?
        var waitLimit: Duration = .seconds(15)

        /// Seconds since the replica last knew it had every change; 0 while it does.
        func lagSeconds(now: ContinuousClock.Instant = .now) -> Double? {
            if let waitingSince, now - waitingSince < waitLimit { return 0 }
            return caughtUpAt.map { max(0, (now - $0).seconds) }
        }
    }

    private let state = Mutex(Snapshot())

    var snapshot: Snapshot { state.withLock { $0 } }

    func loaded(through cursor: ChangeCursor) {
        state.withLock {
            $0.loadedThrough = cursor
            $0.cursor = cursor
        }
    }

    func update(_ body: (inout Snapshot) -> Void) { state.withLock { body(&$0) } }
}

/// Follows the Database Service's change log, so that writes made through other replicas (or directly) reach
/// this replica's cache within moments: by version, so repeats and reordering are harmless, deletes included.
///
/// It starts once the catalog is loaded, from the cursor it saved last (catching up on deletes it missed while
/// down) or else from where the load started. A cursor past the log's retention means a full reload.
struct ChangeFollower: Service {
    let replica: Replica
    let cursorFile: String?
    let logger: Logger
    /// How long one long poll waits for a change.
    var wait: Duration = .seconds(10)
    var retryMaxDelay: Duration = .seconds(5)
    /// After a page of changes, how long to let more gather before asking again: under a steady stream of
    /// writes this turns hundreds of small polls a second into a few larger ones, for a few milliseconds of lag.
    var gatherInterval: Duration = .milliseconds(20)

    func run() async throws {
        try? await cancelWhenGracefulShutdown { () async throws in try await self.follow() }
        // A service that returns ends the group: wait for shutdown instead.
        try? await gracefulShutdown()
    }

    private func follow() async throws {
        while !replica.isLoaded { try await Task.sleep(for: .milliseconds(50)) }
        guard let loadedThrough = replica.replication.feed.snapshot.loadedThrough else { return }
        let saved = cursorFile.flatMap(Self.readCursor)
        var cursor = min(saved ?? loadedThrough, loadedThrough)
        var catchUpThrough: ChangeCursor? = cursor < loadedThrough ? loadedThrough : nil
        var savedCursor = saved
        var lastSave = ContinuousClock.now
        var failures = 0
        logger.info("following changes", metadata: ["after": "\(cursor)", "loaded_through": "\(loadedThrough)"])
        replica.replication.feed.update {
            $0.cursor = cursor
            $0.waitLimit = wait + .seconds(5)
        }
        defer { save(cursor, previous: savedCursor) }
        while !Task.isCancelled {
            let sent = ContinuousClock.now
            do {
                let read = try await replica.replication.changes(after: cursor, wait: wait)
                guard case .page(let page) = read else {
                    if read == .wentBack {
                        // Changes this replica applied are not in the log: the database was restored from an older
                        // backup, or failed over to a standby that had not received them. What it holds now is the
                        // truth to follow, even where this replica holds newer versions.
                        logger.error("the database lost changes this replica had seen; reloading the catalog from it", metadata: ["after": "\(cursor)"])
                    } else {
                        logger.warning("the change log no longer reaches back to this replica's cursor; reloading the catalog", metadata: ["after": "\(cursor)"])
                    }
                    try await replica.replication.load(logger: logger, databaseWentBack: read == .wentBack)
                    cursor = replica.replication.feed.snapshot.loadedThrough ?? cursor
                    catchUpThrough = nil
                    continue
                }
                failures = 0
                let deletesOnly = catchUpThrough.map { page.next <= $0 } ?? false
                let applied = try await replica.replication.apply(page.changes, deletesOnly: deletesOnly)
                if let through = catchUpThrough, page.next >= through { catchUpThrough = nil }
                cursor = page.next
                let caughtUp = page.changes.count < 1000
                replica.replication.feed.update { state in
                    state.cursor = cursor
                    state.failing = false
                    state.applied += applied
                    if caughtUp {
                        state.caughtUpAt = sent
                        state.waitingSince = .now
                    } else {
                        state.waitingSince = nil
                    }
                }
                Self.appliedCounter.increment(by: applied)
                if let recorded = page.recordedAtMs {
                    Self.delay.recordSeconds(Double(max(0, Timestamp.nowMilliseconds() - recorded)) / 1000)
                }
                if ContinuousClock.now - lastSave > .seconds(1), savedCursor != cursor {
                    save(cursor, previous: savedCursor)
                    savedCursor = cursor
                    lastSave = .now
                }
                if caughtUp, !page.changes.isEmpty { try await Task.sleep(for: gatherInterval) }
            } catch {
                if Task.isCancelled { return }
                failures += 1
                replica.replication.feed.update { state in
                    state.failing = true
                    state.lastError = "\(error)"
                    state.lastErrorAt = Timestamp.now()
                    state.waitingSince = nil
                }
                if failures == 1 || failures % 20 == 0 {
                    logger.warning("following changes failed; retrying", metadata: ["attempt": "\(failures)", "error": "\(error)"])
                }
                guard await RetryPolicy(base: .milliseconds(200), cap: retryMaxDelay).wait(afterFailures: failures) else { return }
            }
        }
    }

    /// Saves the cursor (atomically, durably); a lost save only means re-applying some changes, harmlessly.
    private func save(_ cursor: ChangeCursor, previous: ChangeCursor?) {
        guard let cursorFile, cursor != previous else { return }
        do {
            try DurableFile.replace(cursorFile, with: ByteBuffer(string: cursor.description + "\n"))
        } catch {
            logger.warning("saving the change cursor failed", metadata: ["file": "\(cursorFile)", "error": "\(error)"])
        }
    }

    static func readCursor(_ path: String) -> ChangeCursor? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return ChangeCursor(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    private static let appliedCounter = Counter(label: "products_feed_changes_applied")
    /// From the Database Service recording a change to this replica applying it (clocks of two machines).
    private static let delay = Metrics.Timer(label: "products_feed_delay")
}
