import Foundation
import Logging
import NIOCore
import PostgresNIO
import ServiceLifecycle
import Shared

/// API keys and writer numbers on PostgreSQL.
struct PostgresKeyStore: KeyStore, PostgresFeatureStore {
    let database: PostgresStore


    func createKey(tenant: String, scope: KeyGrant.Scope) async throws -> (grant: KeyGrant, key: String) {
        let key = APIKey.generate()
        let grant = KeyGrant(id: APIKey.generateID(), tenant: tenant, scope: scope)
        try await query(
            """
            INSERT INTO api_keys (id, tenant, scope, key_hash, created_at)
            VALUES (\(grant.id), \(tenant), \(scope.rawValue), \(APIKey.hash(key)), \(Timestamp.now()))
            """, logger: logger)
        return (grant, key)
    }

    func keys() async throws -> [APIKeyRecord] {
        var records: [APIKeyRecord] = []
        let rows = try await query(
            "SELECT id, tenant, scope, created_at, last_used_at, revoked_at FROM api_keys ORDER BY created_at, id", logger: logger)
        for try await (id, tenant, scope, createdAt, lastUsedAt, revokedAt) in rows.decode(
            (String, String, String, String, String?, String?).self)
        {
            records.append(APIKeyRecord(
                id: id, tenant: tenant, scope: KeyGrant.Scope(rawValue: scope) ?? .readOnly, createdAt: createdAt,
                lastUsedAt: lastUsedAt, revokedAt: revokedAt))
        }
        return records
    }

    func revokeKey(id: String) async throws -> Bool {
        let rows = try await query(
            "UPDATE api_keys SET revoked_at = \(Timestamp.now()) WHERE id = \(id) AND revoked_at IS NULL RETURNING id", logger: logger)
        for try await _ in rows.decode(String.self) { return true }
        return false
    }

    func verifyKey(hash: String) async throws -> KeyGrant? {
        let rows = try await query(
            """
            UPDATE api_keys SET last_used_at = \(Timestamp.now()) WHERE key_hash = \(hash) AND revoked_at IS NULL
            RETURNING id, tenant, scope
            """, logger: logger)
        for try await (id, tenant, scope) in rows.decode((String, String, String).self) {
            return KeyGrant(id: id, tenant: tenant, scope: KeyGrant.Scope(rawValue: scope) ?? .readOnly)
        }
        return nil
    }

    func activeKeyCount() async throws -> Int {
        let rows = try await query("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL", logger: logger)
        for try await count in rows.decode(Int64.self) { return Int(count) }
        return 0
    }

    func tenants() async throws -> [String] {
        var tenants: [String] = []
        let rows = try await query(
            """
            SELECT DISTINCT tenant FROM products WHERE NOT deleted
            UNION SELECT tenant FROM api_keys WHERE revoked_at IS NULL
            ORDER BY 1
            """, logger: logger)
        for try await tenant in rows.decode(String.self) { tenants.append(tenant) }
        return tenants
    }

    func writerNode(replicaID: String, preferred: Int64?) async throws -> Int64? {
        let now = Timestamp.nowMilliseconds()
        return try await transaction(logger: logger) { connection -> Int64? in
            // One allocation at a time across processes.
            try await connection.query("SELECT pg_advisory_xact_lock(7206112)", logger: self.logger)
            var taken: [(node: Int64, lastSeenMs: Int64)] = []
            var own: Int64?
            // Read every row before the next statement: a connection runs one query at a time.
            for try await (node, id, lastSeen) in try await connection.query(
                "SELECT node, replica_id, last_seen_ms FROM writer_nodes", logger: self.logger
            ).decode((Int64, String, Int64).self) {
                if id == replicaID { own = node }
                taken.append((node, lastSeen))
            }
            if let own {
                try await connection.query("UPDATE writer_nodes SET last_seen_ms = \(now) WHERE node = \(own)", logger: self.logger)
                return own
            }
            guard let (node, _) = WriterNodes.choose(taken: taken, preferred: preferred, nowMs: now) else { return nil }
            try await connection.query(
                """
                INSERT INTO writer_nodes (node, replica_id, last_seen_ms) VALUES (\(node), \(replicaID), \(now))
                ON CONFLICT (node) DO UPDATE SET replica_id = EXCLUDED.replica_id, last_seen_ms = EXCLUDED.last_seen_ms
                """, logger: self.logger)
            return node
        }
    }

    func reportBacklog(node: Int64, _ report: BacklogReport) async throws {
        var binds = PostgresBindings()
        binds.append(node)
        binds.append(report.clearThroughMs)
        binds.append(Timestamp.nowMilliseconds())
        try await query(PostgresQuery(unsafeSQL: WriterBacklogSchema.upsert, binds: binds), logger: logger)
    }

    func writerBacklogs() async throws -> [WriterBacklog] {
        let now = Timestamp.nowMilliseconds()
        var binds = PostgresBindings()
        binds.append(now - WriterBacklogSchema.listedFor)
        var backlogs: [WriterBacklog] = []
        let rows = try await query(PostgresQuery(unsafeSQL: WriterBacklogSchema.select, binds: binds), logger: logger)
        for try await (node, clearThrough, reported) in rows.decode((Int64, Int64, Int64).self) {
            backlogs.append(WriterBacklog(node: node, clearThroughMs: clearThrough, reportedAgoMs: max(0, now - reported)))
        }
        return backlogs
    }
}
