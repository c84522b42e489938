import DequeModule
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Shared
import Synchronization

/// A completed idempotent request: what a retry with the same key and the same request gets back.
struct IdempotencyRecord: Sendable, Equatable {
    var tenant: String
    var key: String
    /// Identifies the request (method, path and body), so a key reused for another request is refused.
    var fingerprint: String
    var status: Int
    /// The response body: the product as it was written.
    var body: String
    var etag: String
    /// When the request was answered, in milliseconds since the Unix epoch.
    var createdAt: Int64

    /// What the record costs in memory: its strings' bytes, and the rest of its entry, key and place by age.
    var byteCost: Int { tenant.utf8.count * 2 + key.utf8.count * 2 + fingerprint.utf8.count + body.utf8.count + etag.utf8.count + 160 }
}

/// An `Idempotency-Key` request as it arrives: the key and the fingerprint of what it asks.
struct IdempotentRequest: Sendable {
    var tenant: String
    var key: String
    var fingerprint: String

    static let maxKeyLength = 255

    /// Reads the `Idempotency-Key` of a request whose body is `body`; nil when absent, a 400 when empty or too long.
    init?(_ request: Request, tenant: String, body: ByteBuffer) throws(APIError) {
        try self.init(tenant: tenant, method: request.method.rawValue, path: request.uri.path, headers: request.headers, body: body)
    }

    /// Reads the header; nil when absent, a 400 when empty or too long.
    init?(tenant: String, method: String, path: String, headers: HTTPFields, body: ByteBuffer) throws(APIError) {
        guard let key = headers[.idempotencyKey] else { return nil }
        guard !key.isEmpty, key.count <= Self.maxKeyLength else {
            throw APIError.invalidParameter("Idempotency-Key", "Idempotency-Key must be 1 to \(Self.maxKeyLength) characters")
        }
        self.tenant = tenant
        self.key = key
        fingerprint = Self.fingerprint(method: method, path: path, body: body)
    }

    /// FNV-1a (64-bit) of the method, path and body bytes, in hex.
    static func fingerprint(method: String, path: String, body: ByteBuffer) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        for byte in method.utf8 { mix(byte) }
        mix(0x20)
        for byte in path.utf8 { mix(byte) }
        mix(0x0A)
        body.withUnsafeReadableBytes { for byte in $0 { mix(byte) } }
        return String(hash, radix: 16)
    }
}

/// This replica's idempotency keys for 24 hours, following the IETF httpapi `Idempotency-Key` draft.
///
/// The Database Service stores each key's answer in the transaction of its write, so a retry on any replica
/// gets it back; this store is the replica's own copy: it replays a retry made here without a round trip, and
/// answers 409 to a second request while the first with its key is in flight. It is kept in memory only.
///
/// Answers are kept up to `byteLimit` bytes (`IdempotencyRecord.byteCost`): past it the oldest go first. A retry whose answer went then is sent to
/// the Database Service like a first request, and gets the stored answer from there (24 hours): the bound costs
/// a round trip, never a second write.
final class IdempotencyStore: Sendable {
    static let retention: Duration = .seconds(24 * 60 * 60)
    /// 64 MiB: about 130,000 answers of a small product, 270 of the largest (240 KB of JSON).
    static let defaultByteLimit = 64 << 20

    private struct Key: Hashable {
        var tenant: String
        var key: String
    }

    private enum Entry {
        case inFlight(fingerprint: String)
        case done(IdempotencyRecord)
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        /// Completed keys by age, for expiry.
        var byAge: Deque<(key: Key, createdAt: Int64, cost: Int)> = []
        /// What the completed answers cost, by `IdempotencyRecord.byteCost`.
        var bytes = 0
    }

    private let state = Mutex(State())
    let byteLimit: Int
    /// Unix milliseconds; tests move it by hand.
    private let now: @Sendable () -> Int64

    init(byteLimit: Int = IdempotencyStore.defaultByteLimit, clock now: @escaping @Sendable () -> Int64 = { Timestamp.nowMilliseconds() }) {
        precondition(byteLimit >= 1)
        self.byteLimit = byteLimit
        self.now = now
    }

    /// What to do with an idempotent request: nil to perform it (its key is now in flight), or the record to replay.
    /// A key in flight is a 409; a key used for another request is a 422.
    func begin(_ request: IdempotentRequest) throws(APIError) -> IdempotencyRecord? {
        let key = Key(tenant: request.tenant, key: request.key)
        let now = self.now()
        return try state.withLock { state throws(APIError) in
            Self.expire(before: now - Self.retentionMilliseconds, in: &state)
            switch state.entries[key] {
            case nil:
                state.entries[key] = .inFlight(fingerprint: request.fingerprint)
                return nil
            case .inFlight:
                throw APIError.idempotencyKeyInUse
            case .done(let record):
                guard record.fingerprint == request.fingerprint else { throw APIError.idempotencyKeyReused }
                return record
            }
        }
    }

    /// The record of a write about to be made (its key stays in flight until `finish`).
    func record(for request: IdempotentRequest, status: Int, product: CachedProduct) -> IdempotencyRecord {
        IdempotencyRecord(
            tenant: request.tenant, key: request.key, fingerprint: request.fingerprint, status: status,
            body: String(buffer: product.json), etag: product.etag, createdAt: now())
    }

    /// The write is stored: retries now replay it.
    func finish(_ record: IdempotencyRecord) {
        state.withLock { state in complete(record, in: &state) }
    }

    /// The request failed before anything was written: its key may be used again.
    func abandon(_ request: IdempotentRequest) {
        state.withLock { state in
            if case .inFlight = state.entries[Key(tenant: request.tenant, key: request.key)] {
                state.entries[Key(tenant: request.tenant, key: request.key)] = nil
            }
        }
    }

    /// How many completed keys are held.
    var count: Int {
        state.withLock { state in state.byAge.count }
    }

    /// What the completed answers held cost, by `IdempotencyRecord.byteCost`.
    var bytes: Int {
        state.withLock { state in state.bytes }
    }

    // MARK: Helpers

    private static let retentionMilliseconds = Int64(retention.components.seconds) * 1000

    private func complete(_ record: IdempotencyRecord, in state: inout State) {
        let key = Key(tenant: record.tenant, key: record.key)
        if case .done = state.entries[key] { return }
        state.entries[key] = .done(record)
        let cost = record.byteCost
        state.byAge.append((key, record.createdAt, cost))
        state.bytes += cost
        // The newest answer is kept whatever it costs: the bound is then one answer over.
        while state.bytes > byteLimit, state.byAge.count > 1 {
            let oldest = state.byAge.removeFirst()
            state.bytes -= oldest.cost
            if case .done = state.entries[oldest.key] { state.entries[oldest.key] = nil }
        }
    }

    private static func expire(before cutoff: Int64, in state: inout State) {
        while let oldest = state.byAge.first, oldest.createdAt < cutoff {
            state.byAge.removeFirst()
            state.bytes -= oldest.cost
            if case .done(let record) = state.entries[oldest.key], record.createdAt < cutoff {
                state.entries[oldest.key] = nil
            }
        }
    }
}

extension HTTPField.Name {
    static let idempotencyKey = Self("Idempotency-Key")!
    static let idempotentReplayed = Self("Idempotent-Replayed")!
}
