import Foundation
import GRDB
import GRDBSQLite
import NIOCore
import Shared

/// The change log on SQLite.
struct SQLiteChangeStore: ChangeStore, SQLiteFeatureStore {
    let database: SQLiteStore


    func changes(after cursor: ChangeCursor, limit: Int) async throws -> ChangeRead {
        try await read { db in
            // One read transaction: the rows and the purge mark come from the same snapshot.
            let purged = try Int64.fetchOne(db, sql: "SELECT purged_position FROM change_log_state WHERE id = 1") ?? 0
            guard cursor.position >= purged else { return .expired(purgedThrough: ChangeCursor(transaction: 0, position: purged)) }
            let rows = try GRDB.Row.fetchAll(
                db,
                sql: """
                    SELECT \(Self.changeColumns) FROM product_changes WHERE position > ? ORDER BY position LIMIT ?
                    """,
                arguments: [cursor.position, limit])
            var page = ChangeLogPage(changes: [], next: cursor)
            for row in rows {
                page.changes.append(Self.change(from: row))
                page.next = ChangeCursor(transaction: 0, position: row["position"])
                page.recordedAtMs = row["recorded_ms"]
            }
            return .page(page)
        }
    }

    func changeHead() async throws -> ChangeCursor {
        try await read { db in
            let position = try Int64.fetchOne(
                db, sql: "SELECT MAX(position) FROM (SELECT MAX(position) AS position FROM product_changes UNION ALL SELECT purged_position FROM change_log_state)")
            return ChangeCursor(transaction: 0, position: position ?? 0)
        }
    }

    func purgeChanges(recordedBefore cutoffMs: Int64) async throws -> Int {
        var purged = 0
        while true {
            let count = try await write { db -> Int in
                // The oldest changes, up to the first one still within retention: the log only loses a prefix.
                let rows = try GRDB.Row.fetchAll(
                    db, sql: "SELECT position, recorded_ms FROM product_changes ORDER BY position LIMIT ?", arguments: [Self.purgeBatch])
                guard let last = rows.prefix(while: { $0["recorded_ms"] < cutoffMs }).last else { return 0 }
                let through: Int64 = last["position"]
                try db.execute(sql: "DELETE FROM product_changes WHERE position <= ?", arguments: [through])
                let deleted = db.changesCount
                try db.execute(sql: "UPDATE change_log_state SET purged_position = max(purged_position, ?) WHERE id = 1", arguments: [through])
                return deleted
            }
            purged += count
            if count < Self.purgeBatch { return purged }
        }
    }

    /// One process serves a SQLite file: its own commits signal directly.
    func listenForChanges() async {}
}

/// The change log's rows, which product writes log into and webhooks read.
extension SQLiteFeatureStore {
    static var purgeBatch: Int { 5000 }

    static var changeColumns: String { "position, tenant, product_id, version, op, changed_at, recorded_ms, product, event_type" }

    static func record(_ change: LoggedChange, with writes: Writes) throws {
        let log = writes.log
        log.bind(change.tenant)
        log.bind(change.id)
        log.bind(change.version)
        log.bind(change.op.rawValue)
        log.bind(change.changedAt)
        log.bind(Timestamp.nowMilliseconds())
        if let product = change.productJSON { log.bind(product) } else { log.bind(nil as Int64?) }
        log.bind(change.eventType.rawValue)
        try log.execute()
    }

    static func change(from row: GRDB.Row) -> LoggedChange {
        LoggedChange(
            tenant: row["tenant"], id: row["product_id"], version: row["version"],
            op: Change.Operation(rawValue: row["op"]) ?? .delete, changedAt: row["changed_at"], productJSON: row["product"],
            eventType: (row["event_type"] as String?).flatMap(EventType.init(rawValue:)),
            cursor: ChangeCursor(transaction: 0, position: row["position"]), recordedMs: row["recorded_ms"])
    }
}
