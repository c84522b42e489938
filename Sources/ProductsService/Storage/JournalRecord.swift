import Foundation
import NIOCore
import Shared

/// One line of the journal: a write, and the time it was recorded.
///
/// The line is the operation's JSON object with the time it was recorded (`"recorded_at_ms"`, Unix milliseconds)
/// beside its own fields. Encoding cannot fail: the line is built by the shared JSON writer when the record is made.
struct JournalRecord: Sendable {
    let operation: WriteOperation
    /// When the write was recorded, in Unix milliseconds.
    let recordedAtMs: Int64
    /// The encoded line, without its newline.
    let line: ByteBuffer

    init(_ operation: WriteOperation, recordedAtMs: Int64 = Timestamp.nowMilliseconds()) {
        self.init(operation, line: Self.line(operation, recordedAtMs: recordedAtMs), recordedAtMs: recordedAtMs)
    }

    /// An upsert whose product was already encoded for the cache: its bytes are copied, not encoded again.
    init(upsert tenant: String, _ product: Product, encoded cached: CachedProduct, recordedAtMs: Int64 = Timestamp.nowMilliseconds()) {
        let operation = WriteOperation.upsert(tenant: tenant, product: product)
        var line = ByteBuffer()
        line.reserveCapacity(cached.jsonByteCount + tenant.utf8.count + 64)
        operation.writeJSONFields(into: &line) { cached.writeJSON(into: &$0) }
        Self.close(&line, recordedAtMs: recordedAtMs)
        self.init(operation, line: line, recordedAtMs: recordedAtMs)
    }

    private init(_ operation: WriteOperation, line: ByteBuffer, recordedAtMs: Int64) {
        self.operation = operation
        self.recordedAtMs = recordedAtMs
        self.line = line
    }

    /// The line of `operation`, with the time it was recorded when given: also a batch's element, byte for byte.
    static func line(_ operation: WriteOperation, recordedAtMs: Int64?) -> ByteBuffer {
        var line = ByteBuffer()
        line.reserveCapacity(256)
        operation.writeJSONFields(into: &line)
        if let recordedAtMs {
            close(&line, recordedAtMs: recordedAtMs)
        } else {
            line.writeInteger(UInt8(ascii: "}"))
        }
        return line
    }

    private static func close(_ line: inout ByteBuffer, recordedAtMs: Int64) {
        line.writeStaticString(",\"recorded_at_ms\":")
        line.writeString(String(recordedAtMs))
        line.writeInteger(UInt8(ascii: "}"))
    }

    /// Reads a line back with the strict parser the Database Service reads batches with (a line is a batch's
    /// element), keeping its bytes; nil when it is not a whole, valid record.
    init?(line: ByteBuffer) {
        var recordedAtMs: Int64?
        let operation = line.withUnsafeReadableBytes { bytes -> WriteOperation? in
            var parser = JSONParser(bytes: bytes)
            parser.skipWhitespace()
            guard let operation = try? WriteOperation(parsing: &parser, param: "record", recordedAtMs: &recordedAtMs) else { return nil }
            parser.skipWhitespace()
            return parser.index == bytes.count ? operation : nil
        }
        guard let operation, let recordedAtMs else { return nil }
        self.init(operation, line: line, recordedAtMs: recordedAtMs)
    }

    init?(line: Data) { self.init(line: ByteBuffer(bytes: line)) }

    /// When the write was recorded on the monotonic clock, from its wall-clock time: how long a write read back
    /// from disk (at a restart, or a refill during a long backlog) has been waiting.
    func recordedAt(now: ContinuousClock.Instant, nowMs: Int64) -> ContinuousClock.Instant {
        now - .milliseconds(max(0, nowMs - recordedAtMs))
    }
}

/// A write waiting to be confirmed by the Database Service, numbered in journal order. A class: the backlog hands
/// entries to the worker, which coalesces them into a batch, and a copy is then one reference, not one per string.
final class JournalEntry: Sendable {
    let sequence: UInt64
    let operation: WriteOperation
    /// When the write was recorded.
    let recordedAt: ContinuousClock.Instant
    /// The same in Unix milliseconds, sent with the write (nil only in tests' entries made by hand).
    let recordedAtMs: Int64?
    /// The journal's line, which a batch sends as it is.
    let line: ByteBuffer
    /// What the entry costs in memory (`memoryCost`), reckoned once.
    let memoryBytes: Int

    init(sequence: UInt64, record: JournalRecord, recordedAt: ContinuousClock.Instant) {
        self.sequence = sequence
        operation = record.operation
        self.recordedAt = recordedAt
        recordedAtMs = record.recordedAtMs
        line = record.line
        memoryBytes = Self.memoryCost(record)
    }

    /// An entry made by hand (tests), with its line encoded from the operation.
    init(sequence: UInt64, operation: WriteOperation, recordedAt: ContinuousClock.Instant, recordedAtMs: Int64? = nil) {
        self.sequence = sequence
        self.operation = operation
        self.recordedAt = recordedAt
        self.recordedAtMs = recordedAtMs
        line = JournalRecord.line(operation, recordedAtMs: recordedAtMs)
        memoryBytes = Self.memoryCost(line: line)
    }

    /// The entries of lines read back from the journal's files, in order; a line that does not parse is corruption.
    static func parsing(_ lines: [(sequence: UInt64, line: ByteBuffer)]) throws(JournalError) -> [JournalEntry] {
        let (now, nowMs) = (ContinuousClock.now, Timestamp.nowMilliseconds())
        var entries: [JournalEntry] = []
        entries.reserveCapacity(lines.count)
        for (sequence, line) in lines {
            guard let record = JournalRecord(line: line) else { throw .corrupt("unreadable record \(sequence)") }
            entries.append(JournalEntry(sequence: sequence, record: record, recordedAt: record.recordedAt(now: now, nowMs: nowMs)))
        }
        return entries
    }

    /// What an entry held in memory costs, reckoned from its line without walking the product: the line itself,
    /// the operation's strings (no more bytes than the line's, which escapes them), a string's header (16 bytes)
    /// for every two quotes, and a fixed 256. The journal's window is bounded by it.
    static func memoryCost(_ record: JournalRecord) -> Int { memoryCost(line: record.line) }

    /// The same for a record of `operation` made now.
    static func memoryCost(_ operation: WriteOperation) -> Int { memoryCost(JournalRecord(operation)) }

    static func memoryCost(line: ByteBuffer) -> Int {
        let quotes = line.withUnsafeReadableBytes { bytes in bytes.reduce(0) { $0 + ($1 == UInt8(ascii: "\"") ? 1 : 0) } }
        return 256 + 2 * line.readableBytes + 8 * quotes
    }
}

/// Why the journal refused a write.
enum JournalError: Error, CustomStringConvertible {
    case writeFailed(String)
    case corrupt(String)
    /// A create took too long to reach the journal (`Journal.maxMintAge`); the journal itself is sound.
    case stalled(String)

    var description: String {
        switch self {
        case .writeFailed(let reason): "journal write failed: \(reason)"
        case .corrupt(let reason): "journal is corrupt: \(reason)"
        case .stalled(let reason): "write stalled: \(reason)"
        }
    }
}
