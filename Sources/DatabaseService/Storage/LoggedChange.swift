import Foundation
import Hummingbird
import NIOCore
import Shared

/// A change as the log stores it, the product's JSON kept as it was written: serving the feed copies it into
/// the response instead of decoding and encoding every product again.
struct LoggedChange: Sendable, Equatable {
    var tenant: String
    var id: String
    var version: Int64
    var op: Change.Operation
    var changedAt: String
    /// The product as this change left it, in the JSON the services exchange; nil for a delete.
    var productJSON: String?
    /// The event it is: stored since events exist; for older changes, judged by op and version.
    var eventType: EventType
    /// Where it is in the log, and when it was recorded (Unix ms), when read from it.
    var cursor: ChangeCursor?
    var recordedMs: Int64?

    init(
        tenant: String, id: String, version: Int64, op: Change.Operation, changedAt: String, productJSON: String?,
        eventType: EventType? = nil, cursor: ChangeCursor? = nil, recordedMs: Int64? = nil
    ) {
        self.tenant = tenant
        self.id = id
        self.version = version
        self.op = op
        self.changedAt = changedAt
        self.productJSON = productJSON
        self.eventType = eventType ?? (op == .delete ? .productDeleted : version == 1 ? .productCreated : .productUpdated)
        self.cursor = cursor
        self.recordedMs = recordedMs
    }

    /// The change an applied operation makes; `created` when it stored a product where none was.
    init(_ operation: WriteOperation, created: Bool) {
        let change = Change(operation)
        self.init(
            tenant: change.tenant, id: change.id, version: change.version, op: change.op, changedAt: change.changedAt,
            productJSON: change.product.map { String(buffer: $0.json) },
            eventType: change.op == .delete ? .productDeleted : created ? .productCreated : .productUpdated)
    }

    /// This change as `outcome` made it, if it applied: the event depends on whether a product was there.
    func made(by outcome: ApplyOutcome) -> LoggedChange? {
        var change = self
        switch outcome {
        case .inserted: change.eventType = op == .delete ? .productDeleted : .productCreated
        case .updated: change.eventType = op == .delete ? .productDeleted : .productUpdated
        case .stale, .expired: return nil
        }
        return change
    }

    /// The change a stored outcome makes, if it applied.
    init?(_ operation: WriteOperation, outcome: ApplyOutcome) {
        switch outcome {
        case .inserted: self.init(operation, created: true)
        case .updated: self.init(operation, created: false)
        case .stale, .expired: return nil
        }
    }

    /// One entry of a product's history: `{"version","event","changed_at","product"}`, the product as this change
    /// left it (null for a delete).
    func writeVersion(into buffer: inout ByteBuffer) {
        buffer.writeStaticString("{\"version\":")
        buffer.writeString(String(version))
        buffer.writeJSONString(eventType.rawValue, after: ",\"event\":")
        buffer.writeJSONString(changedAt, after: ",\"changed_at\":")
        buffer.writeStaticString(",\"product\":")
        if let productJSON { buffer.writeString(productJSON) } else { buffer.writeStaticString("null") }
        buffer.writeInteger(UInt8(ascii: "}"))
    }

    /// The product a restore brings back from this change: its fields as they were, at `version` and `restoredAt`.
    func restoredProduct(version: Int64, restoredAt: String) throws -> Product? {
        guard op != .delete, let productJSON else { return nil }
        var product = try JSONCoding.decoder.decode(Product.self, from: Data(productJSON.utf8))
        product.updatedAt = restoredAt
        product.version = version
        return product
    }

    /// The public event: `{"id","type","created_at","data":{"object":…}}`, the product as this change left
    /// it, or `{"id","deleted":true,"version"}` for a delete. Needs `cursor`.
    func writeEvent(into buffer: inout ByteBuffer) {
        buffer.writeJSONString(EventID.make(cursor ?? .start), after: "{\"id\":")
        buffer.writeJSONString(eventType.rawValue, after: ",\"type\":")
        buffer.writeJSONString(changedAt, after: ",\"created_at\":")
        buffer.writeStaticString(",\"data\":{\"object\":")
        if op == .upsert, let productJSON {
            buffer.writeString(productJSON)
        } else {
            buffer.writeJSONString(id, after: "{\"id\":")
            buffer.writeStaticString(",\"deleted\":true,\"version\":")
            buffer.writeString(String(version))
            buffer.writeInteger(UInt8(ascii: "}"))
        }
        buffer.writeStaticString("}}")
    }

    /// The event as one JSON document.
    var eventJSON: String {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(160 + (productJSON?.utf8.count ?? 0))
        writeEvent(into: &buffer)
        return String(buffer: buffer)
    }

    /// The product, decoded.
    var product: Product? {
        productJSON.flatMap { try? JSONCoding.decoder.decode(Product.self, from: Data($0.utf8)) }
    }

    func writeJSON(into buffer: inout ByteBuffer) {
        buffer.writeJSONString(tenant, after: "{\"tenant\":")
        buffer.writeJSONString(id, after: ",\"id\":")
        buffer.writeStaticString(",\"version\":")
        buffer.writeString(String(version))
        buffer.writeJSONString(op.rawValue, after: ",\"op\":")
        buffer.writeJSONString(changedAt, after: ",\"changed_at\":")
        if let productJSON {
            buffer.writeStaticString(",\"product\":")
            buffer.writeString(productJSON)
        }
        buffer.writeInteger(UInt8(ascii: "}"))
    }
}

/// A page of the change log: `GET /api/changes`'s body, in the shape of `ChangePage`.
struct ChangeLogPage: Sendable, Equatable, ResponseGenerator {
    var changes: [LoggedChange]
    var next: ChangeCursor
    /// When the page's newest change was recorded (Unix milliseconds); nil on an empty page.
    var recordedAtMs: Int64?

    /// The page cut after the change that passes `maxBytes` of product JSON (at least one change stays), its cursor
    /// and time those of its last change.
    func bounded(toBytes maxBytes: Int = ServiceContract.maxPageBytes) -> ChangeLogPage {
        var total = 0
        guard let cut = changes.firstIndex(where: { change in
            total += change.productJSON?.utf8.count ?? 0
            return total > maxBytes
        }), cut + 1 < changes.count else { return self }
        let kept = Array(changes[...cut])
        return ChangeLogPage(changes: kept, next: kept.last!.cursor ?? next, recordedAtMs: kept.last!.recordedMs)
    }

    var json: ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(64 + changes.reduce(0) { $0 + 96 + ($1.productJSON?.utf8.count ?? 0) })
        buffer.writeStaticString("{\"changes\":[")
        for (index, change) in changes.enumerated() {
            if index > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
            change.writeJSON(into: &buffer)
        }
        buffer.writeJSONString(next.description, after: "],\"next\":")
        if let recordedAtMs {
            buffer.writeStaticString(",\"recorded_at_ms\":")
            buffer.writeString(String(recordedAtMs))
        }
        buffer.writeInteger(UInt8(ascii: "}"))
        return buffer
    }

    func response(from request: Request, context: some RequestContext) -> Response {
        .json(buffer: json)
    }
}
