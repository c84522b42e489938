import Foundation
import Logging
import NIOCore
import PostgresNIO
import ServiceLifecycle
import Shared

/// Every store on PostgreSQL through PostgresNIO's connection pool, one file a store.
///
/// Several Database Service processes may share one database: every versioned write is one
/// `INSERT ... ON CONFLICT DO UPDATE ... WHERE stored version < new version`, which PostgreSQL applies
/// atomically per row, so no update is lost between processes; batches run in one transaction.
final class PostgresStore: Sendable {
    let pool: PostgresPool
    let logger: Logger
    var maximumConnections: Int { pool.maximumConnections }
    let changeSignal = ChangeSignal()
    var backend: String { "postgresql" }

    /// Connects to `url`, a libpq-style URL of one or more hosts (`PostgresTarget`); `password`, when given, wins over
    /// the URL's. The pool runs as a service: call `run(_:)` around the work that uses it.
    init(url: String, password: String? = nil, logger: Logger, maximumConnections: Int = 20) throws {
        self.logger = logger
        pool = PostgresPool(target: try PostgresTarget(url, password: password), maximumConnections: maximumConnections, logger: logger)
    }

    /// One direct connection attempt to a single server, or the first choice among several: the pool retries a
    /// refused connection forever, a start should not.
    func checkConnection() async throws {
        if pool.target.isSingleServer {
            _ = try await pool.probe(pool.target.hosts[0])
        } else {
            try await pool.firstChoice()
        }
    }

    /// Runs `body` with the pool running, for commands that do not start the server.
    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await self.pool.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body()
        }
    }

    // MARK: Migrations

    /// Named migrations, applied once, in order, under an advisory lock (processes may start together); frozen
    /// once merged: a change to the schema is a new migration at the end.
    static let migrations: [(name: String, sql: [String])] = [
        (StoreSchema.first, [
            """
            CREATE TABLE products (
                tenant TEXT NOT NULL,
                id TEXT COLLATE "C" NOT NULL,
                name TEXT NOT NULL,
                name_folded TEXT NOT NULL,
                type TEXT NOT NULL,
                metadata TEXT NOT NULL,
                created_at TEXT NOT NULL,
                created_ms BIGINT,
                updated_at TEXT NOT NULL,
                version BIGINT NOT NULL,
                deleted BOOLEAN NOT NULL DEFAULT FALSE,
                deleted_ms BIGINT,
                description TEXT,
                images TEXT NOT NULL DEFAULT '[]',
                active BOOLEAN NOT NULL DEFAULT TRUE,
                PRIMARY KEY (tenant, id)
            )
            """,
            APIKeySchema.createTable,
            // `transaction_id` is the writing transaction's id; see `changes(after:limit:)` for why it is there.
            """
            CREATE TABLE product_changes (
                position BIGSERIAL PRIMARY KEY,
                transaction_id BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
                tenant TEXT NOT NULL,
                product_id TEXT NOT NULL,
                version BIGINT NOT NULL,
                op TEXT NOT NULL,
                changed_at TEXT NOT NULL,
                recorded_ms BIGINT NOT NULL,
                product TEXT,
                event_type TEXT NOT NULL
            )
            """,
            "CREATE INDEX product_changes_order ON product_changes (transaction_id, position)",
            """
            CREATE TABLE change_log_state (
                id INT PRIMARY KEY CHECK (id = 1),
                purged_transaction BIGINT NOT NULL,
                purged_position BIGINT NOT NULL
            )
            """,
            "INSERT INTO change_log_state (id, purged_transaction, purged_position) VALUES (1, 0, 0)",
            WriterNodeSchema.createTable,
            AnswerSchema.createTable, AnswerSchema.createIndex,
        ] + WebhookSchema.statements(serial: "BIGSERIAL PRIMARY KEY") + [
            "CREATE INDEX product_changes_tenant ON product_changes (tenant, transaction_id, position)",
            TombstoneSchema.createIndex, TombstoneSchema.createTable, TombstoneSchema.insertRow,
            HistorySchema.createIndex,
        ] + ImportSchema.statements),
        // The product as one JSON document (written as the Products Service writes it: compact, `id` first); columns
        // only for what SQL filters on. Tombstones have no body.
        (StoreSchema.productBody, [
            "ALTER TABLE products ADD COLUMN body TEXT",
            """
            UPDATE products SET body = '{"id":' || to_json(id)::text || ',"name":' || to_json(name)::text
                || ',"type":' || to_json(type)::text || ',"description":' || COALESCE(to_json(description)::text, 'null')
                || ',"images":' || images || ',"active":' || CASE WHEN active THEN 'true' ELSE 'false' END
                || ',"metadata":' || metadata || ',"created_at":' || to_json(created_at)::text
                || ',"updated_at":' || to_json(updated_at)::text || ',"version":' || version::text || '}'
            WHERE NOT deleted
            """,
            "ALTER TABLE products DROP COLUMN metadata, DROP COLUMN description, DROP COLUMN images, DROP COLUMN updated_at",
            "ALTER TABLE products ALTER COLUMN type SET DEFAULT ''",
        ]),
        // Handles compare bytewise (C), so that a handle and its `-N` suffixes are one range of the index.
        (StoreSchema.catalogModel, [
            "ALTER TABLE products ADD COLUMN handle TEXT COLLATE \"C\" NOT NULL DEFAULT ''",
            "CREATE UNIQUE INDEX products_handle ON products (tenant, handle) WHERE NOT deleted AND handle <> ''",
            SKUSchema.createTable, SKUSchema.createIndex,
            // Ids and handles compare bytewise here too: pages in id order, handles' `-N` ranges.
            CategorySchema.createTable.replacingOccurrences(of: "id TEXT NOT NULL,\n    name", with: "id TEXT COLLATE \"C\" NOT NULL,\n    name")
                .replacingOccurrences(of: "handle TEXT NOT NULL", with: "handle TEXT COLLATE \"C\" NOT NULL"),
            CategorySchema.createIndex, CategorySchema.createLinks, CategorySchema.createLinksIndex,
        ]),
        (StoreSchema.writerBacklogs, [WriterBacklogSchema.createTable]),
    ]

    /// Applies the migrations not applied yet, in order; up to and including `last` when given (tests stop there).
    func migrate(upTo last: String? = nil) async throws {
        try await transaction(logger: logger) { [logger] connection in
            try await connection.query("SELECT pg_advisory_xact_lock(7206110)", logger: logger)
            try await connection.query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                logger: logger)
            var applied = Set<String>()
            for try await name in try await connection.query("SELECT name FROM schema_migrations", logger: logger).decode(String.self) {
                applied.insert(name)
            }
            for migration in Self.migrations where !applied.contains(migration.name) {
                for statement in migration.sql { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger) }
                try await connection.query("INSERT INTO schema_migrations (name) VALUES (\(migration.name))", logger: logger)
                logger.notice("applied migration", metadata: ["migration": "\(migration.name)"])
                if migration.name == last { break }
            }
        }
    }

    func schemaVersion() async throws -> String? {
        let rows = try await query("SELECT name FROM schema_migrations ORDER BY substring(name FROM '^v([0-9]+)')::int DESC, name DESC LIMIT 1", logger: logger)
        for try await name in rows.decode(String.self) { return name }
        return nil
    }

    var poolDescription: String { "up to \(maximumConnections) connections" }

    /// A statement on the pool and all its rows, timed as the store method that sends it (`StoreMetrics`).
    @discardableResult
    func query(_ query: PostgresQuery, logger: Logger, _ function: String = #function) async throws -> FetchedRows {
        try await StoreMetrics.timed(function, backend: backend) {
            do {
                return try await pool.query(query, logger: logger)
            } catch where PostgresPool.isPoolRefusal(error) {
                throw PostgresUnavailable(reason: "no connection to the server: \(error)")
            } catch {
                pool.notice(error)
                throw error
            }
        }
    }

    /// A transaction on one connection of the pool, timed as the store method that runs it (`StoreMetrics`).
    func transaction<T: Sendable>(
        logger: Logger, _ function: String = #function, _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        let started = ContinuousClock.now
        defer { StoreMetrics.record(function, backend: backend, since: started) }
        do {
            return try await pool.withTransaction(logger: logger, body)
        } catch {
            pool.notice(error)
            throw error
        }
    }

    /// Whether a server is chosen and answers; does not wait while one is being chosen.
    func ping() async throws {
        guard pool.isServing else { throw PostgresUnavailable(reason: pool.lastError ?? "no server chosen yet") }
        try await query("SELECT 1", logger: logger)
    }


}

enum PostgresStoreError: Error, CustomStringConvertible {
    case vanished(String)

    var description: String {
        switch self {
        case .vanished(let id): "product \(id) was neither written nor found"
        }
    }
}

extension PostgresStore: DataStore {
    var products: any ProductStore { PostgresProductStore(database: self) }
    var changes: any ChangeStore { PostgresChangeStore(database: self) }
    var keys: any KeyStore { PostgresKeyStore(database: self) }
    var webhooks: any WebhookStore { PostgresWebhookStore(database: self) }
    var imports: any ImportStore { PostgresImportStore(database: self) }
    var categories: any CategoryStore { PostgresCategoryStore(database: self) }
}

/// A store of one feature, on the process's PostgreSQL pool.
protocol PostgresFeatureStore: Sendable {
    var database: PostgresStore { get }
}

extension PostgresFeatureStore {
    var logger: Logger { database.logger }
    var changeSignal: ChangeSignal { database.changeSignal }

    /// A statement on the pool and all its rows, timed as the store method that sends it.
    @discardableResult
    func query(_ query: PostgresQuery, logger: Logger, _ function: String = #function) async throws -> FetchedRows {
        try await database.query(query, logger: logger, function)
    }

    /// A transaction on one connection of the pool, timed as the store method that runs it.
    func transaction<T: Sendable>(
        logger: Logger, _ function: String = #function, _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        try await database.transaction(logger: logger, function, body)
    }

    /// Records an applied change in the transaction that applied it; `transaction_id` defaults to that
    /// transaction's id.
    func record(_ change: LoggedChange, on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            INSERT INTO product_changes (tenant, product_id, version, op, changed_at, recorded_ms, product, event_type)
            VALUES (\(change.tenant), \(change.id), \(change.version), \(change.op.rawValue), \(change.changedAt),
                    \(Timestamp.nowMilliseconds()), \(change.productJSON), \(change.eventType.rawValue))
            """, logger: logger)
    }
    /// Logs changes in their order, with one statement.
    func record(_ changes: [LoggedChange], on connection: PostgresConnection) async throws {
        guard changes.count > 1 else {
            if let change = changes.first { try await record(change, on: connection) }
            return
        }
        // A product is never empty JSON, so an empty string stands for a delete's NULL (arrays cannot hold NULL).
        try await connection.query(
            """
            INSERT INTO product_changes (tenant, product_id, version, op, changed_at, recorded_ms, product, event_type)
            SELECT tenant, product_id, version, op, changed_at, \(Timestamp.nowMilliseconds()), NULLIF(product, ''), event_type
            FROM unnest(\(changes.map(\.tenant))::text[], \(changes.map(\.id))::text[], \(changes.map(\.version))::bigint[],
                        \(changes.map(\.op.rawValue))::text[], \(changes.map(\.changedAt))::text[], \(changes.map { $0.productJSON ?? "" })::text[],
                        \(changes.map(\.eventType.rawValue))::text[])
                WITH ORDINALITY AS change (tenant, product_id, version, op, changed_at, product, event_type, ordinal)
            ORDER BY ordinal
            """, logger: logger)
    }
    /// Queues one notification, sent when the transaction commits (PostgreSQL folds repeats within a transaction).
    func notifyChanges(on connection: PostgresConnection) async throws {
        try await connection.query("SELECT pg_notify(\(Self.changesChannel), '')", logger: logger)
    }
    static var changeColumns: String { "transaction_id, position, tenant, product_id, version, op, changed_at, recorded_ms, product, event_type" }
    /// Changes read with `changeColumns`.
    static func changes(_ rows: some AsyncSequence<PostgresRow, any Error>) async throws -> [LoggedChange] {
        var changes: [LoggedChange] = []
        for try await (transaction, position, tenant, id, version, op, changedAt, recordedMs, productText, eventType) in rows.decode(
            (Int64, Int64, String, String, Int64, String, String, Int64, String?, String?).self)
        {
            changes.append(LoggedChange(
                tenant: tenant, id: id, version: version, op: Change.Operation(rawValue: op) ?? .delete, changedAt: changedAt,
                productJSON: productText, eventType: eventType.flatMap(EventType.init(rawValue:)),
                cursor: ChangeCursor(transaction: transaction, position: position), recordedMs: recordedMs))
        }
        return changes
    }
    static var purgeBatch: Int { 5000 }
    /// Runs a transaction again when PostgreSQL aborts it for a deadlock or a serialization failure.
    func retryingConflicts<T: Sendable>(_ transaction: () async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            do {
                return try await transaction()
            } catch let error as PSQLError {
                let state = error.serverInfo?[.sqlState]
                guard state == "40P01" || state == "40001", attempt < 5 else { throw error }
                attempt += 1
                logger.debug("transaction conflict; retrying", metadata: ["sqlstate": "\(state ?? "")", "attempt": "\(attempt)"])
                try await Task.sleep(for: .milliseconds(Int.random(in: 1...10) * attempt))
            }
        }
    }
    /// Stands for "no creation time in milliseconds" in the arrays a batch binds (they cannot hold NULL).
    static var noMilliseconds: Int64 { Int64.min }
    /// The advisory lock that orders tombstone purges with writes checked against the horizon.
    static var tombstoneLock: Int64 { 7_206_114 }
    static func binds(_ values: [String]) -> PostgresBindings {
        var binds = PostgresBindings()
        for value in values { binds.append(value) }
        return binds
    }
    /// The products of rows whose one column is a product's JSON.
    static func products(_ rows: some AsyncSequence<PostgresRow, any Error>) async throws -> [Product] {
        var products: [Product] = []
        for try await body in rows.decode(String.self) { products.append(try Product(json: body)) }
        return products
    }

    /// The channel every Database Service process listens on. A notification is a hint that changes committed.
    static var changesChannel: String { "product_changes" }

    static var horizon: String { "pg_snapshot_xmin(pg_current_snapshot())::text::bigint" }

    /// Up to `limit` changes after `cursor`, in log order, only below the horizon: none can appear among them later.
    static func settledChanges(after cursor: ChangeCursor, limit: Int) -> PostgresQuery {
        var binds = PostgresBindings()
        binds.append(cursor.transaction)
        binds.append(cursor.position)
        binds.append(Int64(limit))
        return PostgresQuery(
            unsafeSQL: """
                SELECT \(changeColumns) FROM product_changes
                WHERE (transaction_id, position) > ($1, $2) AND transaction_id < \(horizon)
                ORDER BY transaction_id, position LIMIT $3
                """,
            binds: binds)
    }
}
