import DequeModule
import Foundation
import Logging
import NIOCore
import Shared

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A write waiting to be confirmed by the Database Service, numbered in journal order.
struct JournalEntry: Sendable {
    var sequence: UInt64
    var operation: WriteOperation
    /// When the write was acknowledged to its client.
    var recordedAt: ContinuousClock.Instant
}

/// The write-behind journal: every write is recorded here before it is acknowledged, and stays until the
/// Database Service confirms it.
///
/// With a directory, records are appended to segment files and made durable with `fdatasync`; concurrent
/// writers share one sync (group commit) done on a dedicated thread, never on the cooperative pool. Without
/// one (`--journal off`), pending writes live only in memory.
final class Journal: @unchecked Sendable {
    // Everything mutable below is guarded by `condition`.
    private let condition = NSCondition()
    private let file: SegmentedLog?
    private let logger: Logger

    /// Sequence number of the last record appended.
    private var lastSequence: UInt64
    /// Sequence number of the last record known durable.
    private var durableSequence: UInt64
    /// Records appended but not yet taken by the flusher.
    private var unsynced: [JournalEntry] = []
    private var unsyncedBytes = ByteBuffer()
    /// The group the flusher is writing and syncing now: still unconfirmed, though in no other list.
    private var syncing: [JournalEntry] = []
    /// Durable records not yet confirmed by the Database Service, oldest first.
    private var pending: Deque<JournalEntry> = []
    /// Everything up to here is confirmed by the Database Service.
    private var acknowledgedSequence: UInt64
    private var acknowledgementToWrite: UInt64?
    private var waiters: [(sequence: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
    private var failure: (any Error)?
    private var stopping = false
    private var flusherDone = false
    private let pendingSignal: AsyncStream<Void>.Continuation
    /// Yields whenever new durable work is pending; the persistence worker waits on it.
    let pendingSignals: AsyncStream<Void>

    var isDurable: Bool { file != nil }
    /// Called by the flusher after it takes a group and before it writes it; tests use it to hold a group mid-sync.
    private let beforeWrite: (@Sendable () -> Void)?

    /// Idempotency records found in the segments at start, confirmed or not.
    private(set) var recoveredIdempotency: [IdempotencyRecord] = []

    /// Opens the journal in `directory` (nil: memory only) and recovers what was pending.
    ///
    /// `beforeDropping` is called on the flusher thread with the last sequence number of segments about to be
    /// deleted; if it throws, they are kept for now.
    init(
        directory: String?, segmentSize: Int = 16 * 1024 * 1024, logger: Logger,
        beforeDropping: (@Sendable (UInt64) throws -> Void)? = nil, beforeWrite: (@Sendable () -> Void)? = nil
    ) throws {
        self.logger = logger
        self.beforeWrite = beforeWrite
        (pendingSignals, pendingSignal) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
        guard let directory else {
            file = nil
            lastSequence = 0
            durableSequence = 0
            acknowledgedSequence = 0
            return
        }
        let log = try SegmentedLog(directory: directory, segmentSize: segmentSize, logger: logger, beforeDropping: beforeDropping)
        let recovered = try log.recover()
        recoveredIdempotency = recovered.idempotency
        file = log
        lastSequence = recovered.lastSequence
        durableSequence = recovered.lastSequence
        acknowledgedSequence = recovered.acknowledged
        let now = ContinuousClock.now
        pending = Deque(recovered.pending.map { JournalEntry(sequence: $0.sequence, operation: $0.operation, recordedAt: now) })
        if !pending.isEmpty { pendingSignal.yield() }
        let thread = Thread { self.flushLoop() }
        thread.name = "journal-flusher"
        thread.start()
    }

    // MARK: Writers

    /// Records an operation, given its JSON encoded outside any lock; call it inside the cache's critical
    /// section so journal order is cache order. Returns the ticket to wait on with `waitUntilDurable`.
    func append(_ operation: WriteOperation, encoded: ByteBuffer) throws -> UInt64 {
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw failure }
        lastSequence += 1
        let entry = JournalEntry(sequence: lastSequence, operation: operation, recordedAt: .now)
        if file == nil {
            durableSequence = lastSequence
            pending.append(entry)
            pendingSignal.yield()
        } else {
            unsynced.append(entry)
            var record = encoded
            unsyncedBytes.writeBuffer(&record)
            unsyncedBytes.writeInteger(UInt8(ascii: "\n"))
            condition.signal()
        }
        return lastSequence
    }

    /// Suspends until the record with this ticket is durable; throws if the journal cannot be written.
    func waitUntilDurable(_ sequence: UInt64) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            condition.lock()
            if durableSequence >= sequence {
                condition.unlock()
                continuation.resume()
            } else if let failure {
                condition.unlock()
                continuation.resume(throwing: failure)
            } else {
                waiters.append((sequence, continuation))
                condition.unlock()
            }
        }
    }

    // MARK: The persistence worker

    /// The oldest pending entries, at most `limit`.
    func oldestPending(limit: Int) -> [JournalEntry] {
        condition.lock()
        defer { condition.unlock() }
        return Array(pending.prefix(limit))
    }

    /// Every operation not yet confirmed by the Database Service, including those still being synced.
    func unconfirmedOperations() -> [WriteOperation] {
        condition.lock()
        defer { condition.unlock() }
        return pending.map(\.operation) + syncing.map(\.operation) + unsynced.map(\.operation)
    }

    /// Removes every entry up to `sequence`: the Database Service has them (or they are dead-lettered).
    func acknowledge(through sequence: UInt64) {
        condition.lock()
        defer { condition.unlock() }
        while let first = pending.first, first.sequence <= sequence { pending.removeFirst() }
        acknowledgedSequence = max(acknowledgedSequence, sequence)
        if file != nil {
            // Written with the next group; losing it only means replaying writes the Database Service ignores.
            acknowledgementToWrite = acknowledgedSequence
            condition.signal()
        }
    }

    /// Sequence number of the latest write accepted so far.
    var latestSequence: UInt64 {
        condition.lock()
        defer { condition.unlock() }
        return lastSequence
    }

    /// Whether every write up to `sequence` is confirmed.
    func isAcknowledged(through sequence: UInt64) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return acknowledgedSequence >= sequence
    }

    struct Backlog: Sendable {
        var count: Int
        var oldestRecordedAt: ContinuousClock.Instant?
        var failure: String?
    }

    var backlog: Backlog {
        condition.lock()
        defer { condition.unlock() }
        return Backlog(
            count: pending.count + syncing.count + unsynced.count,
            oldestRecordedAt: pending.first?.recordedAt ?? syncing.first?.recordedAt ?? unsynced.first?.recordedAt,
            failure: failure.map { "\($0)" })
    }

    // MARK: Shutdown

    /// Writes what is buffered, stops the flusher thread and closes the files.
    func close() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while file != nil && !flusherDone { condition.wait() }
        condition.unlock()
        pendingSignal.finish()
    }

    // MARK: The flusher thread

    private func flushLoop() {
        guard let file else { return }
        condition.lock()
        while true {
            while unsynced.isEmpty && acknowledgementToWrite == nil && !stopping { condition.wait() }
            if unsynced.isEmpty && acknowledgementToWrite == nil && stopping { break }
            let entries = unsynced
            syncing = entries
            var bytes = unsyncedBytes
            unsynced.removeAll(keepingCapacity: true)
            unsyncedBytes = ByteBuffer()
            if let acknowledged = acknowledgementToWrite {
                bytes.writeString(#"{"ack":\#(acknowledged)}"# + "\n")
                acknowledgementToWrite = nil
            }
            let acknowledged = acknowledgedSequence
            let lastInGroup = entries.last?.sequence
            condition.unlock()
            beforeWrite?()

            var writeError: (any Error)?
            do {
                try file.append(bytes, lastSequence: lastInGroup, acknowledged: acknowledged)
            } catch {
                writeError = error
            }

            condition.lock()
            syncing.removeAll()
            var ready: [CheckedContinuation<Void, any Error>] = []
            var failed: [CheckedContinuation<Void, any Error>] = []
            if let writeError {
                // A journal that cannot be written cannot promise durability: refuse writes from now on.
                failure = JournalError.writeFailed("\(writeError)")
                logger.critical("journal write failed; refusing writes", metadata: ["error": "\(writeError)"])
                failed = waiters.map(\.continuation)
                waiters.removeAll()
            } else if let lastInGroup {
                durableSequence = lastInGroup
                pending.append(contentsOf: entries)
                waiters.removeAll { waiter in
                    guard waiter.sequence <= lastInGroup else { return false }
                    ready.append(waiter.continuation)
                    return true
                }
            }
            condition.unlock()
            for continuation in ready { continuation.resume() }
            for continuation in failed { continuation.resume(throwing: JournalError.writeFailed("\(writeError!)")) }
            if !entries.isEmpty && writeError == nil { pendingSignal.yield() }
            condition.lock()
        }
        file.close()
        flusherDone = true
        condition.broadcast()
        condition.unlock()
    }
}

/// Why the journal refused a write.
enum JournalError: Error, CustomStringConvertible {
    case writeFailed(String)
    case corrupt(String)

    var description: String {
        switch self {
        case .writeFailed(let reason): "journal write failed: \(reason)"
        case .corrupt(let reason): "journal is corrupt: \(reason)"
        }
    }
}

/// The journal's files: `segment-<first sequence>.log`, each a list of JSON lines, either a write operation
/// or `{"ack":N}` (everything up to N is confirmed). Only the flusher thread touches it after recovery.
final class SegmentedLog: @unchecked Sendable {
    let directory: String
    let segmentSize: Int
    private var descriptor: Int32 = -1
    private var currentSize = 0
    /// First sequence number of each segment, oldest first.
    private var segmentBases: [UInt64] = []
    private let logger: Logger
    private let beforeDropping: (@Sendable (UInt64) throws -> Void)?

    init(directory: String, segmentSize: Int, logger: Logger, beforeDropping: (@Sendable (UInt64) throws -> Void)? = nil) throws {
        self.directory = directory
        self.segmentSize = segmentSize
        self.logger = logger
        self.beforeDropping = beforeDropping
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    struct Recovered {
        var pending: [(sequence: UInt64, operation: WriteOperation)]
        var lastSequence: UInt64
        var acknowledged: UInt64
        var idempotency: [IdempotencyRecord]
    }

    /// Reads every segment, drops a torn last line (a crash mid-write), and opens the newest for appending.
    func recover() throws -> Recovered {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        segmentBases = names.compactMap { name -> UInt64? in
            guard name.hasPrefix("segment-"), name.hasSuffix(".log") else { return nil }
            return UInt64(name.dropFirst("segment-".count).dropLast(".log".count))
        }.sorted()
        var operations: [(sequence: UInt64, operation: WriteOperation)] = []
        var acknowledged: UInt64 = 0
        var lastSequence: UInt64 = 0
        var idempotency: [IdempotencyRecord] = []
        for (index, base) in segmentBases.enumerated() {
            let path = segmentPath(base)
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            var sequence = base - 1
            var offset = 0
            var validLength = 0
            let isLast = index == segmentBases.count - 1
            while offset < data.count {
                guard let newline = data[offset...].firstIndex(of: UInt8(ascii: "\n")) else {
                    guard isLast else { throw JournalError.corrupt("\(path): unterminated record at byte \(offset)") }
                    break  // torn write at the end of the newest segment
                }
                let line = data[offset..<newline]
                if line.starts(with: Data(#"{"ack":"#.utf8)) {
                    guard let ack = try? JSONCoding.decoder.decode(AckRecord.self, from: line) else {
                        throw JournalError.corrupt("\(path): unreadable acknowledgement at byte \(offset)")
                    }
                    acknowledged = max(acknowledged, ack.ack)
                } else if !line.isEmpty {
                    guard let operation = try? JSONCoding.decoder.decode(WriteOperation.self, from: line) else {
                        // Only the very last record of the newest segment may be torn.
                        guard isLast, newline == data.count - 1 else {
                            throw JournalError.corrupt("\(path): unreadable record at byte \(offset)")
                        }
                        break
                    }
                    sequence += 1
                    operations.append((sequence, operation))
                    if line.firstRange(of: Data(#""idempotency":"#.utf8)) != nil,
                       var record = (try? JSONCoding.decoder.decode(IdempotentLine.self, from: line))?.idempotency {
                        record.sequence = sequence
                        idempotency.append(record)
                    }
                }
                offset = newline + 1
                validLength = offset
            }
            lastSequence = max(lastSequence, sequence)
            if isLast && validLength < data.count {
                guard truncate(path, off_t(validLength)) == 0 else { throw JournalError.corrupt("\(path): cannot truncate torn record") }
            }
        }
        if segmentBases.isEmpty {
            try openNewSegment(base: 1, acknowledged: 0)
        } else {
            try openForAppend(segmentPath(segmentBases.last!))
        }
        return Recovered(
            pending: operations.filter { $0.sequence > acknowledged }, lastSequence: lastSequence, acknowledged: acknowledged,
            idempotency: idempotency)
    }

    /// Appends bytes and syncs them; rolls to a new segment when the current one is full and drops
    /// segments whose every record is confirmed.
    func append(_ bytes: ByteBuffer, lastSequence: UInt64?, acknowledged: UInt64) throws {
        try bytes.withUnsafeReadableBytes { try writeFully(descriptor, $0) }
        guard fdatasync(descriptor) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        currentSize += bytes.readableBytes
        if currentSize >= segmentSize, let lastSequence {
            try openNewSegment(base: lastSequence + 1, acknowledged: acknowledged)
        }
        // A segment can go once the next one starts at or before the first unconfirmed record.
        var droppable = 0
        while droppable + 1 < segmentBases.count, segmentBases[droppable + 1] <= acknowledged + 1 { droppable += 1 }
        guard droppable > 0 else { return }
        do {
            try beforeDropping?(segmentBases[droppable] - 1)
        } catch {
            logger.error("cannot file idempotency records; keeping journal segments", metadata: ["error": "\(error)"])
            return
        }
        for _ in 0..<droppable { unlink(segmentPath(segmentBases.removeFirst())) }
    }

    func close() {
        if descriptor >= 0 { _ = Glibc.close(descriptor) }
        descriptor = -1
    }

    private func segmentPath(_ base: UInt64) -> String {
        directory + "/segment-" + String(repeating: "0", count: max(0, 20 - String(base).count)) + String(base) + ".log"
    }

    private func openForAppend(_ path: String) throws {
        close()
        descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        currentSize = Int(lseek(descriptor, 0, SEEK_END))
    }

    private func openNewSegment(base: UInt64, acknowledged: UInt64) throws {
        let path = segmentPath(base)
        try openForAppend(path)
        segmentBases.append(base)
        // Carry the confirmation mark so it survives the deletion of older segments.
        try append(ByteBuffer(string: #"{"ack":\#(acknowledged)}"# + "\n"), lastSequence: nil, acknowledged: acknowledged)
        let directoryDescriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryDescriptor >= 0 {
            _ = fsync(directoryDescriptor)
            _ = Glibc.close(directoryDescriptor)
        }
    }
}

/// Writes all of `bytes` to a file descriptor, retrying short and interrupted writes.
func writeFully(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer) throws {
    var written = 0
    while written < bytes.count {
        let result = write(descriptor, bytes.baseAddress! + written, bytes.count - written)
        if result < 0 {
            if errno == EINTR { continue }
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        written += result
    }
}

private struct AckRecord: Decodable {
    var ack: UInt64
}

/// The idempotency record a journal line may carry beside its operation.
private struct IdempotentLine: Decodable {
    var idempotency: IdempotencyRecord?
}
