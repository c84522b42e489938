import Foundation
import Logging
import NIOCore
import Testing

@testable import ProductsService
import Shared

func temporaryDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("journal-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func upsert(_ id: String, version: Int64 = 1, name: String = "Name") -> WriteOperation {
    let now = Timestamp.now()
    return .upsert(
        tenant: defaultTenant,
        product: Product(id: id, name: name, type: "physical", metadata: [:], createdAt: now, updatedAt: now, version: version))
}

extension Journal {
    /// Appends and waits until durable, as a write request does.
    func record(_ operation: WriteOperation) async throws {
        try await waitUntilDurable(try append(operation, encoded: operation.json))
    }
}

@Suite("Journal")
struct JournalTests {
    let logger = Logger(label: "test")

    @Test("pending writes survive a reopen; confirmed ones do not come back")
    func recovery() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let journal = try Journal(directory: directory, logger: logger)
            for index in 0..<5 { try await journal.record(upsert("p\(index)")) }
            journal.acknowledge(through: 2)
            try await journal.record(.delete(tenant: defaultTenant, id: "p4", version: 2, deletedAt: Timestamp.now()))
            journal.close()
        }
        let reopened = try Journal(directory: directory, logger: logger)
        defer { reopened.close() }
        #expect(reopened.unconfirmedOperations().map(\.productID) == ["p2", "p3", "p4", "p4"])
        #expect(reopened.latestSequence == 6)
        try await reopened.record(upsert("p5"))
        #expect(reopened.oldestPending(limit: 10).map(\.sequence) == [3, 4, 5, 6, 7])
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
        #expect(reopened.unconfirmedOperations().map(\.productID) == ["kept"])
        try await reopened.record(upsert("after"))
        reopened.close()
        let again = try Journal(directory: directory, logger: logger)
        defer { again.close() }
        #expect(again.unconfirmedOperations().map(\.productID) == ["kept", "after"])
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
        journal.acknowledge(through: 50)
        try await journal.record(upsert("p060"))
        let segmentsAfter = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("segment-") }
        #expect(segmentsAfter.count < segmentsBefore.count)
        journal.close()
        let reopened = try Journal(directory: directory, segmentSize: 2_000, logger: logger)
        defer { reopened.close() }
        #expect(reopened.unconfirmedOperations().map(\.productID) == (50..<61).map { String(format: "p%03d", $0) })
    }

    @Test("concurrent writers are all made durable, sharing syncs")
    func groupCommit() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let journal = try Journal(directory: directory, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<500 {
                group.addTask { try await journal.record(upsert("p\(index)")) }
            }
            try await group.waitForAll()
        }
        #expect(journal.backlog.count == 500)
        journal.close()
        let reopened = try Journal(directory: directory, logger: logger)
        defer { reopened.close() }
        #expect(Set(reopened.unconfirmedOperations().map(\.productID)).count == 500)
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
        let operation = upsert("in-flight")
        let ticket = try journal.append(operation, encoded: operation.json)
        await Self.wait(for: taken)
        #expect(journal.unconfirmedOperations().map(\.productID) == ["in-flight"])
        #expect(journal.backlog.count == 1)
        release.signal()
        try await journal.waitUntilDurable(ticket)
        #expect(journal.unconfirmedOperations().map(\.productID) == ["in-flight"], "durable, not yet confirmed")
        journal.close()
    }

    /// Waits on a semaphore off the cooperative pool.
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
        journal.acknowledge(through: 1)
        #expect(journal.backlog.count == 0)
        #expect(journal.isAcknowledged(through: 1))
        journal.close()
    }
}
