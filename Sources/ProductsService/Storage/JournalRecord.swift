import Foundation
import NIOCore
import Shared

/// One line of the journal: a write, and the idempotency record of the request that made it, if it had a key,
/// so that the two become durable together.
///
/// The line is the operation's JSON object with an optional `"idempotency"` field and the time it was recorded
/// (`"recorded_at_ms"`, Unix milliseconds) beside its own fields. Encoding cannot fail: the line is built by the
/// shared JSON writer when the record is made.
struct JournalRecord: Sendable {
    let operation: WriteOperation
    let idempotency: IdempotencyRecord?
    /// When the write was recorded, in Unix milliseconds; nil for a line written before records carried it.
    let recordedAtMs: Int64?
    /// The encoded line, without its newline.
    let line: ByteBuffer

    init(_ operation: WriteOperation, idempotency: IdempotencyRecord? = nil, recordedAtMs: Int64 = Timestamp.nowMilliseconds()) {
        self.operation = operation
        self.idempotency = idempotency
        self.recordedAtMs = recordedAtMs
        var line = ByteBuffer()
        line.reserveCapacity(256 + (idempotency.map { $0.body.utf8.count + 256 } ?? 0))
        operation.writeJSONFields(into: &line)
        if let idempotency {
            line.writeStaticString(",\"idempotency\":")
            idempotency.writeJSON(into: &line)
        }
        line.writeStaticString(",\"recorded_at_ms\":")
        line.writeString(String(recordedAtMs))
        line.writeInteger(UInt8(ascii: "}"))
        self.line = line
    }

    /// Reads a line back, keeping its bytes; nil when it is not a whole, valid record.
    init?(line: Data) {
        guard let decoded = try? JSONCoding.decoder.decode(Decoded.self, from: line) else { return nil }
        operation = decoded.operation
        idempotency = decoded.idempotency
        recordedAtMs = decoded.recordedAtMs
        self.line = ByteBuffer(bytes: line)
    }

    /// When the write was recorded on the monotonic clock, from its wall-clock time: how long a write read back
    /// from disk (at a restart, or a refill during a long backlog) has been waiting. `fallback` for older lines.
    func recordedAt(now: ContinuousClock.Instant, nowMs: Int64, fallback: ContinuousClock.Instant) -> ContinuousClock.Instant {
        guard let recordedAtMs else { return fallback }
        return now - .milliseconds(max(0, nowMs - recordedAtMs))
    }

    private struct Decoded: Decodable {
        var operation: WriteOperation
        var idempotency: IdempotencyRecord?
        var recordedAtMs: Int64?

        enum CodingKeys: String, CodingKey {
            case idempotency
            case recordedAtMs = "recorded_at_ms"
        }

        init(from decoder: any Decoder) throws {
            operation = try WriteOperation(from: decoder)
            let container = try decoder.container(keyedBy: CodingKeys.self)
            idempotency = try container.decodeIfPresent(IdempotencyRecord.self, forKey: .idempotency)
            recordedAtMs = try container.decodeIfPresent(Int64.self, forKey: .recordedAtMs)
        }
    }
}
