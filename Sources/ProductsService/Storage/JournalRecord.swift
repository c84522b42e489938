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
        self.operation = operation
        self.recordedAtMs = recordedAtMs
        var line = ByteBuffer()
        line.reserveCapacity(256)
        operation.writeJSONFields(into: &line)
        line.writeStaticString(",\"recorded_at_ms\":")
        line.writeString(String(recordedAtMs))
        line.writeInteger(UInt8(ascii: "}"))
        self.line = line
    }

    /// Reads a line back, keeping its bytes; nil when it is not a whole, valid record.
    init?(line: Data) {
        guard let decoded = try? JSONCoding.decoder.decode(Decoded.self, from: line) else { return nil }
        operation = decoded.operation
        recordedAtMs = decoded.recordedAtMs
        self.line = ByteBuffer(bytes: line)
    }

    /// When the write was recorded on the monotonic clock, from its wall-clock time: how long a write read back
    /// from disk (at a restart, or a refill during a long backlog) has been waiting.
    func recordedAt(now: ContinuousClock.Instant, nowMs: Int64) -> ContinuousClock.Instant {
        now - .milliseconds(max(0, nowMs - recordedAtMs))
    }

    private struct Decoded: Decodable {
        var operation: WriteOperation
        var recordedAtMs: Int64

        enum CodingKeys: String, CodingKey {
            case recordedAtMs = "recorded_at_ms"
        }

        init(from decoder: any Decoder) throws {
            operation = try WriteOperation(from: decoder)
            recordedAtMs = try decoder.container(keyedBy: CodingKeys.self).decode(Int64.self, forKey: .recordedAtMs)
        }
    }
}

/// A write waiting to be confirmed by the Database Service, numbered in journal order.
struct JournalEntry: Sendable {
    var sequence: UInt64
    let operation: WriteOperation
    /// When the write was recorded.
    var recordedAt: ContinuousClock.Instant
    /// The same in Unix milliseconds, sent with the write (nil only in tests' entries made by hand).
    var recordedAtMs: Int64?
    /// What the entry costs in memory (`memoryCost`), reckoned once.
    let memoryBytes: Int

    init(sequence: UInt64, operation: WriteOperation, recordedAt: ContinuousClock.Instant, recordedAtMs: Int64? = nil) {
        self.sequence = sequence
        self.operation = operation
        self.recordedAt = recordedAt
        self.recordedAtMs = recordedAtMs
        memoryBytes = Self.memoryCost(operation)
    }

    /// What an entry held in memory costs, by its strings' bytes: the journal's window is bounded by it.
    static func memoryCost(_ operation: WriteOperation) -> Int {
        switch operation {
        case .upsert(let tenant, let product):
            // A string's header is 16 bytes; a dictionary entry's, about 32.
            let text = product.textBytes
            return 256 + tenant.utf8.count + text.bytes + 16 * text.strings
        case .delete(let tenant, let id, _, let deletedAt):
            return 160 + tenant.utf8.count + id.utf8.count + deletedAt.utf8.count
        }
    }
}
