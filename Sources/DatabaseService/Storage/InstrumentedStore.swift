import Metrics
import NIOCore
import Shared

/// A store that times every call into `database_storage_query_duration_seconds{operation, backend}`.
struct InstrumentedStore: DataStore {
    let base: any DataStore

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

    func apply(_ operations: [WriteOperation], recordedAtMs: [Int64?]) async throws -> [ApplyOutcome] {
        try await measure("apply") { try await base.apply(operations, recordedAtMs: recordedAtMs) }
    }
    func write(_ write: CoordinatedWrite) async throws -> CoordinatedResult { try await measure("write") { try await base.write(write) } }
    func versions(tenant: String, id: String, before: Int64?, limit: Int) async throws -> (versions: [LoggedChange], hasMore: Bool)? {
        try await measure("versions") { try await base.versions(tenant: tenant, id: id, before: before, limit: limit) }
    }
    func restore(tenant: String, id: String, version: Int64, restoredAt: String) async throws -> RestoreOutcome {
        try await measure("restore") { try await base.restore(tenant: tenant, id: id, version: version, restoredAt: restoredAt) }
    }
    func purgeTombstones(deletedBefore cutoffMs: Int64) async throws -> Int {
        try await measure("purge_tombstones") { try await base.purgeTombstones(deletedBefore: cutoffMs) }
    }
    func purgeAnswers(createdBefore cutoffMs: Int64) async throws -> Int {
        try await measure("purge_answers") { try await base.purgeAnswers(createdBefore: cutoffMs) }
    }
    func delete(tenant: String, id: String, version: Int64?, deletedAt: String) async throws -> DeleteOutcome {
        try await measure("delete") { try await base.delete(tenant: tenant, id: id, version: version, deletedAt: deletedAt) }
    }
    func product(tenant: String, id: String) async throws -> Product? { try await measure("get") { try await base.product(tenant: tenant, id: id) } }
    func list(tenant: String, query: ProductQuery) async throws -> ProductPage { try await measure("list") { try await base.list(tenant: tenant, query: query) } }
    func listJSON(tenant: String, query: ProductQuery) async throws -> ByteBuffer {
        try await measure("list") { try await base.listJSON(tenant: tenant, query: query) }
    }
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

    func events(tenant: String, query: EventQuery) async throws -> EventPage {
        try await measure("events") { try await base.events(tenant: tenant, query: query) }
    }
    func createEndpoint(_ endpoint: StoredEndpoint) async throws -> Bool {
        try await measure("create_endpoint") { try await base.createEndpoint(endpoint) }
    }
    func endpoints(tenant: String) async throws -> [StoredEndpoint] { try await measure("list_endpoints") { try await base.endpoints(tenant: tenant) } }
    func endpoint(tenant: String, id: String) async throws -> StoredEndpoint? {
        try await measure("get_endpoint") { try await base.endpoint(tenant: tenant, id: id) }
    }
    func updateEndpoint(_ endpoint: StoredEndpoint, reenabled: Bool) async throws -> Bool {
        try await measure("update_endpoint") { try await base.updateEndpoint(endpoint, reenabled: reenabled) }
    }
    func deleteEndpoint(tenant: String, id: String) async throws -> Bool {
        try await measure("delete_endpoint") { try await base.deleteEndpoint(tenant: tenant, id: id) }
    }
    func attempts(tenant: String, endpointID: String, limit: Int) async throws -> [WebhookAttempt] {
        try await measure("list_attempts") { try await base.attempts(tenant: tenant, endpointID: endpointID, limit: limit) }
    }
    func dispatchEvents(limit: Int, nowMs: Int64) async throws -> Int? {
        try await measure("dispatch_events") { try await base.dispatchEvents(limit: limit, nowMs: nowMs) }
    }
    func dueEndpoints(nowMs: Int64, limit: Int) async throws -> [String] {
        try await measure("due_endpoints") { try await base.dueEndpoints(nowMs: nowMs, limit: limit) }
    }
    func claimDeliveries(endpointID: String, nowMs: Int64, leaseMs: Int64, limit: Int) async throws -> ClaimedDeliveries? {
        try await measure("claim_deliveries") { try await base.claimDeliveries(endpointID: endpointID, nowMs: nowMs, leaseMs: leaseMs, limit: limit) }
    }
    func recordAttempts(_ attempts: [AttemptRecord], endpointID: String, nowMs: Int64, disableAfterMs: Int64) async throws -> Bool {
        try await measure("record_attempts") {
            try await base.recordAttempts(attempts, endpointID: endpointID, nowMs: nowMs, disableAfterMs: disableAfterMs)
        }
    }
    func oldestPendingDeliveryMs() async throws -> Int64? { try await measure("oldest_pending") { try await base.oldestPendingDeliveryMs() } }
    func purgeDeliveries(before cutoffMs: Int64) async throws -> Int {
        try await measure("purge_deliveries") { try await base.purgeDeliveries(before: cutoffMs) }
    }

    func createImport(_ job: ImportJob) async throws -> ImportCreation {
        try await measure("create_import") { try await base.createImport(job) }
    }
    func importJob(tenant: String, id: String) async throws -> ImportJob? {
        try await measure("get_import") { try await base.importJob(tenant: tenant, id: id) }
    }
    func updateImport(tenant: String, id: String, _ progress: ImportProgress) async throws -> ImportJob? {
        try await measure("update_import") { try await base.updateImport(tenant: tenant, id: id, progress) }
    }
    func addImportErrors(tenant: String, id: String, _ errors: [ImportLineError]) async throws {
        try await measure("add_import_errors") { try await base.addImportErrors(tenant: tenant, id: id, errors) }
    }
    func importErrors(tenant: String, id: String, afterLine: Int64?, limit: Int) async throws -> (errors: [ImportLineError], hasMore: Bool) {
        try await measure("list_import_errors") { try await base.importErrors(tenant: tenant, id: id, afterLine: afterLine, limit: limit) }
    }
    func unfinishedImports(replicaID: String) async throws -> [ImportJob] {
        try await measure("unfinished_imports") { try await base.unfinishedImports(replicaID: replicaID) }
    }
    func failSilentImports(silentSinceMs: Int64, nowMs: Int64) async throws -> Int {
        try await measure("fail_silent_imports") { try await base.failSilentImports(silentSinceMs: silentSinceMs, nowMs: nowMs) }
    }
    func purgeImports(finishedBefore cutoffMs: Int64) async throws -> Int {
        try await measure("purge_imports") { try await base.purgeImports(finishedBefore: cutoffMs) }
    }
}
