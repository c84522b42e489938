import Foundation
import NIOCore
import NIOFoundationCompat

/// A place in the Database Service's change log: changes are read in `(transaction, position)` order.
///
/// On SQLite `transaction` is always 0 (one writer at a time commits positions in order). On PostgreSQL it is
/// the writing transaction's id, so that a reader can stop below the oldest transaction still running.
/// Written as `"<transaction>.<position>"`; `"0.0"` is the start of the log.
package struct ChangeCursor: Sendable, Hashable, Comparable, CustomStringConvertible, Codable {
    package var transaction: Int64
    package var position: Int64

    package static let start = ChangeCursor(transaction: 0, position: 0)

    package init(transaction: Int64, position: Int64) {
        self.transaction = transaction
        self.position = position
    }

    /// Parses `"<transaction>.<position>"`, both non-negative integers.
    package init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let transaction = Int64(parts[0]), let position = Int64(parts[1]), transaction >= 0, position >= 0
        else { return nil }
        self.init(transaction: transaction, position: position)
    }

    package var description: String { "\(transaction).\(position)" }

    package static func < (left: ChangeCursor, right: ChangeCursor) -> Bool {
        (left.transaction, left.position) < (right.transaction, right.position)
    }

    package init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let cursor = ChangeCursor(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a change cursor: \(text)"))
        }
        self = cursor
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// One applied write, as the change log records it.
package struct Change: Codable, Sendable, Equatable {
    package enum Operation: String, Codable, Sendable {
        case upsert, delete
    }

    package var tenant: String
    package var id: String
    package var version: Int64
    package var op: Operation
    /// When the change was made: the product's `updated_at`, or the delete's time.
    package var changedAt: String
    /// The product as this change left it; nil for a delete, or while it is still only `encodedProduct`.
    package var product: Product?
    /// The product's JSON as the feed sent it, not yet decoded: a replica that already has this version never
    /// decodes it (decoding its own writes back cost a tenth of its CPU under a stream of writes).
    package var encodedProduct: ByteBuffer?

    package init(tenant: String, id: String, version: Int64, op: Operation, changedAt: String, product: Product?) {
        self.tenant = tenant
        self.id = id
        self.version = version
        self.op = op
        self.changedAt = changedAt
        self.product = product
    }

    /// The change an applied operation makes.
    package init(_ operation: WriteOperation) {
        switch operation {
        case .upsert(let tenant, let product):
            self.init(
                tenant: tenant, id: product.id, version: product.version, op: .upsert, changedAt: product.updatedAt, product: product)
        case .delete(let tenant, let id, let version, let deletedAt):
            self.init(tenant: tenant, id: id, version: version, op: .delete, changedAt: deletedAt, product: nil)
        }
    }

    /// The write that repeats this change, decoding the product if needed.
    package func operation() throws -> WriteOperation {
        switch op {
        case .delete:
            return .delete(tenant: tenant, id: id, version: version, deletedAt: changedAt)
        case .upsert:
            if let product { return .upsert(tenant: tenant, product: product) }
            guard let encodedProduct else { throw JSONSyntaxError(description: "the upsert of \(id) has no product") }
            return .upsert(tenant: tenant, product: try JSONCoding.decoder.decode(Product.self, from: encodedProduct))
        }
    }

    enum CodingKeys: String, CodingKey {
        case tenant, id, version, op, product
        case changedAt = "changed_at"
    }
}

/// `GET /api/changes`: the changes after a cursor, oldest first, and the cursor to ask from next.
package struct ChangePage: Codable, Sendable, Equatable {
    package var changes: [Change]
    package var next: ChangeCursor
    /// When the newest change of the page was recorded (Unix milliseconds), for lag; nil on an empty page.
    package var recordedAtMs: Int64?

    package init(changes: [Change], next: ChangeCursor, recordedAtMs: Int64? = nil) {
        self.changes = changes
        self.next = next
        self.recordedAtMs = recordedAtMs
    }

    enum CodingKeys: String, CodingKey {
        case changes, next
        case recordedAtMs = "recorded_at_ms"
    }

    /// Reads `GET /api/changes`'s body, leaving each product as `encodedProduct`, undecoded.
    package init(json buffer: ByteBuffer) throws(JSONSyntaxError) {
        var changes: [Change] = []
        var next: ChangeCursor?
        var recordedAtMs: Int64?
        try buffer.parseJSONObject { parser, key throws(JSONSyntaxError) in
            switch key {
            case "changes":
                try parser.elements { parser throws(JSONSyntaxError) in changes.append(try Change(parsing: &parser, in: buffer)) }
            case "next":
                next = ChangeCursor(try parser.stringValue())
            case "recorded_at_ms":
                recordedAtMs = try parser.integerValue()
            default:
                _ = try parser.skipValue()
            }
        }
        guard let next else { throw JSONSyntaxError(description: "a change page without a valid 'next' cursor") }
        self.init(changes: changes, next: next, recordedAtMs: recordedAtMs)
    }
}

extension Change {
    /// One change of a page, its product's bytes sliced from `buffer` (the bytes `parser` reads).
    init(parsing parser: inout JSONParser, in buffer: ByteBuffer) throws(JSONSyntaxError) {
        var tenant, id, changedAt: String?
        var version: Int64?
        var op: Operation?
        var product: ByteBuffer?
        try parser.members { parser, key throws(JSONSyntaxError) in
            switch key {
            case "tenant": tenant = try parser.stringValue()
            case "id": id = try parser.stringValue()
            case "version": version = try parser.integerValue()
            case "op": op = Operation(rawValue: try parser.stringValue())
            case "changed_at": changedAt = try parser.stringValue()
            case "product":
                let start = try parser.skipValue()
                product = buffer.getSlice(at: buffer.readerIndex + start, length: parser.index - start)
            default: _ = try parser.skipValue()
            }
        }
        guard let tenant, let id, let version, let op, let changedAt else {
            throw JSONSyntaxError(description: "a change without tenant, id, version, op or changed_at")
        }
        self.init(tenant: tenant, id: id, version: version, op: op, changedAt: changedAt, product: nil)
        encodedProduct = product
    }
}

/// `GET /api/changes/head`: the newest change's cursor.
package struct ChangeHead: Codable, Sendable, Equatable {
    package var cursor: ChangeCursor
    package init(cursor: ChangeCursor) { self.cursor = cursor }
}
