import Foundation
import GRDB
import PostgresNIO
import Testing

@testable import DatabaseService
import Shared
import TestSupport

/// Migrations are frozen once merged: each one must carry what the schema before it held.
@Suite("Store migrations")
struct MigrationTests {
    /// A product as the first schema stored it, and a tombstone beside it.
    static let product = Product(
        id: "prod_1", name: "Crème \"brûlée\"\n🧪", type: "food", description: "Two lines,\n\"quoted\" \\ 🧪",
        images: ["https://cdn.example/a.png", "http://img.example:8080/b?c=d#e"], active: false,
        metadata: ["b": "\u{1}", "a": "x\"y"], createdAt: "2026-01-02T03:04:05.678Z", updatedAt: "2026-02-03T04:05:06Z", version: 3)

    /// The first schema's columns for `product`: its metadata and images as JSON text.
    static var firstSchemaRow: [String] {
        [String(buffer: { var b = ByteBuffer(); JSONWriter.writeObject(product.metadata, into: &b); return b }()),
         String(buffer: { var b = ByteBuffer(); JSONWriter.writeArray(product.images, into: &b); return b }())]
    }

    /// What every backend must show after migrating: the product as it was, the tombstone still a tombstone, and
    /// new writes working on the migrated table.
    static func check(_ store: any DataStore) async throws {
        #expect(try await store.products.product(tenant: "t", id: "prod_1") == product)
        #expect(try await store.products.product(tenant: "t", id: "prod_gone") == nil)
        #expect(try await store.products.list(tenant: "t", query: ProductQuery(limit: 10)).products == [product])
        let page = try await store.products.listJSON(tenant: "t", query: ProductQuery(limit: 10))
        #expect(try ProductPage(json: page).products == [product])
        #expect(try await store.products.apply([.upsert(tenant: "t", product: { var p = product; p.id = "prod_gone"; p.version = 2; return p }())])
            == [.stale(storedVersion: 5, deleted: true)], "the tombstone still holds back older writes")
        var renamed = product
        renamed.name = "Renamed"
        renamed.version = 4
        #expect(try await store.products.apply([.upsert(tenant: "t", product: renamed)]) == [.updated])
        // Stored before handles existed, it gets one made from its name with its next write.
        renamed.handle = "renamed"
        #expect(try await store.products.product(tenant: "t", id: "prod_1") == renamed)
        #expect(try await store.schemaVersion() == StoreSchema.writerBacklogs)
    }

    @Test("SQLite: products stored by the first schema read the same after the product-body migration")
    func sqlite() async throws {
        let directory = try temporaryDirectory("migration")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/products.sqlite"
        do {
            let pool = try DatabasePool(path: path)
            try SQLiteStore.migrator.migrate(pool, upTo: StoreSchema.first)
            let (metadata, images) = (Self.firstSchemaRow[0], Self.firstSchemaRow[1])
            let p = Self.product
            try await pool.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO products (tenant, id, name, type, metadata, created_at, updated_at, version, deleted, description, images, active)
                        VALUES ('t', ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, 0)
                        """,
                    arguments: [p.id, p.name, p.type, metadata, p.createdAt, p.updatedAt, p.version, p.description, images])
                try db.execute(
                    sql: """
                        INSERT INTO products (tenant, id, name, type, metadata, created_at, updated_at, version, deleted, deleted_ms)
                        VALUES ('t', 'prod_gone', 'Gone', '', '{}', ?, ?, 5, 1, 1)
                        """,
                    arguments: [p.createdAt, p.createdAt])
            }
            try pool.close()
        }
        try await Self.check(try SQLiteStore(path: path))
    }

    @Test("PostgreSQL: products stored by the first schema read the same after the product-body migration")
    func postgresql() async throws {
        guard TestPostgres.url != nil else { return }
        let url = try await TestPostgres.createDatabase()
        let store = try PostgresStore(url: url, logger: TestPostgres.logger, maximumConnections: 2)
        try await store.run {
            try await store.migrate(upTo: StoreSchema.first)
            let (metadata, images) = (Self.firstSchemaRow[0], Self.firstSchemaRow[1])
            let p = Self.product
            try await store.query(
                """
                INSERT INTO products (tenant, id, name, name_folded, type, metadata, created_at, created_ms, updated_at, version, deleted,
                                      description, images, active)
                VALUES ('t', \(p.id), \(p.name), \(ProductQuery.fold(p.name)), \(p.type), \(metadata), \(p.createdAt),
                        \(Timestamp.epochMilliseconds(p.createdAt)), \(p.updatedAt), \(p.version), FALSE, \(p.description), \(images), FALSE)
                """, logger: TestPostgres.logger)
            try await store.query(
                """
                INSERT INTO products (tenant, id, name, name_folded, type, metadata, created_at, updated_at, version, deleted, deleted_ms)
                VALUES ('t', 'prod_gone', 'Gone', 'gone', '', '{}', \(p.createdAt), \(p.createdAt), 5, TRUE, 1)
                """, logger: TestPostgres.logger)
            try await store.migrate()
            try await Self.check(store)
        }
        try await TestPostgres.dropDatabase(url)
    }
}
