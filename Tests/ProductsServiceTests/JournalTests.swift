import Foundation
import Logging
import NIOCore
import SystemPackage
import Testing

@testable import ProductsService
import Shared
import TestSupport

extension Journal {
    /// Appends and waits until durable, as a write request does.
    func record(_ operation: WriteOperation) async throws {
        try await waitUntilDurable(try append(JournalRecord(operation)))
    }
}

@Suite("Journal")
struct JournalTests {
    let logger = Logger(label: "test")

    @Test("an upsert's line made from the cache's bytes is the line encoded from the operation, and reads back as it")
    func upsertLineFromCachedBytes() throws {
        var product = Product(id: "p\u{e9}", createdAt: Timestamp.now(), updatedAt: Timestamp.now(), version: 7)
        product.name = "Caf\u{e9} \"quoted\"\n"
        product.tags = ["a", "b"]
        product.metadata = ["k": "v"]
        let operation = WriteOperation.upsert(tenant: "shop-\u{1}", product: product)
        let fromCache = JournalRecord(upsert: "shop-\u{1}", product, encoded: CachedProduct(product), recordedAtMs: 1_234)
        #expect(fromCache.line == JournalRecord(operation, recordedAtMs: 1_234).line)
        let read = try #require(JournalRecord(line: Data(fromCache.line.readableBytesView)))
        #expect(read.operation == operation && read.recordedAtMs == 1_234)
    }

    @Test("pending writes survive a reopen; confirmed ones do not come back")
    func recovery() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let journal = try Journal(directory: directory, logger: logger)
            for index in 0..<5 { try await journal.record(upsert("p\(index)")) }
            journal.confirm(through: 2)
            try await journal.record(.delete(tenant: defaultTenant, id: "p4", version: 2, deletedAt: Timestamp.now()))
            journal.close()
        }
        let reopened = try Journal(directory: directory, logger: logger)
        defer { reopened.close() }
        #expect(await reopened.unconfirmedOperations().map(\.productID) == ["p2", "p3", "p4", "p4"])
        #expect(reopened.latestSequence == 6)
        try await reopened.record(upsert("p5"))
        #expect(await reopened.oldestPending(limit: 10).map(\.sequence) == [3, 4, 5, 6, 7])
    }

    @Test("a torn last record (a crash mid-write) is dropped and the journal stays usable")
    func tornTail() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let journal = try Journal(directory: directory, logger: logger)
            try await journal.record(upsert("kept"))
            journal.close()
        }
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: directory + "/").first { $0.hasPrefix("segment-") })
        let handle = try #require(FileHandle(forWritingAtPath: directory + "/" + segment))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(#"{"op":"upsert","tenant":"default","product":{"id":"tor"#.utf8))
        try handle.close()

        let reopened = try Journal(directory: directory, logger: logger)
        #expect(await reopened.unconfirmedOperations().map(\.productID) == ["kept"])
        try await reopened.record(upsert("after"))
        reopened.close()
        let again = try Journal(directory: directory, logger: logger)
        defer { again.close() }
        #expect(await again.unconfirmedOperations().map(\.productID) == ["kept", "after"])
    }

    @Test("a damaged record in the middle refuses to start rather than silently dropping writes")
    func corruption() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let journal = try Journal(directory: directory, logger: logger)
            try await journal.record(upsert("a"))
            try await journal.record(upsert("b"))
            journal.close()
        }
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: directory).first { $0.hasPrefix("segment-") })
        let path = directory + "/" + segment
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = text.replacingOccurrences(of: #""id":"a""#, with: #""id":"a"#)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: JournalError.self) { try Journal(directory: directory, logger: logger) }
    }

    @Test("segments roll over and fully confirmed ones are deleted")
    func segments() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let journal = try Journal(directory: directory, segmentSize: 2_000, logger: logger)
        for index in 0..<60 { try await journal.record(upsert(String(format: "p%03d", index))) }
        let segmentsBefore = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("segment-") }
        #expect(segmentsBefore.count > 3)
        journal.confirm(through: 50)
        try await journal.record(upsert("p060"))
        let segmentsAfter = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("segment-") }
        #expect(segmentsAfter.count < segmentsBefore.count)
        journal.close()
        let reopened = try Journal(directory: directory, segmentSize: 2_000, logger: logger)
        defer { reopened.close() }
        #expect(await reopened.unconfirmedOperations().map(\.productID) == (50..<61).map { String(format: "p%03d", $0) })
    }

    @Test("writers that arrive while a group is being synced share the next sync")
    func groupCommit() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let held = HeldGroup()
        held.hold()
        let journal = try Journal(directory: directory, logger: logger, beforeWrite: { held.wait() })
        let first = try journal.append(JournalRecord(upsert("p0")))
        let leader = Task { try await journal.waitUntilDurable(first) }
        try await held.waitUntilHolding()
        // The first writer leads a group of one and is held; 499 more writers arrive and wait meanwhile.
        let tickets = try (1..<500).map { try journal.append(JournalRecord(upsert("p\($0)"))) }
        let followers = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for ticket in tickets { group.addTask { try await journal.waitUntilDurable(ticket) } }
                try await group.waitForAll()
            }
        }
        try await Task.sleep(for: .milliseconds(20))
        held.release()
        try await leader.value
        try await followers.value
        #expect(journal.backlog.syncs == 2, "one sync for the first write, one for the 499 behind it")
        #expect(journal.backlog.count == 500)
        journal.close()
        let reopened = try Journal(directory: directory, logger: logger)
        defer { reopened.close() }
        #expect(Set(await reopened.unconfirmedOperations().map(\.productID)).count == 500)
    }

    @Test("a writer whose task is cancelled still leads its group to disk, and later writers are not held up")
    func cancelledLeader() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let journal = try Journal(directory: directory, logger: logger)
        let ticket = try journal.append(JournalRecord(upsert("cancelled")))
        let cancelled = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await journal.waitUntilDurable(ticket)
        }
        try await cancelled.value
        // Were the group dropped with its cancelled leader, this write would wait forever: poll with a deadline.
        let done = DispatchSemaphore(value: 0)
        Task {
            try await journal.record(upsert("next"))
            done.signal()
        }
        var finished = false
        for _ in 0..<500 where !finished {
            finished = done.wait(timeout: .now()) == .success
            if !finished { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(finished, "the next write became durable")
        #expect(journal.backlog.syncs == 2)
        journal.close()
        let reopened = try Journal(directory: directory, logger: logger)
        defer { reopened.close() }
        #expect(await reopened.unconfirmedOperations().map(\.productID) == ["cancelled", "next"])
    }

    @Test("a failed sync loses only what was not durable: its writers are told, the file is cut back, later writes are refused")
    func syncFailure() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let faults = SyncFaults()
        let journal = try Journal(directory: directory, logger: logger, sync: faults.sync)
        try await journal.record(upsert("durable"))
        faults.failing = true
        let lost = try journal.append(JournalRecord(upsert("lost")))
        await #expect(throws: JournalError.self) { try await journal.waitUntilDurable(lost) }
        #expect(throws: JournalError.self) { try journal.append(JournalRecord(upsert("refused"))) }
        #expect(journal.backlog.failure != nil)
        #expect(journal.latestSequence == 1, "the lost record is no longer counted as accepted")
        await #expect(throws: JournalError.self) { try await journal.waitUntilConfirmed(lost) }
        journal.close()

        let reopened = try Journal(directory: directory, logger: logger)
        defer { reopened.close() }
        #expect(await reopened.unconfirmedOperations().map(\.productID) == ["durable"], "the failed record did not reach the file")
    }

    @Test("waiting for confirmation returns once the Database Service has the write, and can be cancelled")
    func confirmation() async throws {
        let journal = try Journal(directory: nil, logger: logger)
        defer { journal.close() }
        try await journal.record(upsert("a"))
        try await journal.record(upsert("b"))
        let waiting = Task { try await journal.waitUntilConfirmed(2) }
        journal.confirm(through: 1)
        try await Task.sleep(for: .milliseconds(20))
        journal.confirm(through: 2)
        try await waiting.value
        let cancelled = Task { try await journal.waitUntilConfirmed(3) }
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
    }

    @Test("a group being synced still counts as unconfirmed, so a reconciliation cannot drop it")
    func syncingGroupIsUnconfirmed() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let taken = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let journal = try Journal(directory: directory, logger: logger, beforeWrite: {
            taken.signal()
            release.wait()
        })
        let ticket = try journal.append(JournalRecord(upsert("in-flight")))
        let writer = Task { try await journal.waitUntilDurable(ticket) }
        await Self.wait(for: taken)
        #expect(await journal.unconfirmedOperations().map(\.productID) == ["in-flight"])
        #expect(journal.backlog.count == 1)
        release.signal()
        try await writer.value
        #expect(await journal.unconfirmedOperations().map(\.productID) == ["in-flight"], "durable, not yet confirmed")
        journal.close()
    }

    @Test("a backlog past the memory limit stays on disk and comes back in order, with writes arriving meanwhile")
    func backlogOnDisk() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let each = JournalEntry.memoryCost(upsert("p000"))
        let journal = try Journal(directory: directory, segmentSize: 2_000, memoryLimit: 8 * each, logger: logger)
        for index in 0..<100 { try await journal.record(upsert(String(format: "p%03d", index % 60))) }
        #expect(journal.backlog.count == 100)
        #expect(journal.backlog.inMemory == 8)
        #expect(journal.isUnconfirmed(tenant: defaultTenant, id: "p059"), "a product only on disk still counts as pending")
        #expect(!journal.isUnconfirmed(tenant: defaultTenant, id: "p060"))
        #expect(!journal.isUnconfirmed(tenant: "other", id: "p001"))
        #expect(journal.unconfirmedTenants == [defaultTenant])
        #expect(await journal.unconfirmedOperations().count == 100)

        var drained: [UInt64] = []
        while true {
            let batch = await journal.oldestPending(limit: 5)
            guard let last = batch.last else { break }
            #expect(journal.backlog.inMemory <= 8)
            drained += batch.map(\.sequence)
            journal.confirm(through: last.sequence)
            if drained.count == 50 {
                // Written while the rest of the backlog is on disk: they come after it.
                for index in 100..<110 { try await journal.record(upsert(String(format: "p%03d", index))) }
            }
        }
        #expect(drained == Array(1...110))
        #expect(journal.backlog.count == 0)
        #expect(!journal.isUnconfirmed(tenant: defaultTenant, id: "p059"))
        #expect(journal.unconfirmedTenants.isEmpty)
        journal.close()
    }

    @Test("a backlog of 40,000-character products is held in memory by bytes: the rest waits on disk and drains in order")
    func largeProductsBoundedByBytes() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var large = product("p000")
        large.description = String(repeating: "\u{1F600}", count: 40_000)
        let limit = 1 << 20
        let journal = try Journal(directory: directory, memoryLimit: limit, logger: logger)
        defer { journal.close() }
        for index in 0..<40 {
            large.id = String(format: "p%03d", index)
            try await journal.record(.upsert(tenant: defaultTenant, product: large))
        }
        #expect(journal.backlog.count == 40)
        #expect(journal.backlog.inMemoryBytes <= limit)
        #expect(journal.backlog.inMemory == limit / JournalEntry.memoryCost(.upsert(tenant: defaultTenant, product: large)))
        var drained: [String] = []
        while true {
            let batch = await journal.oldestPending(limit: 10)
            guard let last = batch.last else { break }
            #expect(journal.backlog.inMemoryBytes <= limit)
            drained += batch.map(\.operation.productID)
            journal.confirm(through: last.sequence)
        }
        #expect(drained == (0..<40).map { String(format: "p%03d", $0) })
    }

    @Test("a refill reads back at most a batch of spilled records, so group commits never wait long behind it")
    func boundedRefill() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let limit = Journal.refillBatch * 2
        let each = JournalEntry.memoryCost(upsert("p00000"))
        let journal = try Journal(directory: directory, memoryLimit: limit * each, logger: logger)
        defer { journal.close() }
        var last: UInt64 = 0
        for index in 0..<(limit + Journal.refillBatch * 2) {
            last = try journal.append(JournalRecord(upsert(String(format: "p%05d", index))))
        }
        try await journal.waitUntilDurable(last)
        #expect(journal.backlog.inMemory == limit)
        let first = await journal.oldestPending(limit: limit)
        journal.confirm(through: first.last!.sequence)
        let refilled = await journal.oldestPending(limit: 10)
        #expect(refilled.first?.sequence == UInt64(limit) + 1)
        #expect(journal.backlog.inMemory == Journal.refillBatch, "one batch read back, not the whole limit")
    }

    @Test("a backlog's age is the time its writes were recorded: through a reopen, and for records read back from disk")
    func backlogAge() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let hourAgo = Timestamp.nowMilliseconds() - 3_600_000
        do {
            let journal = try Journal(directory: directory, memoryLimit: 4 * JournalEntry.memoryCost(upsert("p0")), logger: logger)
            var last: UInt64 = 0
            for index in 0..<10 { last = try journal.append(JournalRecord(upsert("p\(index)"), recordedAtMs: hourAgo + Int64(index) * 60_000)) }
            try await journal.waitUntilDurable(last)
            journal.close()
        }
        func age(_ entry: JournalEntry?) -> Double { entry.map { (ContinuousClock.now - $0.recordedAt).seconds } ?? 0 }
        let reopened = try Journal(directory: directory, memoryLimit: 4 * JournalEntry.memoryCost(upsert("p0")), logger: logger)
        defer { reopened.close() }
        let oldest = reopened.backlog.oldestRecordedAt.map { (ContinuousClock.now - $0).seconds } ?? 0
        #expect((3_599...3_700).contains(oldest), "an hour old after a reopen, not reset: \(oldest) s")
        let first = await reopened.oldestPending(limit: 4)
        #expect((3_599...3_700).contains(age(first.first)))
        reopened.confirm(through: first.last!.sequence)
        // Records 5 to 10 were only on disk: read back, they keep their own times (the fifth is 56 minutes old).
        let refilled = await reopened.oldestPending(limit: 4)
        #expect(refilled.first?.sequence == 5)
        #expect((3_359...3_460).contains(age(refilled.first)), "\(age(refilled.first)) s")
    }

    @Test("a reopen holds only the memory limit of a long backlog, streams every record to the caller, and drains it all")
    func spilledRecovery() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let journal = try Journal(directory: directory, segmentSize: 2_000, logger: logger)
            for index in 0..<80 { try await journal.record(upsert(String(format: "p%03d", index))) }
            journal.confirm(through: 30)
            try await journal.record(upsert("p080"))
            journal.close()
        }
        var streamed: [(UInt64, String, Bool)] = []
        let reopened = try Journal(
            directory: directory, segmentSize: 2_000, memoryLimit: 10 * JournalEntry.memoryCost(upsert("p000")), logger: logger,
            recovered: { sequence, record, confirmed in streamed.append((sequence, record.operation.productID, confirmed)) })
        defer { reopened.close() }
        #expect(streamed.map(\.0) == Array(streamed.first!.0...81), "every record left in the segments, in order")
        #expect(streamed.allSatisfy { $0.2 == ($0.0 <= 30) })
        #expect(streamed.last.map { $0.1 } == "p080")
        #expect(reopened.backlog.count == 51)
        #expect(reopened.backlog.inMemory == 10)
        var drained: [String] = []
        while true {
            let batch = await reopened.oldestPending(limit: 7)
            guard let last = batch.last else { break }
            drained += batch.map(\.operation.productID)
            reopened.confirm(through: last.sequence)
        }
        #expect(drained == (30...80).map { String(format: "p%03d", $0) })
    }


    static func wait(for semaphore: DispatchSemaphore) async {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                semaphore.wait()
                continuation.resume()
            }
        }
    }

    @Test("memory-only mode keeps pending writes without files")
    func memoryOnly() async throws {
        let journal = try Journal(directory: nil, logger: logger)
        try await journal.record(upsert("p"))
        #expect(!journal.isDurable)
        #expect(journal.backlog.count == 1)
        journal.confirm(through: 1)
        #expect(journal.backlog.count == 0)
        try await journal.waitUntilConfirmed(1)
        journal.close()
    }
}

/// A sync that fails on demand, as a full or failing disk makes `fdatasync` fail.
final class SyncFaults: @unchecked Sendable {
    private let lock = NSLock()
    private var isFailing = false

    var failing: Bool {
        get { lock.withLock { isFailing } }
        set { lock.withLock { isFailing = newValue } }
    }

    var sync: AppendOnlyFile.Sync {
        { descriptor in
            if self.failing { throw Errno.ioError }
            try AppendOnlyFile.syncData(descriptor)
        }
    }
}
