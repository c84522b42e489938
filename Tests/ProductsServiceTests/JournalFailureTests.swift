import Foundation
import Testing

@testable import ProductsService
import Shared
import TestSupport

@Suite("Journal failure")
struct JournalFailureTests {
    func input(_ name: String) throws -> ProductInput {
        try ProductInput(json: .object(["name": .string(name)]))
    }

    func isJournalUnavailable(_ error: any Error) -> Bool {
        (error as? APIError)?.code == "journal_unavailable"
    }

    @Test("when fdatasync fails, no reader sees the failed writes: not while in flight, not after the 503, not after a restart")
    func noPhantoms() async throws {
        let held = HeldGroup()
        let faults = SyncFaults()
        let fixture = try ReplicaFixture(beforeWrite: { held.wait() }, sync: faults.sync)
        defer { fixture.remove() }
        let replica = fixture.replica
        let kept = try await replica.create(tenant: defaultTenant, try input("Kept")).written
        let keptID = kept.product.id
        func visible() async throws -> [String] {
            try await replica.list(tenant: defaultTenant, query: ProductQuery()).products.map { "\($0.product.id):\($0.product.name)" }
        }
        let before = try await visible()
        #expect(before == ["\(keptID):Kept"])

        held.hold()
        faults.failing = true
        let creation = Task { try await replica.create(tenant: defaultTenant, try input("Phantom")) }
        let update = Task {
            try await replica.update(tenant: defaultTenant, id: keptID, condition: nil) { product throws(APIError) in
                var product = product
                product.name = "Changed"
                return product
            }
        }
        let deletion = Task { try await replica.delete(tenant: defaultTenant, id: keptID) }
        try await held.waitUntilHolding()
        // The other writes reach the journal too: the kept product's record and these three.
        try await eventually("all three writes are appended") { fixture.journal.latestSequence >= 4 }
        #expect(try await visible() == before, "in flight: not visible")
        #expect(try await replica.product(tenant: defaultTenant, id: keptID).product.name == "Kept")

        held.release()
        await #expect { try await creation.value } throws: { isJournalUnavailable($0) }
        await #expect { try await update.value } throws: { isJournalUnavailable($0) }
        await #expect { try await deletion.value } throws: { isJournalUnavailable($0) }
        #expect(try await visible() == before, "after the 503: not visible")
        #expect(try await replica.product(tenant: defaultTenant, id: keptID).product.version == 1)
        #expect(replica.writeFailure != nil, "the failure is reported")
        await #expect { try await replica.create(tenant: defaultTenant, try input("Later")) } throws: { isJournalUnavailable($0) }
        fixture.close()

        let restarted = try ReplicaFixture.reopen(fixture)
        defer { restarted.close() }
        #expect(await restarted.journal.unconfirmedOperations() == [.upsert(tenant: defaultTenant, product: kept.product)])
        let afterRestart = try await restarted.replica.list(tenant: defaultTenant, query: ProductQuery()).products.map(\.product.name)
        #expect(afterRestart == ["Kept"], "after a restart: not visible")
    }

    @Test("once the disk takes writes again the journal resumes: writes are taken, and a restart has exactly those acknowledged")
    func resumes() async throws {
        let faults = SyncFaults()
        let fixture = try ReplicaFixture(sync: faults.sync)
        defer { fixture.remove() }
        let replica = fixture.replica
        let first = try await replica.create(tenant: defaultTenant, try input("First")).written
        faults.failing = true
        await #expect { try await replica.create(tenant: defaultTenant, try input("Phantom")) } throws: { isJournalUnavailable($0) }
        #expect(await fixture.journal.resume() == false, "the disk still fails")
        await #expect { try await replica.create(tenant: defaultTenant, try input("Refused")) } throws: { isJournalUnavailable($0) }
        #expect(replica.writeFailure != nil)

        faults.failing = false
        #expect(await fixture.journal.resume())
        #expect(replica.writeFailure == nil, "writes are taken again, without a restart")
        let second = try await replica.create(tenant: defaultTenant, try input("Second")).written
        let names = try await replica.list(tenant: defaultTenant, query: ProductQuery()).products.map(\.product.name)
        #expect(names == ["First", "Second"])
        fixture.close()

        let restarted = try ReplicaFixture.reopen(fixture)
        defer { restarted.close() }
        #expect(
            await restarted.journal.unconfirmedOperations() == [
                .upsert(tenant: defaultTenant, product: first.product), .upsert(tenant: defaultTenant, product: second.product),
            ])
    }

    @Test("one shop's backlog does not hold up another's If-Match write or sync; each shop's pending count is its own")
    func perShopFlush() async throws {
        let fixture = try ReplicaFixture()
        defer { fixture.close(); fixture.remove() }
        let replica = fixture.replica
        // No persistence worker runs: the busy shop's 300 writes stay pending, as behind a slow Database Service.
        for index in 0..<300 { _ = try await replica.create(tenant: "busy", try input("Busy \(index)")) }
        let now = Timestamp.now()
        fixture.database.seed(Product(id: "prod_quiet", name: "Quiet", metadata: [:], createdAt: now, updatedAt: now, version: 1), tenant: "quiet")
        #expect(fixture.journal.unconfirmedCount(tenant: "busy") == 300 && fixture.journal.unconfirmedCount(tenant: "quiet") == 0)

        let updated = try await replica.update(tenant: "quiet", id: "prod_quiet", condition: .any) {
            product throws(APIError) in
            var product = product
            product.name = "Quiet, renamed"
            return product
        }.written
        #expect(updated.product.name == "Quiet, renamed", "answered without waiting for the busy shop's backlog")
        _ = try await replica.sync(tenant: "quiet", flushTimeout: .seconds(5))

        // A shop waits for its own pending writes: with none confirmed, its coordinated write times out (503).
        _ = try await replica.create(tenant: "quiet", try input("Pending"))
        await #expect { try await replica.sync(tenant: "quiet", flushTimeout: .milliseconds(200)) } throws: {
            ($0 as? APIError)?.code == "database_unavailable"
        }
    }

    @Test("a write is visible to readers only once durable")
    func visibleOnceDurable() async throws {
        let held = HeldGroup()
        let fixture = try ReplicaFixture(beforeWrite: { held.wait() })
        defer { fixture.close(); fixture.remove() }
        held.hold()
        let creation = Task { try await fixture.replica.create(tenant: defaultTenant, try input("Soon")) }
        try await held.waitUntilHolding()
        #expect(try await fixture.replica.list(tenant: defaultTenant, query: ProductQuery()).products.isEmpty)
        held.release()
        let created = try await creation.value.written
        #expect(try await fixture.replica.product(tenant: defaultTenant, id: created.product.id).product.name == "Soon")
    }
}
