import Foundation
import Logging
import NIOCore
import Synchronization
import Testing

@testable import ProductsService
import Shared

@Suite("Idempotency keys")
struct IdempotencyTests {
    let logger = Logger(label: "test")

    func request(_ key: String, body: String = #"{"name":"A"}"#, path: String = "/products") throws -> IdempotentRequest {
        try #require(try IdempotentRequest(
            tenant: defaultTenant, method: "POST", path: path, headers: [.idempotencyKey: key], body: ByteBuffer(string: body)))
    }

    func input(_ name: String) throws -> ProductInput {
        try ProductInput(json: .object(["name": .string(name)]))
    }

    @Test("a key's answer is stored with its write by the Database Service: a retry on another replica replays it, another body is 422")
    func acrossReplicas() async throws {
        let database = FakeDatabaseService()
        let first = try ReplicaFixture(database: database)
        let second = try ReplicaFixture(database: database)
        defer { first.remove(); second.remove() }
        let created = try await first.replica.create(tenant: defaultTenant, try input("A"), idempotent: try request("k1")).written
        #expect(database.live(created.product.id) == created.product, "stored in the Database Service before the answer")
        #expect(first.cache.get(tenant: defaultTenant, id: created.product.id)?.product == created.product, "and in this replica's cache")
        for fixture in [first, second] {
            guard case .replayed(let replay) = try await fixture.replica.create(tenant: defaultTenant, try input("A"), idempotent: try request("k1"))
            else {
                Issue.record("a retry with the same key and body replays, on either replica")
                return
            }
            #expect(replay.status == 201 && replay.body == String(buffer: created.json) && replay.etag == created.etag)
        }
        await #expect(throws: APIError.idempotencyKeyReused) {
            try await second.replica.create(tenant: defaultTenant, try input("B"), idempotent: try request("k1", body: #"{"name":"B"}"#))
        }
        #expect(database.liveCount == 1, "one product, however many retries")
        #expect(throws: APIError.idempotencyKeyReused) { try first.idempotency.begin(try request("k1", path: "/products/x")) }
    }

    @Test("while the Database Service is down an idempotent write is a 503 that does not use up its key")
    func needsTheDatabase() async throws {
        let fixture = try ReplicaFixture()
        defer { fixture.remove() }
        fixture.database.isDown = true
        await #expect(throws: APIError.self) {
            try await fixture.replica.create(tenant: defaultTenant, try input("A"), idempotent: try request("k1"))
        }
        #expect(fixture.database.liveCount == 0 && fixture.cache.statistics(tenant: defaultTenant).totalProducts == 0)
        fixture.database.isDown = false
        _ = try await fixture.replica.create(tenant: defaultTenant, try input("A"), idempotent: try request("k1")).written
    }

    @Test("answers are kept up to the byte limit, the oldest going first, and none past 24 hours (an injected clock)")
    func bounded() throws {
        let clock = Mutex<Int64>(1_767_794_400_000)
        let product = CachedProduct(Product(id: "p", name: "A", type: "t", metadata: [:], createdAt: "x", updatedAt: "x", version: 1))
        let cost = IdempotencyStore().record(for: try request("k0"), status: 201, product: product).byteCost
        let store = IdempotencyStore(byteLimit: cost * 3 + cost / 2) { clock.withLock { $0 } }
        for index in 0..<5 {
            let request = try request("k\(index)")
            #expect(try store.begin(request) == nil)
            store.finish(store.record(for: request, status: 201, product: product))
            clock.withLock { $0 += 1000 }
        }
        #expect(store.count == 3)
        for index in 2..<5 { #expect(try store.begin(try request("k\(index)")) != nil, "k\(index) is kept") }
        for index in 0..<2 {
            let request = try request("k\(index)")
            #expect(try store.begin(request) == nil, "k\(index) went for newer ones")
            store.abandon(request)
        }
        clock.withLock { $0 += 24 * 3_600_000 - 2000 }
        #expect(try store.begin(try request("k4")) != nil, "k4 is not a day old yet")
        clock.withLock { $0 += 1001 }
        let expired = try request("k4")
        #expect(try store.begin(expired) == nil, "a day old: expired")
        store.abandon(expired)
        #expect(store.count == 0)
    }

    @Test("a retry whose answer this replica no longer holds is replayed from the Database Service, never written twice")
    func evictedAnswerReplaysFromTheDatabase() async throws {
        let fixture = try ReplicaFixture(idempotencyBytes: 1_200)
        defer { fixture.remove() }
        var created: [CachedProduct] = []
        for index in 0..<4 {
            created.append(try await fixture.replica.create(tenant: defaultTenant, try input("A"), idempotent: try request("k\(index)")).written)
        }
        #expect(fixture.idempotency.count < 4, "the oldest answers went to stay within 1,200 bytes")
        guard case .replayed(let replay) = try await fixture.replica.create(tenant: defaultTenant, try input("A"), idempotent: try request("k0"))
        else {
            Issue.record("the first key's retry replays")
            return
        }
        #expect(replay.body == String(buffer: created[0].json))
        #expect(fixture.database.liveCount == 4, "no second write")
    }

    @Test("answers of 40,000-character products are bounded by bytes, not by count")
    func boundedByBytes() throws {
        let store = IdempotencyStore(byteLimit: 1 << 20)
        let large = CachedProduct(Product(
            id: "p", name: "A", type: "t", description: String(repeating: "\u{1F600}", count: 40_000), metadata: [:], createdAt: "x",
            updatedAt: "x", version: 1))
        for index in 0..<100 {
            let request = try request("k\(index)")
            _ = try store.begin(request)
            store.finish(store.record(for: request, status: 201, product: large))
            #expect(store.bytes <= 1 << 20)
        }
        #expect(store.count == (1 << 20) / store.record(for: try request("k"), status: 201, product: large).byteCost)
        #expect(try store.begin(try request("k99")) != nil, "the newest is kept")
    }

    @Test("an abandoned key (the request failed) may be used again")
    func abandon() throws {
        let store = IdempotencyStore()
        let first = try request("k")
        #expect(try store.begin(first) == nil)
        store.abandon(first)
        #expect(try store.begin(try request("k", body: #"{"name":"fixed"}"#)) == nil)
    }
}
