import Shared

/// API keys as the Database Service stores them (hashes only, bound to a tenant and a scope), and the replicas'
/// writer numbers.
protocol KeyStore: Sendable {
    /// Creates a key; the secret is returned once and only its hash is stored.
    func createKey(tenant: String, scope: KeyGrant.Scope) async throws -> (grant: KeyGrant, key: String)
    /// Every key, revoked ones included, oldest first.
    func keys() async throws -> [APIKeyRecord]
    /// Revokes a key by its public id; false when there is no such active key.
    func revokeKey(id: String) async throws -> Bool
    /// The grant of the active key with this hash, recording its use; nil when unknown or revoked.
    func verifyKey(hash: String) async throws -> KeyGrant?
    /// How many keys are active: with none, the Products Service runs open.
    func activeKeyCount() async throws -> Int
    /// Every tenant with live products or an active key.
    func tenants() async throws -> [String]
    /// The writer number of a replica (by its stable id), assigned on first call (`preferred` if free); nil when
    /// every number is taken.
    func writerNode(replicaID: String, preferred: Int64?) async throws -> Int64?
    /// Keeps a replica's report of its unconfirmed writes, replacing its last.
    func reportBacklog(node: Int64, _ report: BacklogReport) async throws
    /// Every replica's last report of the past hour (`WriterBacklogSchema.listedFor`), by writer number.
    func writerBacklogs() async throws -> [WriterBacklog]
}

/// One stored key, as `keys list` shows it (never the secret).
struct APIKeyRecord: Sendable, Equatable {
    var id: String
    var tenant: String
    var scope: KeyGrant.Scope
    var createdAt: String
    var lastUsedAt: String?
    var revokedAt: String?
}

/// The `api_keys` table, the same on both backends (part of the first migration, `v1-schema`).
enum APIKeySchema {
    static let createTable = """
        CREATE TABLE api_keys (
            id TEXT NOT NULL PRIMARY KEY,
            tenant TEXT NOT NULL,
            scope TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            last_used_at TEXT,
            revoked_at TEXT
        )
        """
}
