import Foundation
import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import Shared
import Synchronization

/// Writes the Database Service decides (If-Match, Idempotency-Key), history and restore, and imports' writes.
extension Replica {
    // MARK: Coordinated writes

    /// What a coordinated write asks the Database Service to do: store `operation` if the stored version is
    /// still `expectedVersion`; `answer` is the product the client gets (nil for a delete), with `status`.
    struct Decision {
        var operation: WriteOperation
        var expectedVersion: Int64?
        var answer: CachedProduct?
        var status: Int
        /// The client gave the product's handle (see `CoordinatedWrite.handleGiven`).
        var handleGiven = false

        static func write(
            _ operation: WriteOperation, expectedVersion: Int64?, answer: CachedProduct?, status: Int, handleGiven: Bool = false
        ) -> Decision {
            Decision(operation: operation, expectedVersion: expectedVersion, answer: answer, status: status, handleGiven: handleGiven)
        }
    }

    /// A write that one replica cannot decide alone, decided by the Database Service in one transaction:
    /// `If-Match` (compared with the stored version, so of concurrent writes from one version on different
    /// replicas exactly one wins) and `Idempotency-Key` (the key's answer is stored with the write, so a retry
    /// on any replica gets it back). It needs the Database Service: while it cannot be reached these writes are
    /// 503 `database_unavailable`. The write is durable in the Database Service when this returns, and in the
    /// change log every replica follows; this replica's cache has it at once.
    ///
    /// `decide` reads what it needs and says what to write; when the stored version moved meanwhile,
    /// `onConflict` throws (a 412) or lets `decide` run again, up to three times. Returns nil for a delete
    /// (which has no answer to keep), else the product written or the key's first answer.
    func coordinated(
        _ idempotent: IdempotentRequest?, decide: () async throws -> Decision, onConflict: (_ storedVersion: Int64) throws -> Void
    ) async throws -> WriteResult? {
        if let idempotent, let record = try idempotency.begin(idempotent) { return .replayed(record) }
        // Until answered, a failure frees the key for another try.
        var answered = false
        defer { if !answered, let idempotent { idempotency.abandon(idempotent) } }
        for _ in 0..<3 {
            let decision = try await decide()
            let record = idempotent.flatMap { request in
                decision.answer.map { idempotency.record(for: request, status: decision.status, product: $0) }
            }
            let sent = ContinuousClock.now
            let result = try await submit(decision, record: record)
            if case .done(let answer) = try settle(result, of: decision, sent: sent, record: record, idempotent: idempotent) {
                answered = true
                return answer
            }
            try onConflict(result.storedVersion ?? 0)
        }
        throw APIError.versionConflict("The product kept changing while being written; retry")
    }

    /// Sends a coordinated write; an unreachable Database Service is a 503.
    func submit(_ decision: Decision, record: IdempotencyRecord?) async throws -> CoordinatedResult {
        let answer = record.map {
            StoredAnswer(key: $0.key, fingerprint: $0.fingerprint, status: $0.status, body: $0.body, etag: $0.etag, createdAt: $0.createdAt)
        }
        do {
            return try await database.write(
                CoordinatedWrite(
                    operation: decision.operation, expectedVersion: decision.expectedVersion, idempotency: answer,
                    handleGiven: decision.handleGiven ? true : nil))
        } catch {
            throw Self.databaseUnavailable(error)
        }
    }

    /// What a coordinated write came to: an answer (nil for a delete), or a stored version that moved meanwhile.
    enum Settled {
        case done(WriteResult?)
        case conflict
    }

    /// What a coordinated write's result means for the client.
    func settle(
        _ result: CoordinatedResult, of decision: Decision, sent: ContinuousClock.Instant, record: IdempotencyRecord?,
        idempotent: IdempotentRequest?
    ) throws(APIError) -> Settled {
        switch result.outcome {
        case .applied:
            let operation = decision.operation
            // The Database Service stores another product when it settled a clash (a handle it made, suffixed).
            let answer = result.stored.map(CachedProduct.init) ?? decision.answer
            let stored: FetchedState = switch operation {
            case .upsert(_, let product): .stored(answer ?? CachedProduct(product))
            case .delete(_, _, let version, _): .deleted(version: version)
            }
            cache.apply(.fetched(id: operation.productID, stored, since: sent), tenant: operation.tenant)
            if var record {
                if let idempotent, let answer, result.stored != nil { record = idempotency.record(for: idempotent, status: decision.status, product: answer) }
                idempotency.finish(record)
            }
            return .done(answer.map(WriteResult.written))
        case .refused:
            throw result.refusal ?? APIError.versionConflict("The Database Service refused the write; retry")
        case .replayed:
            guard let idempotent, let stored = result.answer else {
                throw APIError.versionConflict("The Database Service replayed an answer for no key; retry")
            }
            let record = IdempotencyRecord(
                tenant: idempotent.tenant, key: idempotent.key, fingerprint: stored.fingerprint, status: stored.status, body: stored.body,
                etag: stored.etag, createdAt: stored.createdAt)
            idempotency.finish(record)
            return .done(.replayed(record))
        case .keyReused:
            throw APIError.idempotencyKeyReused
        case .preconditionFailed, .stale:
            if result.deleted == true { throw productNotFound }
            return .conflict
        }
    }

    static func databaseUnavailable(_ error: DatabaseClientError) -> APIError {
        .serviceUnavailable(
            "database_unavailable", "This write needs the Database Service (If-Match or Idempotency-Key), which is unreachable: \(error)")
    }

    /// The product as the Database Service stores it, once this replica's own pending writes have reached it
    /// (so it stores what clients of this replica last saw), checked against `condition`; the cache learns it.
    func storedForCoordination(tenant: String, id: String, condition: EntityTag.Condition?) async throws -> Product {
        try await flush(tenant: tenant, timeout: .seconds(5))
        let asked = ContinuousClock.now
        let shown = cache.visibleVersion(tenant: tenant, id: id)
        func stored(askDatabase: Bool) async throws -> Product? {
            // Once the feed brought it, the Database Service has it.
            guard askDatabase || cache.get(tenant: tenant, id: id) != nil else { return nil }
            do { return try await database.product(tenant: tenant, id: id) } catch { throw Self.databaseUnavailable(error) }
        }
        var found = try await stored(askDatabase: true)
        if found == nil, shown == nil { found = try await awaitingRecent(id: id, stored) }
        guard let stored = found else {
            if let shown { cache.apply(.fetched(id: id, .absent(shownVersion: shown), since: asked), tenant: tenant) }
            throw productNotFound
        }
        cache.apply(.fetched(id: id, .stored(CachedProduct(stored)), since: asked), tenant: tenant)
        if let condition, !condition.matchesStrongly(EntityTag.product(id: id, version: stored.version)) {
            throw APIError.preconditionFailed(id: id, currentVersion: stored.version)
        }
        return stored
    }


    // MARK: History

    /// What restoring a version came to: the product written (`created` when it was deleted), or the Database
    /// Service's refusal, which the client gets as it is.
    enum RestoreResult: Sendable {
        case restored(CachedProduct, created: Bool)
        case refused(ForwardedResponse)
    }

    /// Brings back `version` of a product from its history, as its next version, decided by the Database Service
    /// in one transaction. This replica's pending writes are flushed first, so that the history holds what its
    /// clients last saw; the cache has the result at once, other replicas through the change feed.
    func restore(tenant: String, id: String, version: Int64) async throws -> RestoreResult {
        try await flush(tenant: tenant, timeout: .seconds(5))
        var body = ByteBuffer()
        body.writeStaticString("{\"version\":")
        body.writeString(String(version))
        body.writeStaticString("}")
        let answer: ForwardedResponse
        let asked = ContinuousClock.now
        do {
            answer = try await database.forward(
                .post, .restoreProduct(id: id), tenant: tenant, body: body)
        } catch {
            throw APIError.serviceUnavailable("database_unavailable", "Restoring needs the Database Service, which is unreachable: \(error)")
        }
        guard answer.status == 200 || answer.status == 201 else { return .refused(answer) }
        let product: Product
        do { product = try JSONCoding.decoder.decode(Product.self, from: Data(buffer: answer.body)) } catch {
            throw APIError.serviceUnavailable("database_unavailable", "The Database Service's answer to a restore was not a product: \(error)")
        }
        let restored = CachedProduct(product)
        cache.apply(.fetched(id: id, .stored(restored), since: asked), tenant: tenant)
        return .restored(restored, created: answer.status == 201)
    }

    /// A product's versions, newest first, as the Database Service lists them from its change log, once this
    /// replica's pending writes have reached it (a client sees its own last write there).
    func versions(tenant: String, id: String, query: ProductHistory.Query) async throws -> ForwardedResponse {
        try await flush(tenant: tenant, timeout: .seconds(5))
        func history(askDatabase: Bool) async throws -> ForwardedResponse? {
            guard askDatabase || cache.get(tenant: tenant, id: id) != nil else { return nil }
            do {
                let answer = try await database.forward(
                    .get, .productVersions(id: id, query: query.queryString(startingAfter: query.startingAfter)),
                    tenant: tenant, body: nil)
                return answer.status == 404 ? nil : answer
            } catch {
                throw APIError.serviceUnavailable("database_unavailable", "A product's history is kept by the Database Service, which is unreachable: \(error)")
            }
        }
        if let answer = try await history(askDatabase: true) { return answer }
        if let answer = try await awaitingRecent(id: id, history) { return answer }
        throw productNotFound
    }
}
