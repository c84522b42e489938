import Foundation
import Testing

@testable import DatabaseService
import Shared

/// A fresh SQLite store in a temporary directory.
func makeStore() throws -> (SQLiteProductStore, URL) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("db-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return (try SQLiteProductStore(path: directory.appendingPathComponent("products.sqlite").path), directory)
}

func product(_ id: String, version: Int64, name: String = "Name", type: String = "physical") -> Product {
    let now = Timestamp.now()
    return Product(id: id, name: name, type: type, metadata: ["v": "\(version)"], createdAt: now, updatedAt: now, version: version)
}

@Suite("SQLite product store")
struct SQLiteProductStoreTests {
    @Test("API keys: stored as hashes, verified with their grant and last use, listed, revoked")
    func keys() async throws {
        let (store, directory) = try makeStore()
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(try await store.activeKeyCount() == 0)
        let (writer, writerKey) = try await store.createKey(tenant: "acme", scope: .readWrite)
        let (reader, readerKey) = try await store.createKey(tenant: "globex", scope: .readOnly)
        #expect(try await store.activeKeyCount() == 2)
        #expect(try await store.verifyKey(hash: APIKey.hash(writerKey)) == writer)
        #expect(try await store.verifyKey(hash: APIKey.hash(readerKey)) == reader)
        #expect(try await store.verifyKey(hash: APIKey.hash(APIKey.generate())) == nil)
        let listed = try await store.keys()
        #expect(listed.map(\.id) == [writer.id, reader.id])
        #expect(listed.allSatisfy { $0.lastUsedAt != nil && $0.revokedAt == nil })
        let stored = try await store.pool.read { db in try String.fetchAll(db, sql: "SELECT key_hash FROM api_keys") }
        #expect(!stored.contains(writerKey) && stored.contains(APIKey.hash(writerKey)), "only the hash is stored")

        #expect(try await store.revokeKey(id: writer.id))
        #expect(try await !store.revokeKey(id: writer.id), "already revoked")
        #expect(try await store.verifyKey(hash: APIKey.hash(writerKey)) == nil)
        #expect(try await store.activeKeyCount() == 1)
        _ = try await store.apply([.upsert(tenant: "initech", product: product("p", version: 1))])
        #expect(try await store.tenants() == ["globex", "initech"])
    }

    @Test("a newer version replaces, an older or equal one is ignored")
    func versioning() async throws {
        let (store, directory) = try makeStore()
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(try await store.apply([.upsert(tenant: "t", product: product("p", version: 1))]) == [.inserted])
        #expect(try await store.apply([.upsert(tenant: "t", product: product("p", version: 3, name: "Three"))]) == [.updated])
        #expect(try await store.apply([.upsert(tenant: "t", product: product("p", version: 2, name: "Two"))])
            == [.stale(storedVersion: 3, deleted: false)])
        #expect(try await store.apply([.upsert(tenant: "t", product: product("p", version: 3, name: "Again"))])
            == [.stale(storedVersion: 3, deleted: false)])
        #expect(try await store.product(tenant: "t", id: "p")?.name == "Three")
    }

    @Test("two updates delivered out of order, even in one batch: the newer survives")
    func outOfOrder() async throws {
        let (store, directory) = try makeStore()
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try await store.apply([
            .upsert(tenant: "t", product: product("p", version: 5, name: "Five")),
            .upsert(tenant: "t", product: product("p", version: 4, name: "Four")),
        ])
        #expect(try await store.product(tenant: "t", id: "p")?.name == "Five")
    }

    @Test("a tombstone stops older writes from resurrecting the product, even one never seen before")
    func tombstones() async throws {
        let (store, directory) = try makeStore()
        defer { try? FileManager.default.removeItem(at: directory) }
        let now = Timestamp.now()
        #expect(try await store.apply([.delete(tenant: "t", id: "ghost", version: 2, deletedAt: now)]) == [.inserted])
        #expect(try await store.apply([.upsert(tenant: "t", product: product("ghost", version: 1))])
            == [.stale(storedVersion: 2, deleted: true)])
        #expect(try await store.product(tenant: "t", id: "ghost") == nil)

        _ = try await store.apply([.upsert(tenant: "t", product: product("p", version: 1, name: "Lamp"))])
        #expect(try await store.delete(tenant: "t", id: "p", version: nil, deletedAt: now) == .deleted(version: 2, name: "Lamp"))
        #expect(try await store.delete(tenant: "t", id: "p", version: nil, deletedAt: now) == .notFound)
        _ = try await store.apply([.upsert(tenant: "t", product: product("p", version: 1))])
        #expect(try await store.product(tenant: "t", id: "p") == nil, "a replayed create does not bring it back")
        #expect(try await store.list(tenant: "t", query: ProductQuery(limit: 10)).products.isEmpty)
    }

    @Test("conditional delete refuses a version that is not newer")
    func conditionalDelete() async throws {
        let (store, directory) = try makeStore()
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try await store.apply([.upsert(tenant: "t", product: product("p", version: 3))])
        #expect(try await store.delete(tenant: "t", id: "p", version: 3, deletedAt: Timestamp.now()) == .stale(storedVersion: 3))
        #expect(try await store.delete(tenant: "t", id: "p", version: 4, deletedAt: Timestamp.now()) == .deleted(version: 4, name: "Name"))
    }

    @Test("listing pages in id order with has_more, filters by type, and keeps tenants apart")
    func listing() async throws {
        let (store, directory) = try makeStore()
        defer { try? FileManager.default.removeItem(at: directory) }
        let ids = (0..<25).map { String(format: "prod_%03d", $0) }
        _ = try await store.apply(ids.shuffled().map { .upsert(tenant: "a", product: product($0, version: 1, type: $0.hasSuffix("0") ? "ten" : "other")) })
        _ = try await store.apply([.upsert(tenant: "b", product: product("prod_b", version: 1))])
        var seen: [String] = []
        var cursor: String?
        var pages = 0
        repeat {
            let page = try await store.list(tenant: "a", query: ProductQuery(limit: 10, cursor: cursor.map(ProductQuery.Cursor.startingAfter)))
            seen += page.products.map(\.id)
            cursor = page.hasMore ? page.products.last?.id : nil
            pages += 1
        } while cursor != nil
        #expect(seen == ids)
        #expect(pages == 3)
        #expect(try await store.list(tenant: "a", query: { var query = ProductQuery(limit: 10); query.type = "ten"; return query }()).products.map(\.id)
            == ["prod_000", "prod_010", "prod_020"])
        #expect(try await store.list(tenant: "b", query: ProductQuery(limit: 10)).products.map(\.id) == ["prod_b"])
        #expect(try await store.product(tenant: "b", id: "prod_000") == nil)
    }

    @Test("metadata round-trips, and reopening the file keeps everything (migrations run once)")
    func reopen() async throws {
        let (store, directory) = try makeStore()
        defer { try? FileManager.default.removeItem(at: directory) }
        var stored = product("p", version: 1)
        stored.metadata = ["emoji": "🧪", "quote": "\"x\""]
        _ = try await store.apply([.upsert(tenant: "t", product: stored)])
        let reopened = try SQLiteProductStore(path: directory.appendingPathComponent("products.sqlite").path)
        #expect(try await reopened.product(tenant: "t", id: "p") == stored)
        try await reopened.ping()
    }
}
