import Foundation
import NIOCore
import Shared

/// One line of the journal: a write, and the idempotency record of the request that made it, if it had a key,
/// so that the two become durable together.
///
/// The line is the operation's JSON object with an optional `"idempotency"` field beside its own fields.
/// Encoding cannot fail: the line is built by the shared JSON writer when the record is made.
struct JournalRecord: Sendable {
    let operation: WriteOperation
    let idempotency: IdempotencyRecord?
    /// The encoded line, without its newline.
    let line: ByteBuffer

    init(_ operation: WriteOperation, idempotency: IdempotencyRecord? = nil) {
        self.operation = operation
        self.idempotency = idempotency
        var line = ByteBuffer()
        line.reserveCapacity(256 + (idempotency.map { $0.body.utf8.count + 256 } ?? 0))
        operation.writeJSONFields(into: &line)
        if let idempotency {
            line.writeStaticString(",\"idempotency\":")
            idempotency.writeJSON(into: &line)
        }
        line.writeInteger(UInt8(ascii: "}"))
        self.line = line
    }

    /// Reads a line back, keeping its bytes; nil when it is not a whole, valid record.
    init?(line: Data) {
        guard let decoded = try? JSONCoding.decoder.decode(Decoded.self, from: line) else { return nil }
        operation = decoded.operation
        idempotency = decoded.idempotency
        self.line = ByteBuffer(bytes: line)
    }

    private struct Decoded: Decodable {
        var operation: WriteOperation
        var idempotency: IdempotencyRecord?

        enum CodingKeys: String, CodingKey { case idempotency }

        init(from decoder: any Decoder) throws {
            operation = try WriteOperation(from: decoder)
            idempotency = try decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(IdempotencyRecord.self, forKey: .idempotency)
        }
    }
}
