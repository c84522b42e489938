import Foundation
import Testing

@testable import DatabaseService
import Shared
import TestSupport

@Suite("Product store, on SQLite and PostgreSQL")
struct ProductStoreTests {
    @Test("API keys: stored as hashes, verified with their grant and last use, listed, revoked", arguments: StoreBackend.available)
    func keys(backend: StoreBackend) async throws {
        try await backend.withStore { store, reopen async throws in
            #expect(try await store.keys.activeKeyCount() == 0)
            let (writer, writerKey) = try await store.keys.createKey(tenant: "acme", scope: .readWrite)
            let (reader, readerKey) = try await store.keys.createKey(tenant: "globex", scope: .readOnly)
            #expect(try await store.keys.activeKeyCount() == 2)
            #expect(try await store.keys.verifyKey(hash: APIKey.hash(writerKey)) == writer)
            #expect(try await store.keys.verifyKey(hash: APIKey.hash(readerKey)) == reader)
            #expect(try await store.keys.verifyKey(hash: APIKey.hash(APIKey.generate())) == nil)
            let listed = try await store.keys.keys()
            #expect(listed.map(\.id) == [writer.id, reader.id])
            #expect(listed.allSatisfy { $0.lastUsedAt != nil && $0.revokedAt == nil })
            if let sqlite = store as? SQLiteStore {
                let stored = try await sqlite.pool.read { db in try String.fetchAll(db, sql: "SELECT key_hash FROM api_keys") }
                #expect(!stored.contains(writerKey) && stored.contains(APIKey.hash(writerKey)), "only the hash is stored")
            }

            #expect(try await store.keys.revokeKey(id: writer.id))
            #expect(try await !store.keys.revokeKey(id: writer.id), "already revoked")
            #expect(try await store.keys.verifyKey(hash: APIKey.hash(writerKey)) == nil)
            #expect(try await store.keys.activeKeyCount() == 1)
            _ = try await store.products.apply([.upsert(tenant: "initech", product: product("p", version: 1))])
            #expect(try await store.keys.tenants() == ["globex", "initech"])
        }
    }

    @Test("a newer version replaces, an older or equal one is ignored", arguments: StoreBackend.available)
    func versioning(backend: StoreBackend) async throws {
        try await backend.withStore { store, reopen async throws in
            #expect(try await store.products.apply([.upsert(tenant: "t", product: product("p", version: 1))]) == [.inserted])
            #expect(try await store.products.apply([.upsert(tenant: "t", product: product("p", version: 3, name: "Three"))]) == [.updated])
            #expect(try await store.products.apply([.upsert(tenant: "t", product: product("p", version: 2, name: "Two"))])
                == [.stale(storedVersion: 3, deleted: false)])
            #expect(try await store.products.apply([.upsert(tenant: "t", product: product("p", version: 3, name: "Again"))])
                == [.stale(storedVersion: 3, deleted: false)])
            #expect(try await store.products.product(tenant: "t", id: "p")?.name == "Three")
        }
    }

    @Test("two updates delivered out of order, even in one batch: the newer survives", arguments: StoreBackend.available)
    func outOfOrder(backend: StoreBackend) async throws {
        try await backend.withStore { store, reopen async throws in
            _ = try await store.products.apply([
                .upsert(tenant: "t", product: product("p", version: 5, name: "Five")),
                .upsert(tenant: "t", product: product("p", version: 4, name: "Four")),
            ])
            #expect(try await store.products.product(tenant: "t", id: "p")?.name == "Five")
        }
    }

    @Test("a tombstone stops older writes from resurrecting the product, even one never seen before", arguments: StoreBackend.available)
    func tombstones(backend: StoreBackend) async throws {
        try await backend.withStore { store, reopen async throws in
            let now = Timestamp.now()
            #expect(try await store.products.apply([.delete(tenant: "t", id: "ghost", version: 2, deletedAt: now)]) == [.inserted])
            #expect(try await store.products.apply([.upsert(tenant: "t", product: product("ghost", version: 1))])
                == [.stale(storedVersion: 2, deleted: true)])
            #expect(try await store.products.product(tenant: "t", id: "ghost") == nil)

            _ = try await store.products.apply([.upsert(tenant: "t", product: product("p", version: 1, name: "Lamp"))])
            guard case .deleted(let version, "Lamp") = try await store.products.delete(tenant: "t", id: "p", version: nil, deletedAt: now) else {
                Issue.record("not deleted")
                return
            }
            #expect(version > 1 && version & 1023 == 0, "the Database Service stamps its own versions with writer 0")
            #expect(try await store.products.delete(tenant: "t", id: "p", version: nil, deletedAt: now) == .notFound)
            _ = try await store.products.apply([.upsert(tenant: "t", product: product("p", version: 1))])
            #expect(try await store.products.product(tenant: "t", id: "p") == nil, "a replayed create does not bring it back")
            #expect(try await store.products.list(tenant: "t", query: ProductQuery(limit: 10)).products.isEmpty)
        }
    }

    @Test("tombstones go after the retention; a write recorded before the horizon cannot bring one back, a later one can", arguments: StoreBackend.available)
    func tombstonePurge(backend: StoreBackend) async throws {
        try await backend.withStore { store, reopen async throws in
            let before = Timestamp.nowMilliseconds() - 1_000
            _ = try await store.products.apply([.upsert(tenant: "t", product: product("gone", version: 1)), .upsert(tenant: "t", product: product("kept", version: 1))])
            _ = try await store.products.apply([.delete(tenant: "t", id: "batch", version: 7, deletedAt: Timestamp.now())])
            guard case .deleted = try await store.products.delete(tenant: "t", id: "gone", version: 5, deletedAt: Timestamp.now()) else {
                Issue.record("not deleted")
                return
            }
            #expect(try await store.products.purgeTombstones(deletedBefore: before) == 0, "tombstones within the retention stay")
            #expect(try await store.products.apply([.upsert(tenant: "t", product: product("gone", version: 2))], recordedAtMs: [before - 1])
                == [.stale(storedVersion: 5, deleted: true)])
            let horizon = Timestamp.nowMilliseconds() + 1
            #expect(try await store.products.purgeTombstones(deletedBefore: horizon) == 2, "both tombstones, by the route and by a batch")
            #expect(try await store.products.purgeTombstones(deletedBefore: horizon) == 0)

            // A replica's writes recorded before the deletes, replayed now: refused, not resurrections; the live
            // product is unaffected; a write with no time counts as recorded now.
            let replayed = try await store.products.apply(
                [.upsert(tenant: "t", product: product("gone", version: 2)), .delete(tenant: "t", id: "batch", version: 3, deletedAt: Timestamp.now()),
                 .upsert(tenant: "t", product: product("kept", version: 2))],
                recordedAtMs: [before, before, before])
            #expect(replayed == [.expired(horizonMs: horizon), .expired(horizonMs: horizon), .updated])
            #expect(try await store.products.product(tenant: "t", id: "gone") == nil)
            try await reopen { reopened async throws in
                #expect(try await reopened.products.apply([.upsert(tenant: "t", product: product("gone", version: 2))], recordedAtMs: [horizon - 1])
                    == [.expired(horizonMs: horizon)], "the horizon is stored")
                #expect(try await reopened.products.apply([.upsert(tenant: "t", product: product("gone", version: 2, name: "Back"))], recordedAtMs: [horizon])
                    == [.inserted], "a write recorded after the horizon is newer than any purged delete")
                #expect(try await reopened.products.product(tenant: "t", id: "gone")?.name == "Back")
                #expect(try await reopened.products.apply([.upsert(tenant: "t", product: product("new", version: 1))]) == [.inserted])
                #expect(try await reopened.products.list(tenant: "t", query: ProductQuery(limit: 10)).products.map(\.id) == ["gone", "kept", "new"])
            }
        }
    }

    @Test("a product's versions are listed newest first from the change log, and a restore brings one back as the next version", arguments: StoreBackend.available)
    func history(backend: StoreBackend) async throws {
        try await backend.withStore { store, reopen async throws in
            _ = try await store.products.apply([.upsert(tenant: "t", product: product("p", version: 1, name: "First"))])
            _ = try await store.products.apply([.upsert(tenant: "t", product: product("p", version: 2, name: "Second"))])
            guard case .deleted(let deletedVersion, _) = try await store.products.delete(tenant: "t", id: "p", version: nil, deletedAt: Timestamp.now()) else {
                Issue.record("not deleted")
                return
            }
            let page = try #require(try await store.products.versions(tenant: "t", id: "p", before: nil, limit: 2))
            #expect(page.versions.map(\.version) == [deletedVersion, 2] && page.hasMore)
            #expect(page.versions.map(\.eventType) == [.productDeleted, .productUpdated])
            #expect(page.versions[0].productJSON == nil && page.versions[1].productJSON?.contains(#""name":"Second""#) == true)
            let older = try #require(try await store.products.versions(tenant: "t", id: "p", before: 2, limit: 2))
            #expect(older.versions.map(\.version) == [1] && !older.hasMore)
            #expect(try await store.products.versions(tenant: "t", id: "nobody", before: nil, limit: 2) == nil)
            #expect(try await store.products.versions(tenant: "other", id: "p", before: nil, limit: 2) == nil, "per tenant")

            // After the delete: version 1 comes back as a new version, live, as a creation.
            guard case .restored(let restored, created: true) = try await store.products.restore(tenant: "t", id: "p", version: 1, restoredAt: Timestamp.now()) else {
                Issue.record("not restored")
                return
            }
            #expect(restored.name == "First" && restored.version > deletedVersion)
            #expect(try await store.products.product(tenant: "t", id: "p") == restored)
            // After an edit: version 2 comes back over the live product, as an update.
            _ = try await store.products.apply([.upsert(tenant: "t", product: product("p", version: restored.version + 1, name: "Edited"))])
            guard case .restored(let again, created: false) = try await store.products.restore(tenant: "t", id: "p", version: 2, restoredAt: Timestamp.now()) else {
                Issue.record("not restored over the edit")
                return
            }
            #expect(again.name == "Second" && again.version > restored.version + 1)
            #expect(try await store.products.product(tenant: "t", id: "p")?.name == "Second")
            let newest = try #require(try await store.products.versions(tenant: "t", id: "p", before: nil, limit: 10))
            #expect(newest.versions.map(\.eventType) == [.productUpdated, .productUpdated, .productCreated, .productDeleted, .productUpdated, .productCreated])

            #expect(try await store.products.restore(tenant: "t", id: "p", version: deletedVersion, restoredAt: Timestamp.now()) == .versionIsDeletion)
            #expect(try await store.products.restore(tenant: "t", id: "p", version: 999, restoredAt: Timestamp.now()) == .versionNotFound)
            #expect(try await store.products.restore(tenant: "t", id: "nobody", version: 1, restoredAt: Timestamp.now()) == .productNotFound)
            #expect(try await store.products.restore(tenant: "other", id: "p", version: 1, restoredAt: Timestamp.now()) == .productNotFound)
        }
    }

    @Test("conditional delete refuses a version that is not newer", arguments: StoreBackend.available)
    func conditionalDelete(backend: StoreBackend) async throws {
        try await backend.withStore { store, reopen async throws in
            _ = try await store.products.apply([.upsert(tenant: "t", product: product("p", version: 3))])
            #expect(try await store.products.delete(tenant: "t", id: "p", version: 3, deletedAt: Timestamp.now()) == .stale(storedVersion: 3))
            #expect(try await store.products.delete(tenant: "t", id: "p", version: 4, deletedAt: Timestamp.now()) == .deleted(version: 4, name: "p"))
        }
    }

    @Test("listing pages in id order with has_more, filters by type, and keeps tenants apart", arguments: StoreBackend.available)
    func listing(backend: StoreBackend) async throws {
        try await backend.withStore { store, reopen async throws in
            let ids = (0..<25).map { String(format: "prod_%03d", $0) }
            _ = try await store.products.apply(ids.shuffled().map { .upsert(tenant: "a", product: product($0, version: 1, type: $0.hasSuffix("0") ? "ten" : "other")) })
            _ = try await store.products.apply([.upsert(tenant: "b", product: product("prod_b", version: 1))])
            var seen: [String] = []
            var cursor: String?
            var pages = 0
            repeat {
                let page = try await store.products.list(tenant: "a", query: ProductQuery(limit: 10, cursor: cursor.map(ProductQuery.Cursor.startingAfter)))
                seen += page.products.map(\.id)
                cursor = page.hasMore ? page.products.last?.id : nil
                pages += 1
            } while cursor != nil
            #expect(seen == ids)
            #expect(pages == 3)
            #expect(try await store.products.list(tenant: "a", query: { var query = ProductQuery(limit: 10); query.type = "ten"; return query }()).products.map(\.id)
                == ["prod_000", "prod_010", "prod_020"])
            #expect(try await store.products.list(tenant: "b", query: ProductQuery(limit: 10)).products.map(\.id) == ["prod_b"])
            #expect(try await store.products.product(tenant: "b", id: "prod_000") == nil)
        }
    }

    @Test("metadata round-trips, and reopening the store keeps everything (migrations run once)", arguments: StoreBackend.available)
    func reopen(backend: StoreBackend) async throws {
        try await backend.withStore { store, reopen async throws in
            var stored = product("p", version: 1)
            stored.metadata = ["emoji": "🧪", "quote": "\"x\""]
            stored.description = "Two lines,\n\"quoted\" 🧪"
            stored.images = ["https://cdn.example/a.png", "http://img.example:8080/b?c=d#e"]
            stored.active = false
            _ = try await store.products.apply([.upsert(tenant: "t", product: stored)])
            let expected = stored
            try await reopen { reopened async throws in
                #expect(try await reopened.products.product(tenant: "t", id: "p") == expected)
                #expect(try await reopened.schemaVersion() == StoreSchema.writerBacklogs)
                try await reopened.ping()
            }
        }
    }

    @Test("filters and both cursors select the same products on every backend", arguments: StoreBackend.available)
    func filters(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            var products: [Product] = []
            for index in 0..<40 {
                let created = Timestamp.format(epochMilliseconds: 1_767_225_600_000 + Int64(index) * 60_000)
                products.append(Product(
                    id: String(format: "prod_%03d", index), name: index % 4 == 0 ? "Grüne JACKE \(index)" : "Hut \(index)",
                    type: index % 3 == 0 ? "digital" : "physical", description: index % 5 == 0 ? nil : "Über \(index)\n\"x\"",
                    images: index % 2 == 0 ? [] : ["https://cdn.example/\(index).png"],
                    tags: index % 3 == 0 ? ["sale"] : index % 4 == 1 ? ["new", "Sommer é"] : [], active: index % 7 != 0,
                    metadata: index % 2 == 0 ? [:] : ["größe": "L \"x\"", "a": "\(index)"],
                    createdAt: created, updatedAt: created, version: 1))
            }
            _ = try await store.products.apply(products.shuffled().map { .upsert(tenant: "t", product: $0) })
            _ = try await store.products.apply([.delete(tenant: "t", id: "prod_004", version: 2, deletedAt: Timestamp.now())])
            let live = products.filter { $0.id != "prod_004" }
            var queries: [ProductQuery] = []
            for raw in [
                "q=grüne%20jacke", "q=GRUNE", "q=JACKE&type=digital", "ids=prod_001,prod_004,prod_017,prod_999", "created[gte]=2026-01-01T00:10:00Z",
                "created[gt]=1767226200&created[lt]=2026-01-01T00:20:00.000Z", "created[lte]=2026-01-01T01:15:00%2B01:00",
                "type=physical&starting_after=prod_020", "q=hut&ending_before=prod_030&limit=5", "ending_before=prod_002",
                "active=false", "active=true&type=digital&limit=4", "active=false&ending_before=prod_030",
                "tag=sale", "tag=Sommer%20%C3%A9,sale&active=true", "tag=new&ending_before=prod_030&limit=3", "tag=none",
            ] { queries.append(try ProductQuery.parse(query: raw)) }
            #expect(queries.filter { !$0.anyOf.isEmpty }.count == 4)
            for query in queries {
                var expected = live.filter { query.matches($0, createdAt: Timestamp.epochMilliseconds($0.createdAt)) }
                if query.anyOf.first?.values == ["sale"] { #expect(expected.count == 14, "the tag filter keeps products") }
                switch query.cursor {
                case .startingAfter(let id): expected = Array(expected.filter { $0.id > id }.prefix(query.limit))
                case .endingBefore(let id): expected = Array(expected.filter { $0.id < id }.suffix(query.limit))
                case nil: expected = Array(expected.prefix(query.limit))
                }
                let page = try await store.products.list(tenant: "t", query: query)
                #expect(page.products.map(\.id) == expected.map(\.id), "\(query)")
                // The page as JSON, written straight from the rows where the store does so, says the same.
                let json = try await store.products.listJSON(tenant: "t", query: query)
                #expect(try ProductPage(json: json) == page, "\(query)")
                #expect(String(buffer: json) == String(buffer: page.json), "\(query)")
            }
        }
    }

    @Test("a page of large products ends early, past 16 MiB of JSON, with more to follow; so does a page of changes", arguments: StoreBackend.available)
    func pageBytes(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            // 120 products of 40,000 four-byte characters: 19 MB of JSON.
            let description = String(repeating: "🧪", count: ProductRules.maxDescriptionLength)
            let products = (0..<120).map { index in
                var large = product(String(format: "big_%03d", index), version: 1)
                large.description = description
                return large
            }
            _ = try await store.products.apply(products.map { .upsert(tenant: "t", product: $0) })
            for raw in ["limit=1000", "limit=1000&ending_before=big_999"] {
                let query = try ProductQuery.parse(query: raw)
                let json = try await store.products.listJSON(tenant: "t", query: query)
                let page = try ProductPage(json: json)
                #expect(json.readableBytes < ServiceContract.maxPageBytes + 200_000, "\(raw)")
                #expect(page.hasMore && page.products.count < 120 && page.products.count > 90, "\(raw)")
                let expected = raw.contains("ending_before") ? products.suffix(page.products.count) : products.prefix(page.products.count)
                #expect(page.products == Array(expected), "\(raw)")
            }
            guard case .page(let changes) = try await store.changes.changes(after: .start, limit: 1000) else { throw CancellationError() }
            let bounded = changes.bounded()
            #expect(bounded.changes.count < 120 && bounded.changes.count > 90)
            #expect(bounded.next == bounded.changes.last?.cursor && bounded.next < changes.next)
            #expect(bounded.json.readableBytes < ServiceContract.maxPageBytes + 200_000)
        }
    }

    @Test("q is case- and accent-insensitive on every backend", arguments: StoreBackend.available)
    func accentInsensitiveSearch(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            let now = Timestamp.now()
            _ = try await store.products.apply([
                .upsert(tenant: "t", product: Product(
                    id: "prod_1", name: "Crème Brûlée", type: "food", metadata: [:], createdAt: now, updatedAt: now, version: 1)),
                .upsert(tenant: "t", product: Product(
                    id: "prod_2", name: "Plain cream", type: "food", metadata: [:], createdAt: now, updatedAt: now, version: 1)),
            ])
            let search = try ProductQuery.parse(query: "q=creme%20BRULEE")
            #expect(try await store.products.list(tenant: "t", query: search).products.map(\.id) == ["prod_1"])
            #expect(try await store.products.list(tenant: "t", query: try ProductQuery.parse(query: "q=cream")).products.map(\.id) == ["prod_2"])
        }
    }

    @Test("concurrent batches for the same products end in the newest version of each", arguments: StoreBackend.available)
    func concurrentBatches(backend: StoreBackend) async throws {
        try await backend.withStore { store, reopen async throws in
            try await reopen { second async throws in
                // Two stores (for PostgreSQL: two pools, as two processes have) apply interleaved versions at once.
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (writer, parity) in [(store, 0), (second, 1)] {
                        group.addTask {
                            for version in stride(from: Int64(1 + parity), through: 40, by: 2) {
                                let batch = (0..<10).map { WriteOperation.upsert(tenant: "t", product: product("p\($0)", version: version, name: "v\(version)")) }
                                _ = try await writer.products.apply(batch.shuffled())
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                for index in 0..<10 {
                    let stored = try await store.products.product(tenant: "t", id: "p\(index)")
                    #expect(stored?.version == 40 && stored?.name == "v40", "p\(index)")
                }
            }
        }
    }
}
