import Shared

/// API keys as the Database Service stores them: hashes only, bound to a tenant and a scope.
protocol APIKeyStore: Sendable {
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
