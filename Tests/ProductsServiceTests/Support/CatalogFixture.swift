import Foundation
import Logging

@testable import ProductsService
import Shared
import TestSupport

/// A catalog on a temporary journal and a fake Database Service, with no background services running:
/// the persistence worker and the loader are driven by the test. The parts stay reachable for looking inside.
final class ReplicaFixture: @unchecked Sendable {
    let directory: String
    let database: FakeDatabaseService
    let parts: Replica.Parts
    let replica: Replica

    var cache: CatalogCache { parts.cache }
    var journal: Journal { parts.journal }
    var idempotency: IdempotencyStore { parts.idempotency }

    init(
        directory: String? = nil, database: FakeDatabaseService = FakeDatabaseService(), segmentSize: Int = 16 << 20,
        beforeWrite: (@Sendable () -> Void)? = nil, sync: @escaping AppendOnlyFile.Sync = AppendOnlyFile.syncData,
        idempotencyBytes: Int = IdempotencyStore.defaultByteLimit, journalMemoryLimit: Int = Journal.defaultMemoryLimit,
        cacheBudget: Int? = nil
    ) throws {
        let logger = Logger(label: "test")
        self.directory = try directory ?? temporaryDirectory()
        self.database = database
        parts = try Replica.Parts(
            directory: self.directory, database: database, logger: logger, segmentSize: segmentSize, beforeWrite: beforeWrite, sync: sync,
            idempotencyBytes: idempotencyBytes, journalMemoryLimit: journalMemoryLimit)
        replica = Replica(parts, persistence: PersistenceSettings(), cacheBudget: cacheBudget, readmissionInterval: .zero, logger: logger)
        replica.setWriterNode(1)
    }

    /// A fixture on the same directory, as after a restart.
    static func reopen(_ fixture: ReplicaFixture, segmentSize: Int = 16 << 20, journalMemoryLimit: Int = Journal.defaultMemoryLimit) throws -> ReplicaFixture {
        try ReplicaFixture(directory: fixture.directory, database: fixture.database, segmentSize: segmentSize, journalMemoryLimit: journalMemoryLimit)
    }

    func close() {
        journal.close()
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}

extension Replica.WriteResult {
    /// The product written; fails the test for a replay.
    var written: CachedProduct {
        get throws {
            guard case .written(let product) = self else { throw TestFailure("expected a write, got a replay") }
            return product
        }
    }
}

extension JournalEntry {
    /// What the journal's window counts for a create of a product named `name`, as the replica makes one.
    static func costOfCreate(named name: String) throws -> Int {
        let now = Timestamp.now()
        let product = try ProductInput(json: .object(["name": .string(name)]))
            .applied(to: Product(id: ProductIDGenerator().next(), createdAt: now, updatedAt: now, version: 1))
        return memoryCost(.upsert(tenant: defaultTenant, product: product))
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
