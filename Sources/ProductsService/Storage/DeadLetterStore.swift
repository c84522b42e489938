import Foundation
import NIOCore
import Shared
import Synchronization

/// A write the Database Service rejected as invalid, kept aside so the queue keeps moving.
struct DeadLetter: Codable, Sendable, Equatable {
    var operation: WriteOperation
    var error: String
    var deadLetteredAt: String

    enum CodingKeys: String, CodingKey {
        case operation, error
        case deadLetteredAt = "dead_lettered_at"
    }

    /// The letter's JSON line, as `dead-letters.jsonl` holds it.
    func writeJSON(into buffer: inout ByteBuffer) {
        buffer.writeStaticString("{\"operation\":")
        operation.writeJSON(into: &buffer)
        buffer.writeJSONString(error, after: ",\"error\":")
        buffer.writeJSONString(deadLetteredAt, after: ",\"dead_lettered_at\":")
        buffer.writeInteger(UInt8(ascii: "}"))
    }
}

extension DeadLetterStore.Snapshot {
    /// Counts a letter and keeps it among the most recent.
    mutating func add(_ letter: DeadLetter) {
        count += 1
        countByTenant[letter.operation.tenant, default: 0] += 1
        recent.append(letter)
        if recent.count > DeadLetterStore.recentLimit { recent.removeFirst(recent.count - DeadLetterStore.recentLimit) }
    }
}

/// The dead-letter area: `dead-letters.jsonl` under the data directory (memory only with the journal off).
final class DeadLetterStore: Sendable {
    private let path: String?
    private let state: Mutex<Snapshot>

    struct Snapshot: Sendable {
        var count = 0
        var countByTenant: [String: Int] = [:]
        var recent: [DeadLetter] = []
    }
    static let recentLimit = 100

    init(directory: String?) throws {
        path = directory.map { $0 + "/dead-letters.jsonl" }
        var snapshot = Snapshot()
        if let path, let data = FileManager.default.contents(atPath: path) {
            for line in data.split(separator: UInt8(ascii: "\n")) {
                guard let letter = try? JSONCoding.decoder.decode(DeadLetter.self, from: Data(line)) else { continue }
                snapshot.add(letter)
            }
        }
        state = Mutex(snapshot)
    }

    /// Records rejected writes durably before they leave the journal.
    func add(_ letters: [DeadLetter]) throws {
        guard !letters.isEmpty else { return }
        if let path {
            var bytes = ByteBuffer()
            for letter in letters {
                letter.writeJSON(into: &bytes)
                bytes.writeInteger(UInt8(ascii: "\n"))
            }
            try DurableFile.append(bytes, to: path)
        }
        state.withLock { state in
            for letter in letters { state.add(letter) }
        }
    }

    var snapshot: Snapshot { state.withLock { $0 } }
}
