import Logging
import Testing

@testable import ProductsService
import Shared

@Suite("Write-behind backlog on disk")
struct BacklogTests {
    let logger = Logger(label: "test")

    func input(_ name: String) throws -> ProductInput {
        try ProductInput(json: .object(["name": .string(name)]))
    }

    @Test("an outage's backlog past the journal's memory: every write stays visible, survives a restart and a full load, and lands")
    func outageBacklog() async throws {
        let database = FakeDatabaseService()
        database.isDown = true
        // About 16 writes of these products.
        let memory = 16 * (try JournalEntry.costOfCreate(named: "P100"))
        let fixture = try ReplicaFixture(database: database, segmentSize: 4_000, journalMemoryLimit: memory)
        defer { fixture.remove() }
        var expected: [String: String?] = [:]
        var ids: [String] = []
        for index in 0..<120 {
            let id = try await fixture.replica.create(tenant: defaultTenant, try input("P\(index)")).written.product.id
            ids.append(id)
            expected[id] = "P\(index)"
        }
        for id in ids.prefix(60) {
            _ = try await fixture.replica.update(tenant: defaultTenant, id: id, condition: nil) { product throws(APIError) in
                var product = product
                product.name += " v2"
                return product
            }
            expected[id] = expected[id]!! + " v2"
        }
        try await fixture.replica.delete(tenant: defaultTenant, id: ids[5])
        expected[ids[5]] = .some(nil)
        #expect(fixture.journal.backlog.count == 181)
        #expect(fixture.journal.backlog.inMemoryBytes <= memory && fixture.journal.backlog.inMemory < 20, "the rest of the backlog is only on disk")
        fixture.close()

        let restarted = try ReplicaFixture.reopen(fixture, segmentSize: 4_000, journalMemoryLimit: memory)
        defer { restarted.close() }
        #expect(restarted.journal.backlog.count == 181)
        #expect(restarted.journal.backlog.inMemoryBytes <= memory && (12..<20).contains(restarted.journal.backlog.inMemory))
        func cachedNames() -> [String: String?] {
            Dictionary(uniqueKeysWithValues: ids.map { ($0, restarted.cache.get(tenant: defaultTenant, id: $0)?.product.name) })
        }
        #expect(cachedNames() == expected, "replayed from disk at start")

        // The Database Service is back but has none of it yet: a full load must keep every pending product,
        // including those whose writes are only on disk.
        database.isDown = false
        try await restarted.replica.replication.load(logger: logger)
        #expect(cachedNames() == expected, "a full load keeps what is pending")

        let worker = PersistenceWorker(
            journal: restarted.journal, cache: restarted.cache, database: database, deadLetters: restarted.parts.deadLetters,
            gate: SyncGate(), settings: PersistenceSettings(), logger: logger)
        await worker.drain(until: nil)
        #expect(restarted.journal.backlog.count == 0)
        #expect(Dictionary(uniqueKeysWithValues: ids.map { ($0, database.live($0)?.name) }) == expected, "all of it landed")
    }
}
