import Foundation

/// `POST /api/writers`: which replica asks.
package struct WriterRequest: Codable, Sendable {
    package var replicaID: String
    /// The number the replica has stamped provisionally, before it could ask; granted when free.
    package var preferred: Int64?
    package init(replicaID: String, preferred: Int64? = nil) {
        self.replicaID = replicaID
        self.preferred = preferred
    }
    enum CodingKeys: String, CodingKey {
        case preferred
        case replicaID = "replica_id"
    }
}

/// `POST /api/writers`: the replica's writer number.
package struct WriterRegistration: Codable, Sendable, Equatable {
    package var node: Int64
    package init(node: Int64) { self.node = node }
}

/// What a replica tells the Database Service of its unconfirmed writes, every second: every write it acknowledged
/// of a product whose id it minted at or before `clear_through_ms` (its own clock, Unix milliseconds) is confirmed.
package struct BacklogReport: Codable, Sendable, Equatable {
    package var clearThroughMs: Int64
    package init(clearThroughMs: Int64) { self.clearThroughMs = clearThroughMs }
    enum CodingKeys: String, CodingKey { case clearThroughMs = "clear_through_ms" }
}

/// A replica's last `BacklogReport`, and how long ago the Database Service received it.
package struct WriterBacklog: Codable, Sendable, Equatable {
    package var node: Int64
    package var clearThroughMs: Int64
    package var reportedAgoMs: Int64
    package init(node: Int64, clearThroughMs: Int64, reportedAgoMs: Int64) {
        self.node = node
        self.clearThroughMs = clearThroughMs
        self.reportedAgoMs = reportedAgoMs
    }
    enum CodingKeys: String, CodingKey {
        case node
        case clearThroughMs = "clear_through_ms"
        case reportedAgoMs = "reported_ago_ms"
    }
}

/// `GET /api/writers/backlogs`: every replica's last report of the past hour.
package struct WriterBacklogList: Codable, Sendable, Equatable {
    package var data: [WriterBacklog]
    package init(data: [WriterBacklog]) { self.data = data }
}

/// Product versions: a hybrid logical clock in milliseconds with the writer's number in the low 10 bits.
///
/// Every replica stamps its writes with its own writer number (0 is the Database Service's), so two
/// different contents never share a version; and a new version is above both the version it replaces and
/// the current time, so concurrent writes on different replicas resolve by one order every replica and the
/// database agree on: last writer wins, by clock, then by writer number. Versions stay below 2^53, exact in
/// JavaScript, until the year 2248. A product's first version is 1: its id is new, so no other write can share it.
package enum Versions {
    package static let writerBits: Int64 = 10
    /// Replicas' writer numbers; 0 is the Database Service's own.
    package static let writerRange: ClosedRange<Int64> = 1...1023

    /// The version a writer gives the change that replaces `previous`, at `nowMs` (Unix milliseconds).
    package static func next(after previous: Int64, writer: Int64, nowMs: Int64 = Timestamp.nowMilliseconds()) -> Int64 {
        let time = max((previous >> writerBits) + 1, nowMs)
        return time << writerBits | (writer & ((1 << writerBits) - 1))
    }
}
