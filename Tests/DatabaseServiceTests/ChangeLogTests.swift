import Foundation
import PostgresNIO
import Testing

@testable import DatabaseService
import Shared
import TestSupport

@Suite("Change log, on SQLite and PostgreSQL")
struct ChangeLogTests {
    private func page(_ read: ChangeRead) throws -> ChangeLogPage {
        guard case .page(let page) = read else { throw ChangeLogTestError.expired }
        return page
    }

    /// Reads until at least `count` changes are there. On PostgreSQL a reader stops below the oldest transaction
    /// running anywhere on the server, and the tests run in parallel: a change may show a moment late, never out of order.
    private func settled(_ store: any DataStore, after cursor: ChangeCursor, limit: Int = 100, count: Int) async throws -> ChangeLogPage {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            let read = try page(try await store.changes.changes(after: cursor, limit: limit))
            if read.changes.count >= count || ContinuousClock.now > deadline { return read }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    @Test("one batch with several writes of a product, deletes of known and unknown products and stale writes: outcomes, rows and log as one at a time", arguments: StoreBackend.available)
    func mixedBatch(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            _ = try await store.products.apply([.upsert(tenant: "t", product: product("kept", version: 9, name: "Kept"))])
            _ = try await store.products.apply([.upsert(tenant: "t", product: product("gone", version: 1, name: "Gone"))])
            let start = try await store.changes.changeHead()
            let deletedAt = Timestamp.now()
            let outcomes = try await store.products.apply([
                .upsert(tenant: "t", product: product("new", version: 1, name: "One")),
                .upsert(tenant: "t", product: product("kept", version: 3, name: "Older")),
                .delete(tenant: "t", id: "ghost", version: 4, deletedAt: deletedAt),
                .upsert(tenant: "t", product: product("new", version: 3, name: "Three")),
                .delete(tenant: "t", id: "gone", version: 2, deletedAt: deletedAt),
                .upsert(tenant: "u", product: product("new", version: 1, name: "Other tenant")),
                .upsert(tenant: "t", product: product("new", version: 2, name: "Two, late")),
                .upsert(tenant: "t", product: product("ghost", version: 3, name: "Before its delete")),
            ])
            #expect(outcomes == [
                .inserted, .stale(storedVersion: 9, deleted: false), .inserted, .updated, .updated, .inserted,
                .stale(storedVersion: 3, deleted: false), .stale(storedVersion: 4, deleted: true),
            ])
            #expect(try await store.products.product(tenant: "t", id: "new")?.name == "Three")
            #expect(try await store.products.product(tenant: "t", id: "kept")?.version == 9)
            #expect(try await store.products.product(tenant: "t", id: "ghost") == nil)
            #expect(try await store.products.product(tenant: "t", id: "gone") == nil)
            #expect(try await store.products.product(tenant: "u", id: "new")?.name == "Other tenant")
            // The delete of a product it held reports its name, so the tombstone kept it.
            #expect(try await store.products.delete(tenant: "t", id: "gone", version: 5, deletedAt: deletedAt) == .notFound)

            // On PostgreSQL the head can sit below the setup's changes (see `settled`): those are left out.
            let setup: Set = ["t/kept@9:product.created", "t/gone@1:product.created"]
            var changes: [LoggedChange] = []
            let deadline = ContinuousClock.now + .seconds(30)
            while changes.count < 5 && ContinuousClock.now < deadline {
                changes = try page(try await store.changes.changes(after: start, limit: 100)).changes
                    .filter { !setup.contains("\($0.tenant)/\($0.id)@\($0.version):\($0.eventType.rawValue)") }
                if changes.count < 5 { try await Task.sleep(for: .milliseconds(20)) }
            }
            let summary = changes.map { "\($0.tenant)/\($0.id)@\($0.version):\($0.eventType.rawValue)" }
            #expect(Set(summary) == [
                "t/new@1:product.created", "t/new@3:product.updated", "t/ghost@4:product.deleted", "t/gone@2:product.deleted",
                "u/new@1:product.created",
            ])
            #expect(summary.firstIndex(of: "t/new@1:product.created")! < summary.firstIndex(of: "t/new@3:product.updated")!)
            #expect(changes.first { $0.id == "new" && $0.version == 3 }?.product?.name == "Three")
        }
    }

    @Test("every applied write is logged in commit order with its product; stale writes are not", arguments: StoreBackend.available)
    func logsAppliedWrites(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            let start = try await store.changes.changeHead()
            _ = try await store.products.apply([
                .upsert(tenant: "t", product: product("a")),
                .upsert(tenant: "u", product: product("b")),
            ])
            _ = try await store.products.apply([.upsert(tenant: "t", product: product("a", version: 1))])  // stale: not logged
            _ = try await store.products.apply([.upsert(tenant: "t", product: product("a", version: 5, name: "Lamp 5"))])
            _ = try await store.products.delete(tenant: "u", id: "b", version: nil, deletedAt: Timestamp.now())

            let all = try await settled(store, after: start, count: 4)
            #expect(all.changes.map(\.id) == ["a", "b", "a", "b"])
            #expect(all.changes.map(\.op) == [.upsert, .upsert, .upsert, .delete])
            #expect(all.changes.map(\.tenant) == ["t", "u", "t", "u"])
            #expect(all.changes[2].product?.name == "Lamp 5" && all.changes[2].version == 5)
            #expect(all.changes[3].product == nil && all.changes[3].version > 1)
            #expect(all.recordedAtMs != nil)
            #expect(try await store.changes.changeHead() == all.next, "the head is the newest change")

            // The page as served (the products' JSON copied in as stored) is what the replicas decode.
            let served = try JSONCoding.decoder.decode(ChangePage.self, from: all.json)
            #expect(served.changes.map(\.id) == all.changes.map(\.id) && served.next == all.next && served.recordedAtMs == all.recordedAtMs)
            #expect(served.changes.map(\.product) == all.changes.map(\.product))
            #expect(served.changes[2].product?.name == "Lamp 5" && served.changes[3].op == .delete)

            // Paging: a cursor resumes exactly after the last change read.
            let first = try await settled(store, after: start, limit: 3, count: 3)
            #expect(first.changes.count == 3)
            let rest = try page(try await store.changes.changes(after: first.next, limit: 3))
            #expect(rest.changes.map(\.op) == [.delete])
            let none = try page(try await store.changes.changes(after: rest.next, limit: 3))
            #expect(none.changes.isEmpty && none.next == rest.next)
        }
    }

    @Test("purging drops only a prefix older than the cutoff, and a cursor before it is expired", arguments: StoreBackend.available)
    func purge(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            let start = try await store.changes.changeHead()
            _ = try await store.products.apply([.upsert(tenant: "t", product: product("old1")), .upsert(tenant: "t", product: product("old2"))])
            let middle = try await settled(store, after: start, count: 2).next
            try await Task.sleep(for: .milliseconds(20))
            let cutoff = Timestamp.nowMilliseconds()
            try await Task.sleep(for: .milliseconds(20))
            _ = try await store.products.apply([.upsert(tenant: "t", product: product("new"))])
            _ = try await settled(store, after: start, count: 3)

            #expect(try await store.changes.purgeChanges(recordedBefore: cutoff) == 2)
            #expect(try await store.changes.purgeChanges(recordedBefore: cutoff) == 0, "purging again finds nothing")
            guard case .expired = try await store.changes.changes(after: start, limit: 10) else {
                Issue.record("a cursor before the purged changes must be expired")
                return
            }
            #expect(try await settled(store, after: middle, count: 1).changes.map(\.id) == ["new"])
            #expect(try await store.products.product(tenant: "t", id: "old1") != nil, "purging the log keeps the products")
        }
    }

    @Test("writer numbers: one per replica id, stable, distinct", arguments: StoreBackend.available)
    func writerNumbers(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            let a = try #require(try await store.keys.writerNode(replicaID: "replica-a", preferred: nil))
            let b = try #require(try await store.keys.writerNode(replicaID: "replica-b", preferred: a))
            #expect(a != b)
            #expect(Versions.writerRange.contains(a) && Versions.writerRange.contains(b))
            #expect(try await store.keys.writerNode(replicaID: "replica-a", preferred: 9) == a, "the same replica keeps its number")
            #expect(try await store.keys.writerNode(replicaID: "replica-c", preferred: 77) == 77, "a free preferred number is granted")
        }
        #expect(WriterNodes.choose(taken: [], nowMs: 0)?.node == 1)
        let full = Versions.writerRange.map { (node: $0, lastSeenMs: Int64(1000)) }
        #expect(WriterNodes.choose(taken: full, nowMs: 2000) == nil, "every number held by a replica seen recently")
        #expect(WriterNodes.choose(taken: full, nowMs: 1000 + WriterNodes.reuseAfterMs + 1)?.reused == true)
    }

    @Test("backlog reports: the last one per writer, listed by writer with its age", arguments: StoreBackend.available)
    func backlogReports(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            #expect(try await store.keys.writerBacklogs() == [])
            let reported = ContinuousClock.now
            try await store.keys.reportBacklog(node: 9, BacklogReport(clearThroughMs: 1_000))
            try await store.keys.reportBacklog(node: 3, BacklogReport(clearThroughMs: .max))
            try await store.keys.reportBacklog(node: 9, BacklogReport(clearThroughMs: 500))
            let listed = try await store.keys.writerBacklogs()
            #expect(listed.map(\.node) == [3, 9] && listed.map(\.clearThroughMs) == [.max, 500], "the last report, even when it goes back (a restart)")
            let since = reported.duration(to: .now).components
            #expect(listed.allSatisfy { (0...since.seconds * 1000 + 1000).contains($0.reportedAgoMs) }, "\(listed)")
        }
    }

    @Test("versions: above the previous and the clock, stamped with the writer, exact in JavaScript")
    func versions() {
        let now: Int64 = 1_800_000_000_000
        let first = Versions.next(after: 1, writer: 7, nowMs: now)
        #expect(first == now << 10 | 7)
        #expect(Versions.next(after: first, writer: 3, nowMs: now) > first, "the same millisecond still moves forward")
        #expect(Versions.next(after: first, writer: 3, nowMs: now) != Versions.next(after: first, writer: 4, nowMs: now))
        #expect(Versions.next(after: first, writer: 3, nowMs: now - 60_000) > first, "a slow clock cannot go back")
        #expect(Versions.next(after: 1, writer: 1023, nowMs: 8_700_000_000_000) < 1 << 53)
    }

    @Test("PostgreSQL: a transaction that commits after a later one is never skipped by a reader")
    func outOfOrderCommit() async throws {
        guard StoreBackend.available.contains(.postgresql) else { return }
        try await StoreBackend.postgresql.withStore { store, _ async throws in
            let postgres = try #require(store as? PostgresStore)
            let start = try await store.changes.changeHead()
            try await postgres.pool.withConnection { slow in
                // The slow transaction takes its position first...
                try await slow.query("BEGIN", logger: postgres.logger)
                try await slow.query(
                    """
                    INSERT INTO product_changes (tenant, product_id, version, op, changed_at, recorded_ms, event_type)
                    VALUES ('t', 'slow', 2, 'delete', '2026-01-01T00:00:00.000Z', 0, 'product.deleted')
                    """, logger: postgres.logger)
                // ...and a fast one, on another connection, takes a later position and commits first.
                _ = try await store.products.apply([.upsert(tenant: "t", product: product("fast"))])
                let during = try page(try await store.changes.changes(after: start, limit: 10))
                #expect(during.changes.isEmpty, "the fast change waits until the slow transaction is settled")
                try await slow.query("COMMIT", logger: postgres.logger)
            }
            let after = try await settled(store, after: start, limit: 10, count: 2)
            #expect(after.changes.map(\.id) == ["slow", "fast"], "both, in transaction order: none skipped")
        }
    }
}

private enum ChangeLogTestError: Error { case expired }
