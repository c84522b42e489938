import Foundation
import HTTPTypes
import NIOCore
import Synchronization

@testable import ProductsService
import Shared
import TestSupport

/// An in-memory Database Service with the real versioning rules, that can be switched off or made to
/// reject products: failure injection that a real process cannot give deterministically in a route test.
final class FakeDatabaseService: DatabaseServiceClient {
    struct Stored { var product: Product?; var version: Int64 }

    typealias State = (
        rows: [String: Stored], down: Bool, rejectNames: Set<String>, refuseBatchesWhole: Bool, batches: Int, listCalls: Int
    )
    private let state = Mutex<State>(([:], false, [], false, 0, 0))

    var isDown: Bool {
        get { state.withLock { $0.down } }
        set { state.withLock { $0.down = newValue } }
    }

    /// Products with these names are rejected as invalid.
    func reject(name: String) { state.withLock { _ = $0.rejectNames.insert(name) } }

    /// Answer a batch containing a rejected product with 400 for the whole batch, as a stricter server would.
    func refuseBatchesWhole() { state.withLock { $0.refuseBatchesWhole = true } }

    var batchCount: Int { state.withLock { $0.batches } }

    /// How many pages have been listed.
    var listCount: Int { state.withLock { $0.listCalls } }

    func live(_ id: String) -> Product? { state.withLock { $0.rows["default/" + id]?.product } }

    var liveCount: Int { state.withLock { $0.rows.values.filter { $0.product != nil }.count } }

    func seed(_ product: Product, tenant: String = defaultTenant) {
        state.withLock { $0.rows[tenant + "/" + product.id] = Stored(product: product, version: product.version) }
    }

    func product(tenant: String, id: String) async throws(DatabaseClientError) -> Product? {
        try state.withLock { (state: inout State) throws(DatabaseClientError) in
            guard !state.down else { throw .unreachable("connection refused") }
            return state.rows[tenant + "/" + id]?.product
        }
    }

    /// Pages the way the Database Service does: filters, then `limit` from the cursor, oldest first.
    func listProducts(tenant: String, query: ProductQuery) async throws(DatabaseClientError) -> ProductPage {
        try state.withLock { (state: inout State) throws(DatabaseClientError) in
            guard !state.down else { throw .unreachable("connection refused") }
            state.listCalls += 1
            let all = state.rows.filter { $0.key.hasPrefix(tenant + "/") }.compactMap(\.value.product)
                .filter { query.matches($0, createdAt: Timestamp.epochMilliseconds($0.createdAt)) }.sorted { $0.id < $1.id }
            switch query.cursor {
            case nil:
                return ProductPage(products: Array(all.prefix(query.limit)), hasMore: all.count > query.limit)
            case .startingAfter(let id):
                let after = all.filter { $0.id > id }
                return ProductPage(products: Array(after.prefix(query.limit)), hasMore: after.count > query.limit)
            case .endingBefore(let id):
                let before = all.filter { $0.id < id }
                return ProductPage(products: Array(before.suffix(query.limit)), hasMore: before.count > query.limit)
            }
        }
    }

    /// Reads the batch back with the Database Service's strict parser, as the real one does.
    func apply(json body: ByteBuffer, count: Int) async throws(DatabaseClientError) -> WriteBatchResult {
        let batch: WriteBatch
        do { batch = try WriteBatch(json: body) } catch { throw .invalidResponse("the batch sent: \(error)") }
        guard batch.operations.count == count else { throw .invalidResponse("\(count) operations announced, \(batch.operations.count) sent") }
        return try await apply(batch)
    }

    func apply(_ batch: WriteBatch) async throws(DatabaseClientError) -> WriteBatchResult {
        try state.withLock { (state: inout State) throws(DatabaseClientError) in
            guard !state.down else { throw .unreachable("connection refused") }
            state.batches += 1
            let rejectedNames = state.rejectNames
            func isRejected(_ operation: WriteOperation) -> Bool {
                if case .upsert(_, let product) = operation { return rejectedNames.contains(product.name) }
                return false
            }
            if state.refuseBatchesWhole, batch.operations.contains(where: isRejected) {
                throw .rejected(status: 400, body: APIError.Body(error: "bad product", code: "parameter_invalid", param: "name"))
            }
            return WriteBatchResult(results: batch.operations.map { operation in
                if isRejected(operation) { return OperationResult(id: operation.productID, outcome: .rejected, error: "bad name") }
                let key = operation.tenant + "/" + operation.productID
                if let stored = state.rows[key], stored.version >= operation.version {
                    return OperationResult(
                        id: operation.productID, outcome: .stale, storedVersion: stored.version, deleted: stored.product == nil)
                }
                switch operation {
                case .upsert(_, let product): state.rows[key] = Stored(product: product, version: product.version)
                case .delete(_, _, let version, _): state.rows[key] = Stored(product: nil, version: version)
                }
                changeLog.withLock { $0.append(Change(operation)) }
                return OperationResult(id: operation.productID, outcome: .applied)
            })
        }
    }

    /// Idempotency keys' answers, by tenant and key.
    private let answers = Mutex<[String: StoredAnswer]>([:])

    func write(_ write: CoordinatedWrite) async throws(DatabaseClientError) -> CoordinatedResult {
        guard !isDown else { throw .unreachable("connection refused") }
        let operation = write.operation
        let answerKey = write.idempotency.map { operation.tenant + "/" + $0.key }
        if let answerKey, let stored = answers.withLock({ $0[answerKey] }) {
            guard stored.fingerprint == write.idempotency?.fingerprint else { return CoordinatedResult(outcome: .keyReused) }
            return CoordinatedResult(outcome: .replayed, answer: stored)
        }
        if let expected = write.expectedVersion {
            let stored = state.withLock { $0.rows[operation.tenant + "/" + operation.productID] }
            guard let stored, stored.product != nil, stored.version == expected else {
                return CoordinatedResult(outcome: .preconditionFailed, storedVersion: stored?.version ?? 0, deleted: stored?.product == nil)
            }
        }
        let result = try await apply(WriteBatch(operations: [operation])).results[0]
        guard result.outcome == .applied else {
            return CoordinatedResult(outcome: .stale, storedVersion: result.storedVersion, deleted: result.deleted)
        }
        if let answerKey, let answer = write.idempotency { answers.withLock { $0[answerKey] = answer } }
        return CoordinatedResult(outcome: .applied)
    }

    /// Every applied change, in order; a cursor's position counts them.
    private let changeLog = Mutex<[Change]>([])

    /// Stores a change as another replica's write would, logging it.
    func write(_ operation: WriteOperation) async throws {
        _ = try await apply(WriteBatch(operations: [operation]))
    }

    func changes(after cursor: ChangeCursor, limit: Int, wait: Duration) async throws(DatabaseClientError) -> ChangeFeedRead {
        guard !isDown else { throw .unreachable("connection refused") }
        func page() -> ChangePage {
            changeLog.withLock { log in
                let start = min(Int(cursor.position), log.count)
                let changes = Array(log[start...].prefix(limit))
                return ChangePage(
                    changes: changes, next: ChangeCursor(transaction: 0, position: Int64(start + changes.count)),
                    recordedAtMs: changes.isEmpty ? nil : Timestamp.nowMilliseconds())
            }
        }
        let first = page()
        guard first.changes.isEmpty, wait > .zero else { return .page(first) }
        try? await Task.sleep(for: min(wait, .milliseconds(20)))
        return .page(page())
    }

    func changeHead() async throws(DatabaseClientError) -> ChangeCursor {
        guard !isDown else { throw .unreachable("connection refused") }
        return ChangeCursor(transaction: 0, position: Int64(changeLog.withLock { $0.count }))
    }

    func writerNode(replicaID: String, preferred: Int64?) async throws(DatabaseClientError) -> Int64 {
        guard !isDown else { throw .unreachable("connection refused") }
        return preferred ?? 1
    }

    /// What each writer last reported (`reportBacklog`), as the Database Service would list it.
    let backlogReports = Mutex<[Int64: Int64]>([:])

    func reportBacklog(node: Int64, _ report: BacklogReport) async throws(DatabaseClientError) {
        guard !isDown else { throw .unreachable("connection refused") }
        backlogReports.withLock { $0[node] = report.clearThroughMs }
    }

    func writerBacklogs() async throws(DatabaseClientError) -> [WriterBacklog] {
        guard !isDown else { throw .unreachable("connection refused") }
        return backlogReports.withLock { $0.map { WriterBacklog(node: $0.key, clearThroughMs: $0.value, reportedAgoMs: 0) }.sorted { $0.node < $1.node } }
    }

    /// Keys by hash; none: the service runs open.
    private let keys = Mutex<[String: KeyGrant]>([:])

    /// Adds an API key and returns it.
    func addKey(tenant: String, scope: KeyGrant.Scope = .readWrite) -> String {
        let key = APIKey.generate()
        keys.withLock { $0[APIKey.hash(key)] = KeyGrant(id: APIKey.generateID(), tenant: tenant, scope: scope) }
        return key
    }

    func removeKeys() { keys.withLock { $0.removeAll() } }

    /// How many times a key was asked to be verified.
    var verifications: Int { verifyCount.withLock { $0 } }
    private let verifyCount = Mutex(0)

    func verifyKey(hash: String) async throws(DatabaseClientError) -> KeyGrant? {
        verifyCount.withLock { $0 += 1 }
        guard !isDown else { throw .unreachable("connection refused") }
        return keys.withLock { $0[hash] }
    }

    func keyStatus() async throws(DatabaseClientError) -> KeyStatus {
        guard !isDown else { throw .unreachable("connection refused") }
        return KeyStatus(activeKeys: keys.withLock { $0.count })
    }

    func tenants() async throws(DatabaseClientError) -> [String] {
        try state.withLock { (state: inout State) throws(DatabaseClientError) in
            guard !state.down else { throw .unreachable("connection refused") }
            return Array(Set(state.rows.keys.map { String($0.prefix { $0 != "/" }) })).sorted()
        }
    }

    /// Events and webhooks are the Database Service's own; route tests of them run against the real one.
    func forward(_ method: HTTPRequest.Method, _ route: DatabaseRoute, tenant: String, body: ByteBuffer?) async throws(DatabaseClientError) -> ForwardedResponse {
        throw .unreachable("the fake Database Service has no events or webhooks")
    }

    func health() async throws(DatabaseClientError) -> DatabaseHealth {
        guard !isDown else { throw .unreachable("connection refused") }
        return DatabaseHealth(status: "healthy", service: "fake", backend: "memory", timestamp: Timestamp.now())
    }
}
