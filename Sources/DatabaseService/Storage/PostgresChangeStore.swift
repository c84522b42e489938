import Foundation
import Logging
import NIOCore
import PostgresNIO
import ServiceLifecycle
import Shared

/// The change log on PostgreSQL.
struct PostgresChangeStore: ChangeStore, PostgresFeatureStore {
    let database: PostgresStore






    // Reading below the horizon. Positions come from a sequence, taken when a row is inserted, but transactions
    // commit in any order: a reader that saw position 12 committed may later see 11 appear, when the slower
    // transaction that took 11 commits. Ordering by position alone would skip 11 for good. Instead every row
    // carries its transaction's id, and a reader returns only rows whose transaction id is below
    // `pg_snapshot_xmin(pg_current_snapshot())`, the oldest transaction still running anywhere: every
    // transaction below it has committed or aborted, so the rows below it are final and no row can appear among
    // them later. Rows are returned in (transaction id, position) order, and a cursor is such a pair. A long
    // transaction delays the feed (by its duration); it never makes the feed skip a change.

    func changes(after cursor: ChangeCursor, limit: Int) async throws -> ChangeRead {
        let rows = try await query(Self.settledChanges(after: cursor, limit: limit), logger: logger)
        var page = ChangeLogPage(changes: try await Self.changes(rows), next: cursor)
        if let last = page.changes.last {
            page.next = last.cursor ?? cursor
            page.recordedAtMs = last.recordedMs
        }
        // Read after the rows: a purge that raced this read shows here, and the page is not trusted.
        let purged = try await purgedThrough()
        if cursor < purged { return .expired(purgedThrough: purged) }
        return .page(page)
    }



    func purgedThrough() async throws -> ChangeCursor {
        let rows = try await query("SELECT purged_transaction, purged_position FROM change_log_state WHERE id = 1", logger: logger)
        for try await (transaction, position) in rows.decode((Int64, Int64).self) {
            return ChangeCursor(transaction: transaction, position: position)
        }
        return .start
    }

    func changeHead() async throws -> ChangeCursor {
        let rows = try await query(
            PostgresQuery(unsafeSQL: """
                SELECT transaction_id, position FROM product_changes WHERE transaction_id < \(Self.horizon)
                ORDER BY transaction_id DESC, position DESC LIMIT 1
                """),
            logger: logger)
        var head = try await purgedThrough()
        for try await (transaction, position) in rows.decode((Int64, Int64).self) {
            head = max(head, ChangeCursor(transaction: transaction, position: position))
        }
        return head
    }

    func purgeChanges(recordedBefore cutoffMs: Int64) async throws -> Int {
        var purged = 0
        while true {
            let count = try await transaction(logger: logger) { connection -> Int in
                let rows = try await connection.query(
                    PostgresQuery(unsafeSQL: """
                        SELECT transaction_id, position, recorded_ms FROM product_changes WHERE transaction_id < \(Self.horizon)
                        ORDER BY transaction_id, position LIMIT \(Self.purgeBatch)
                        """),
                    logger: self.logger)
                // The oldest changes, up to the first one still within retention: the log only loses a prefix.
                var through: ChangeCursor?
                var count = 0
                for try await (transaction, position, recordedMs) in rows.decode((Int64, Int64, Int64).self) {
                    guard recordedMs < cutoffMs else { break }
                    through = ChangeCursor(transaction: transaction, position: position)
                    count += 1
                }
                guard let through else { return 0 }
                try await connection.query(
                    """
                    DELETE FROM product_changes WHERE (transaction_id, position) <= (\(through.transaction), \(through.position))
                    """, logger: self.logger)
                try await connection.query(
                    """
                    UPDATE change_log_state SET purged_transaction = \(through.transaction), purged_position = \(through.position)
                    WHERE id = 1 AND (purged_transaction, purged_position) < (\(through.transaction), \(through.position))
                    """, logger: self.logger)
                return count
            }
            purged += count
            if count < Self.purgeBatch { return purged }
        }
    }



    /// Signals `changeSignal` on every notification of any process's commits, until cancelled; reconnects
    /// after a failure. Holds one pooled connection, so not with a pool of one: readers then see other
    /// processes' changes on their 0.5 s re-read.
    func listenForChanges() async {
        guard database.maximumConnections > 1 else {
            logger.notice("not listening for other processes' changes with a pool of one connection; feed readers re-read every 0.5 s")
            return
        }
        while !Task.isCancelled {
            do {
                try await database.pool.withConnection { connection in
                    try await connection.listen(on: Self.changesChannel) { notifications in
                        // Whatever committed while not listening is caught up by the readers' next look.
                        self.changeSignal.signal()
                        for try await _ in notifications { self.changeSignal.signal() }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("listening for change notifications failed; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }
}
