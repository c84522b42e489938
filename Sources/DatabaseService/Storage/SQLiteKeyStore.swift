import Foundation
import GRDB
import GRDBSQLite
import NIOCore
import Shared

/// API keys and writer numbers on SQLite.
struct SQLiteKeyStore: KeyStore, SQLiteFeatureStore {
    let database: SQLiteStore

    func createKey(tenant: String, scope: KeyGrant.Scope) async throws -> (grant: KeyGrant, key: String) {
        let key = APIKey.generate()
        let grant = KeyGrant(id: APIKey.generateID(), tenant: tenant, scope: scope)
        try await write { db in
            try db.execute(
                sql: "INSERT INTO api_keys (id, tenant, scope, key_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [grant.id, tenant, scope.rawValue, APIKey.hash(key), Timestamp.now()])
        }
        return (grant, key)
    }

    func keys() async throws -> [APIKeyRecord] {
        try await read { db in
            try GRDB.Row.fetchAll(db, sql: "SELECT * FROM api_keys ORDER BY created_at, id").map { row in
                APIKeyRecord(
                    id: row["id"], tenant: row["tenant"], scope: KeyGrant.Scope(rawValue: row["scope"]) ?? .readOnly,
                    createdAt: row["created_at"], lastUsedAt: row["last_used_at"], revokedAt: row["revoked_at"])
            }
        }
    }

    func revokeKey(id: String) async throws -> Bool {
        try await write { db in
            try db.execute(
                sql: "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", arguments: [Timestamp.now(), id])
            return db.changesCount > 0
        }
    }

    func verifyKey(hash: String) async throws -> KeyGrant? {
        try await write { db in
            guard let row = try GRDB.Row.fetchOne(
                db, sql: "SELECT id, tenant, scope FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL", arguments: [hash])
            else { return nil }
            let grant = KeyGrant(id: row["id"], tenant: row["tenant"], scope: KeyGrant.Scope(rawValue: row["scope"]) ?? .readOnly)
            try db.execute(sql: "UPDATE api_keys SET last_used_at = ? WHERE id = ?", arguments: [Timestamp.now(), grant.id])
            return grant
        }
    }

    func activeKeyCount() async throws -> Int {
        try await read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL") ?? 0 }
    }

    func tenants() async throws -> [String] {
        try await read { db in
            try String.fetchAll(
                db,
                sql: """
                    SELECT DISTINCT tenant FROM products WHERE deleted = 0
                    UNION SELECT tenant FROM api_keys WHERE revoked_at IS NULL
                    ORDER BY 1
                    """)
        }
    }

    func writerNode(replicaID: String, preferred: Int64?) async throws -> Int64? {
        let now = Timestamp.nowMilliseconds()
        return try await write { db -> Int64? in
            if let node = try Int64.fetchOne(db, sql: "SELECT node FROM writer_nodes WHERE replica_id = ?", arguments: [replicaID]) {
                try db.execute(sql: "UPDATE writer_nodes SET last_seen_ms = ? WHERE node = ?", arguments: [now, node])
                return node
            }
            let taken = try GRDB.Row.fetchAll(db, sql: "SELECT node, last_seen_ms FROM writer_nodes").map { (node: $0["node"] as Int64, lastSeenMs: $0["last_seen_ms"] as Int64) }
            guard let (node, _) = WriterNodes.choose(taken: taken, preferred: preferred, nowMs: now) else { return nil }
            try db.execute(
                sql: """
                    INSERT INTO writer_nodes (node, replica_id, last_seen_ms) VALUES (?, ?, ?)
                    ON CONFLICT (node) DO UPDATE SET replica_id = excluded.replica_id, last_seen_ms = excluded.last_seen_ms
                    """,
                arguments: [node, replicaID, now])
            return node
        }
    }

    func reportBacklog(node: Int64, _ report: BacklogReport) async throws {
        let now = Timestamp.nowMilliseconds()
        try await write { db in
            try db.execute(sql: Self.positional(WriterBacklogSchema.upsert), arguments: [node, report.clearThroughMs, now])
        }
    }

    func writerBacklogs() async throws -> [WriterBacklog] {
        let now = Timestamp.nowMilliseconds()
        return try await read { db in
            try GRDB.Row.fetchAll(db, sql: Self.positional(WriterBacklogSchema.select), arguments: [now - WriterBacklogSchema.listedFor]).map {
                WriterBacklog(node: $0["node"], clearThroughMs: $0["clear_through_ms"], reportedAgoMs: max(0, now - ($0["reported_ms"] as Int64)))
            }
        }
    }

    /// PostgreSQL's `$n` parameters as SQLite's `?n`.
    private static func positional(_ sql: String) -> String { sql.replacingOccurrences(of: "$", with: "?") }
}
