import Foundation
import GRDB
import GRDBSQLite
import NIOCore
import Shared


/// Every store on SQLite through GRDB, one file a store: one `DatabasePool` (WAL) for the life of the process.
final class SQLiteStore: Sendable {
    let pool: DatabasePool
    let changeSignal = ChangeSignal()
    var backend: String { "sqlite" }

    /// Opens (creating if needed) the database file and runs the migrations.
    init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            // WAL keeps each commit durable with one fsync of the log; NORMAL is the documented safe pairing.
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            db.add(function: Self.epochMilliseconds)
            db.add(function: Self.fold)
        }
        pool = try DatabasePool(path: path, configuration: configuration)
        try Self.migrator.migrate(pool)
    }

    /// Migrations are named and frozen once merged: a change to the schema is a new migration at the end.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration(StoreSchema.first) { db in
            // One writer commits at a time, so the change log's AUTOINCREMENT positions are in commit order and
            // never reused.
            let statements = [
                """
                CREATE TABLE products (
                    tenant TEXT NOT NULL,
                    id TEXT NOT NULL,
                    name TEXT NOT NULL,
                    type TEXT NOT NULL,
                    metadata TEXT NOT NULL,
                    created_at TEXT NOT NULL,
                    updated_at TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    deleted INTEGER NOT NULL DEFAULT 0,
                    deleted_ms INTEGER,
                    description TEXT,
                    images TEXT NOT NULL DEFAULT '[]',
                    active INTEGER NOT NULL DEFAULT 1,
                    PRIMARY KEY (tenant, id)
                ) WITHOUT ROWID
                """,
                APIKeySchema.createTable,
                """
                CREATE TABLE product_changes (
                    position INTEGER PRIMARY KEY AUTOINCREMENT,
                    tenant TEXT NOT NULL,
                    product_id TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    op TEXT NOT NULL,
                    changed_at TEXT NOT NULL,
                    recorded_ms INTEGER NOT NULL,
                    product TEXT,
                    event_type TEXT NOT NULL
                )
                """,
                "CREATE TABLE change_log_state (id INTEGER PRIMARY KEY CHECK (id = 1), purged_position INTEGER NOT NULL)",
                "INSERT INTO change_log_state (id, purged_position) VALUES (1, 0)",
                WriterNodeSchema.createTable,
                AnswerSchema.createTable, AnswerSchema.createIndex,
            ] + WebhookSchema.statements(serial: "INTEGER PRIMARY KEY AUTOINCREMENT") + [
                "CREATE INDEX product_changes_tenant ON product_changes (tenant, position)",
                TombstoneSchema.createIndex, TombstoneSchema.createTable, TombstoneSchema.insertRow,
                HistorySchema.createIndex,
            ] + ImportSchema.statements
            for statement in statements { try db.execute(sql: statement) }
        }
        migrator.registerMigration(StoreSchema.productBody) { db in
            // The product as one JSON document; columns only for what SQL filters on. Tombstones have no body.
            let statements = [
                """
                CREATE TABLE products_v2 (
                    tenant TEXT NOT NULL,
                    id TEXT NOT NULL,
                    name TEXT NOT NULL,
                    type TEXT NOT NULL DEFAULT '',
                    active INTEGER NOT NULL DEFAULT 1,
                    created_at TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    deleted INTEGER NOT NULL DEFAULT 0,
                    deleted_ms INTEGER,
                    body TEXT,
                    PRIMARY KEY (tenant, id)
                ) WITHOUT ROWID
                """,
                """
                INSERT INTO products_v2 (tenant, id, name, type, active, created_at, version, deleted, deleted_ms, body)
                SELECT tenant, id, name, type, active, created_at, version, deleted, deleted_ms,
                    CASE WHEN deleted THEN NULL ELSE json_object(
                        'id', id, 'name', name, 'type', type, 'description', description, 'images', json(images),
                        'active', json(CASE WHEN active THEN 'true' ELSE 'false' END), 'metadata', json(metadata),
                        'created_at', created_at, 'updated_at', updated_at, 'version', version) END
                FROM products
                """,
                "DROP TABLE products",
                "ALTER TABLE products_v2 RENAME TO products",
                "CREATE INDEX products_tombstones ON products (deleted_ms) WHERE deleted",
            ]
            for statement in statements { try db.execute(sql: statement) }
        }
        migrator.registerMigration(StoreSchema.catalogModel) { db in
            let statements = [
                "ALTER TABLE products ADD COLUMN handle TEXT NOT NULL DEFAULT ''",
                "CREATE UNIQUE INDEX products_handle ON products (tenant, handle) WHERE deleted = 0 AND handle <> ''",
                SKUSchema.createTable, SKUSchema.createIndex,
                CategorySchema.createTable, CategorySchema.createIndex, CategorySchema.createLinks, CategorySchema.createLinksIndex,
            ]
            for statement in statements { try db.execute(sql: statement) }
        }
        migrator.registerMigration(StoreSchema.writerBacklogs) { db in try db.execute(sql: WriterBacklogSchema.createTable) }
        return migrator
    }

    func ping() async throws {
        _ = try await read { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }

    func schemaVersion() async throws -> String? {
        try await read { db in try Self.migrator.appliedMigrations(db).last }
    }

    /// A read on the pool, timed as the store method that makes it (`StoreMetrics`).
    func read<T: Sendable>(_ function: String = #function, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await StoreMetrics.timed(function, backend: backend) { try await pool.read(body) }
    }

    /// A write transaction on the pool, timed as the store method that makes it (`StoreMetrics`).
    func write<T: Sendable>(_ function: String = #function, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await StoreMetrics.timed(function, backend: backend) { try await pool.write(body) }
    }

    var poolDescription: String { "1 writer, up to \(pool.configuration.maximumReaderCount) readers (WAL)" }

    // MARK: SQL functions

    /// `products_epoch_ms(created_at)`: milliseconds since the epoch, as the `created[...]` filters compare them.
    static let epochMilliseconds = DatabaseFunction("products_epoch_ms", argumentCount: 1, pure: true) { values in
        String.fromDatabaseValue(values[0]).flatMap(Timestamp.epochMilliseconds)
    }

    /// `products_fold(name)`: the case folding `q` matches under, the same as the Products Service's (SQLite's
    /// `lower` folds ASCII only).
    static let fold = DatabaseFunction("products_fold", argumentCount: 1, pure: true) { values in
        String.fromDatabaseValue(values[0]).map(ProductQuery.fold)
    }
}

extension SQLiteStore: DataStore {
    var products: any ProductStore { SQLiteProductStore(database: self) }
    var changes: any ChangeStore { SQLiteChangeStore(database: self) }
    var keys: any KeyStore { SQLiteKeyStore(database: self) }
    var webhooks: any WebhookStore { SQLiteWebhookStore(database: self) }
    var imports: any ImportStore { SQLiteImportStore(database: self) }
    var categories: any CategoryStore { SQLiteCategoryStore(database: self) }
}

extension SQLiteStore {
    // MARK: Rows

    /// A product's row: its JSON, and the columns `Product.columnFields` names. A tombstone has no JSON and one
    /// column, its creation time; it keeps the name it had (a delete reports it).
    struct Row: Sendable {
        var tenant, id: String
        var version: Int64
        var deleted: Bool
        var columns: [ProductField.ColumnValue]
        var body: String?
    }

    /// The statements a write runs, taken from the connection's cache once per transaction.
    final class Writes {
        let state, live, tombstone, log: BoundStatement

        /// `name, type, …`: the products' columns a live row sets.
        static let columnList = Product.columnFields.map(\.name).joined(separator: ", ")

        init(_ db: Database) throws {
            state = try BoundStatement(db, sql: "SELECT version, deleted, name FROM products WHERE tenant = ? AND id = ?")
            let columns = Product.columnFields.map(\.name)
            live = try BoundStatement(
                db,
                sql: """
                    INSERT INTO products (tenant, id, \(Self.columnList), body, version, deleted)
                    VALUES (?, ?, \(columns.map { _ in "?" }.joined(separator: ", ")), ?, ?, 0)
                    ON CONFLICT (tenant, id) DO UPDATE SET
                        \(columns.map { "\($0) = excluded.\($0)" }.joined(separator: ", ")),
                        body = excluded.body, version = excluded.version, deleted = 0, deleted_ms = NULL
                    """)
            // Keep the last name so a delete can report it; the rest of a tombstone is never read.
            tombstone = try BoundStatement(
                db,
                sql: """
                    INSERT INTO products (tenant, id, name, created_at, version, deleted, deleted_ms)
                    VALUES (?, ?, '', ?, ?, 1, ?)
                    ON CONFLICT (tenant, id) DO UPDATE SET
                        body = NULL, version = excluded.version, deleted = 1, deleted_ms = excluded.deleted_ms
                    """)
            log = try BoundStatement(
                db,
                sql: """
                    INSERT INTO product_changes (tenant, product_id, version, op, changed_at, recorded_ms, product, event_type)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """)
        }
    }
}

/// A store of one feature, on the process's one SQLite database.
protocol SQLiteFeatureStore: Sendable {
    var database: SQLiteStore { get }
}

extension SQLiteFeatureStore {
    typealias Row = SQLiteStore.Row
    typealias Writes = SQLiteStore.Writes

    var changeSignal: ChangeSignal { database.changeSignal }

    /// A read on the pool, timed as the store method that makes it.
    func read<T: Sendable>(_ function: String = #function, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await database.read(function, body)
    }

    /// A write transaction on the pool, timed as the store method that makes it.
    func write<T: Sendable>(_ function: String = #function, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await database.write(function, body)
    }

    /// The row of an operation; `json`, the product's JSON when the caller has it already.
    static func row(for operation: WriteOperation, json: String? = nil) -> Row {
        switch operation {
        case .upsert(let tenant, let product):
            return Row(
                tenant: tenant, id: product.id, version: product.version, deleted: false,
                columns: Product.columnFields.map { $0.columnValue(product) }, body: json ?? String(buffer: product.json))
        case .delete(let tenant, let id, let version, let deletedAt):
            return Row(tenant: tenant, id: id, version: version, deleted: true, columns: [.text(deletedAt)], body: nil)
        }
    }

    /// Stores a row only if its version is newer than the stored one; a tombstone keeps its original creation time
    /// and records when it was stored. A write recorded before `horizonMs`, for a product with no row, is refused.
    static func store(_ row: Row, with writes: Writes, recordedAtMs: Int64? = nil, horizonMs: Int64 = 0) throws -> ApplyOutcome {
        let existing = try state(tenant: row.tenant, id: row.id, with: writes)
        if let existing, existing.version >= row.version {
            return .stale(storedVersion: existing.version, deleted: existing.deleted)
        }
        if existing == nil, TombstoneSchema.isBefore(horizonMs, recordedAtMs: recordedAtMs) { return .expired(horizonMs: horizonMs) }
        let statement = row.deleted ? writes.tombstone : writes.live
        statement.bind(row.tenant)
        statement.bind(row.id)
        for value in row.columns { statement.bind(value) }
        if let body = row.body { statement.bind(body) }
        statement.bind(row.version)
        if row.deleted { statement.bind(Timestamp.nowMilliseconds()) }
        try statement.execute()
        return existing == nil ? .inserted : .updated
    }

    static func state(tenant: String, id: String, with writes: Writes) throws -> (version: Int64, deleted: Bool, name: String)? {
        writes.state.bind(tenant)
        writes.state.bind(id)
        return try writes.state.first { row in
            (sqlite3_column_int64(row, 0), sqlite3_column_int64(row, 1) != 0, BoundStatement.text(row, 2))
        }
    }

    /// A live row's product, read from its JSON.
    static func product(from row: GRDB.Row) throws -> Product {
        try Product(json: row["body"] as String)
    }
}
