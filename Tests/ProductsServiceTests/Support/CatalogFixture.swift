import Foundation
import Logging

@testable import ProductsService
import Shared

/// A catalog on a temporary journal and a fake Database Service, with no background services running:
/// the persistence worker and the loader are driven by the test.
final class CatalogFixture: @unchecked Sendable {
    let directory: String
    let database: FakeDatabaseService
    let journal: Journal
    let idempotency: IdempotencyStore
    let catalog: Catalog

    init(
        directory: String? = nil, database: FakeDatabaseService = FakeDatabaseService(), segmentSize: Int = 16 << 20,
        beforeWrite: (@Sendable () -> Void)? = nil
    ) throws {
        let logger = Logger(label: "test")
        self.directory = try directory ?? temporaryDirectory()
        self.database = database
        let idempotency = try IdempotencyStore(directory: self.directory)
        journal = try Journal(
            directory: self.directory + "/journal", segmentSize: segmentSize, logger: logger,
            beforeDropping: { try idempotency.file(through: $0) }, beforeWrite: beforeWrite)
        idempotency.restore(journal.recoveredIdempotency)
        self.idempotency = idempotency
        let cache = CatalogCache()
        for operation in journal.unconfirmedOperations() { cache.replay(operation) }
        let gate = SyncGate()
        let worker = PersistenceWorker(
            journal: journal, cache: cache, database: database, deadLetters: try DeadLetterStore(directory: self.directory),
            gate: gate, settings: PersistenceSettings(), logger: logger)
        catalog = Catalog(cache: cache, journal: journal, database: database, worker: worker, gate: gate, idempotency: idempotency)
    }

    func close() {
        journal.close()
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}
