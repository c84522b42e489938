import Shared

/// The Database Service's storage: versioned products and tombstones, scoped by tenant. Routes never see SQL.
protocol ProductStore: Sendable {
    /// Applies operations in one transaction, each only if newer than what is stored; outcomes in input order.
    func apply(_ operations: [WriteOperation]) async throws -> [ApplyOutcome]
    /// Deletes a live product at `version`, or at its stored version + 1 when `version` is nil.
    func delete(tenant: String, id: String, version: Int64?, deletedAt: String) async throws -> DeleteOutcome
    /// The live product, or nil when absent or deleted.
    func product(tenant: String, id: String) async throws -> Product?
    /// Live products matching the query's filters, at most `limit` of them in id order from its cursor,
    /// and whether more exist in the direction of paging.
    func list(tenant: String, query: ProductQuery) async throws -> ProductPage
    /// Checks that the backend answers.
    func ping() async throws
    /// The backend's name, reported by `/health`.
    var backend: String { get }
    /// The last migration applied, reported by `/health`.
    func schemaVersion() async throws -> String?
    /// The connection pool, as `/health` reports it.
    var poolDescription: String { get }
}

/// What storing one versioned operation did.
enum ApplyOutcome: Sendable, Equatable {
    case inserted
    case updated
    /// A same or newer version (live or tombstone) was already stored; nothing changed.
    case stale(storedVersion: Int64, deleted: Bool)
}

/// What a delete did.
enum DeleteOutcome: Sendable, Equatable {
    case deleted(version: Int64, name: String)
    case notFound
    /// The stored version is the same or newer than the one asked for.
    case stale(storedVersion: Int64)
}
