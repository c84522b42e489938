import Metrics
import Shared

/// A store that times every call into `database_storage_query_duration_seconds{operation, backend}`.
struct InstrumentedStore: ProductStore, APIKeyStore {
    let base: any ProductStore & APIKeyStore

    var backend: String { base.backend }
    var poolDescription: String { base.poolDescription }

    private func measure<T>(_ operation: String, _ body: () async throws -> T) async throws -> T {
        let started = ContinuousClock.now
        defer {
            Timer(label: "database_storage_query_duration", dimensions: [("operation", operation), ("backend", backend)])
                .recordInterval(since: started)
        }
        return try await body()
    }

    func apply(_ operations: [WriteOperation]) async throws -> [ApplyOutcome] { try await measure("apply") { try await base.apply(operations) } }
    func write(_ write: CoordinatedWrite) async throws -> CoordinatedResult { try await measure("write") { try await base.write(write) } }
    func purgeAnswers(createdBefore cutoffMs: Int64) async throws -> Int {
        try await measure("purge_answers") { try await base.purgeAnswers(createdBefore: cutoffMs) }
    }
    func delete(tenant: String, id: String, version: Int64?, deletedAt: String) async throws -> DeleteOutcome {
        try await measure("delete") { try await base.delete(tenant: tenant, id: id, version: version, deletedAt: deletedAt) }
    }
    func product(tenant: String, id: String) async throws -> Product? { try await measure("get") { try await base.product(tenant: tenant, id: id) } }
    func list(tenant: String, query: ProductQuery) async throws -> ProductPage { try await measure("list") { try await base.list(tenant: tenant, query: query) } }
    func ping() async throws { try await measure("ping") { try await base.ping() } }
    func schemaVersion() async throws -> String? { try await base.schemaVersion() }
    func changes(after cursor: ChangeCursor, limit: Int) async throws -> ChangeRead {
        try await measure("changes") { try await base.changes(after: cursor, limit: limit) }
    }
    func changeHead() async throws -> ChangeCursor { try await measure("change_head") { try await base.changeHead() } }
    func purgeChanges(recordedBefore cutoffMs: Int64) async throws -> Int {
        try await measure("purge_changes") { try await base.purgeChanges(recordedBefore: cutoffMs) }
    }
    var changeSignal: ChangeSignal { base.changeSignal }
    func writerNode(replicaID: String, preferred: Int64?) async throws -> Int64? {
        try await measure("writer_node") { try await base.writerNode(replicaID: replicaID, preferred: preferred) }
    }
    func listenForChanges() async { await base.listenForChanges() }
    func createKey(tenant: String, scope: KeyGrant.Scope) async throws -> (grant: KeyGrant, key: String) {
        try await measure("create_key") { try await base.createKey(tenant: tenant, scope: scope) }
    }
    func keys() async throws -> [APIKeyRecord] { try await measure("list_keys") { try await base.keys() } }
    func revokeKey(id: String) async throws -> Bool { try await measure("revoke_key") { try await base.revokeKey(id: id) } }
    func verifyKey(hash: String) async throws -> KeyGrant? { try await measure("verify_key") { try await base.verifyKey(hash: hash) } }
    func activeKeyCount() async throws -> Int { try await measure("key_status") { try await base.activeKeyCount() } }
    func tenants() async throws -> [String] { try await measure("tenants") { try await base.tenants() } }
}
