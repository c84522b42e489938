import Foundation
import GRDB
import GRDBSQLite
import NIOCore
import Shared

/// `ProductStore` on SQLite through GRDB: one `DatabasePool` (WAL) for the life of the process.
final class SQLiteProductStore: ProductStore {
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
        return migrator
    }

    func apply(_ operations: [WriteOperation], recordedAtMs: [Int64?]) async throws -> [ApplyOutcome] {
        // One thread writes: everything but the writes themselves (the rows' and the log's JSON) is made before.
        let rows = operations.map(Self.row(for:))
        let changes = operations.map { LoggedChange($0, created: true) }
        let outcomes = try await pool.write { db in
            let horizonMs = recordedAtMs.isEmpty ? 0 : try Int64.fetchOne(db, sql: "SELECT horizon_ms FROM tombstone_horizon") ?? 0
            let writes = try Writes(db)
            return try operations.indices.map { index in
                let outcome = try Self.store(
                    rows[index], with: writes, recordedAtMs: recordedAtMs.isEmpty ? nil : recordedAtMs[index], horizonMs: horizonMs)
                if let change = changes[index].made(by: outcome) { try Self.record(change, with: writes) }
                return outcome
            }
        }
        if outcomes.contains(where: \.isApplied) { changeSignal.signal() }
        return outcomes
    }

    func write(_ write: CoordinatedWrite) async throws -> CoordinatedResult {
        let operation = write.operation
        let result = try await pool.write { db -> CoordinatedResult in
            if let answer = write.idempotency,
               let stored = try GRDB.Row.fetchOne(
                   db, sql: "SELECT * FROM idempotency_answers WHERE tenant = ? AND key = ?", arguments: [operation.tenant, answer.key])
            {
                guard stored["fingerprint"] == answer.fingerprint else { return CoordinatedResult(outcome: .keyReused) }
                return CoordinatedResult(
                    outcome: .replayed,
                    answer: StoredAnswer(
                        key: answer.key, fingerprint: answer.fingerprint, status: stored["status"], body: stored["body"],
                        etag: stored["etag"], createdAt: stored["created_ms"]))
            }
            if let expected = write.expectedVersion {
                let state = try Self.state(tenant: operation.tenant, id: operation.productID, with: Writes(db))
                guard let state, !state.deleted, state.version == expected else {
                    return CoordinatedResult(outcome: .preconditionFailed, storedVersion: state?.version ?? 0, deleted: state?.deleted ?? true)
                }
            }
            let writes = try Writes(db)
            let outcome = try Self.store(Self.row(for: operation), with: writes)
            if case .stale(let version, let deleted) = outcome {
                return CoordinatedResult(outcome: .stale, storedVersion: version, deleted: deleted)
            }
            if let change = LoggedChange(operation, outcome: outcome) { try Self.record(change, with: writes) }
            if let answer = write.idempotency {
                try db.execute(
                    sql: """
                        INSERT INTO idempotency_answers (tenant, key, fingerprint, status, body, etag, created_ms)
                        VALUES (?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [operation.tenant, answer.key, answer.fingerprint, answer.status, answer.body, answer.etag, answer.createdAt])
            }
            return CoordinatedResult(outcome: .applied)
        }
        if result.outcome == .applied { changeSignal.signal() }
        return result
    }

    func purgeAnswers(createdBefore cutoffMs: Int64) async throws -> Int {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM idempotency_answers WHERE created_ms < ?", arguments: [cutoffMs])
            return db.changesCount
        }
    }

    func purgeTombstones(deletedBefore cutoffMs: Int64) async throws -> Int {
        var purged = 0
        while true {
            let count = try await pool.write { db -> Int in
                // The horizon rises in the same transaction as the purge: no write applied after it, recorded before
                // it, can recreate a product whose tombstone goes.
                try db.execute(sql: "UPDATE tombstone_horizon SET horizon_ms = max(horizon_ms, ?) WHERE id = 1", arguments: [cutoffMs])
                try db.execute(
                    sql: """
                        DELETE FROM products WHERE (tenant, id) IN (
                            SELECT tenant, id FROM products WHERE deleted AND deleted_ms < ? LIMIT ?)
                        """,
                    arguments: [cutoffMs, Self.purgeBatch])
                return db.changesCount
            }
            purged += count
            if count < Self.purgeBatch { return purged }
        }
    }

    func versions(tenant: String, id: String, before: Int64?, limit: Int) async throws -> (versions: [LoggedChange], hasMore: Bool)? {
        try await pool.read { db in
            let rows = try GRDB.Row.fetchAll(
                db,
                sql: """
                    SELECT \(Self.changeColumns) FROM product_changes
                    WHERE tenant = ? AND product_id = ? AND version < ? ORDER BY version DESC LIMIT ?
                    """,
                arguments: [tenant, id, before ?? Int64.max, limit + 1])
            if rows.isEmpty, before == nil,
               try Bool.fetchOne(db, sql: "SELECT deleted FROM products WHERE tenant = ? AND id = ?", arguments: [tenant, id]) != false
            {
                return nil
            }
            return (rows.prefix(limit).map(Self.change(from:)), rows.count > limit)
        }
    }

    func restore(tenant: String, id: String, version: Int64, restoredAt: String) async throws -> RestoreOutcome {
        let outcome = try await pool.write { db -> RestoreOutcome in
            let writes = try Writes(db)
            let current = try Self.state(tenant: tenant, id: id, with: writes)
            let wanted = try GRDB.Row.fetchOne(
                db, sql: "SELECT \(Self.changeColumns) FROM product_changes WHERE tenant = ? AND product_id = ? AND version = ? LIMIT 1",
                arguments: [tenant, id, version]
            ).map(Self.change(from:))
            guard let wanted else {
                let logged = try Bool.fetchOne(
                    db, sql: "SELECT EXISTS (SELECT 1 FROM product_changes WHERE tenant = ? AND product_id = ?)", arguments: [tenant, id]) ?? false
                return logged || current?.deleted == false ? .versionNotFound : .productNotFound
            }
            let next = Versions.next(after: current?.version ?? 0, writer: 0)
            guard let product = try wanted.restoredProduct(version: next, restoredAt: restoredAt) else { return .versionIsDeletion }
            let operation = WriteOperation.upsert(tenant: tenant, product: product)
            _ = try Self.store(Self.row(for: operation), with: writes)
            let created = current?.deleted != false
            try Self.record(LoggedChange(operation, created: created), with: writes)
            return .restored(product, created: created)
        }
        if case .restored = outcome { changeSignal.signal() }
        return outcome
    }

    func delete(tenant: String, id: String, version: Int64?, deletedAt: String) async throws -> DeleteOutcome {
        let outcome = try await pool.write { db -> DeleteOutcome in
            let writes = try Writes(db)
            guard let stored = try Self.state(tenant: tenant, id: id, with: writes), !stored.deleted else {
                return .notFound
            }
            let newVersion = version ?? Versions.next(after: stored.version, writer: 0)
            guard newVersion > stored.version else { return .stale(storedVersion: stored.version) }
            let row = Self.Row(tenant: tenant, id: id, name: stored.name, type: "", metadata: "{}",
                               createdAt: deletedAt, updatedAt: deletedAt, version: newVersion, deleted: true)
            _ = try Self.store(row, with: writes)
            try Self.record(LoggedChange(.delete(tenant: tenant, id: id, version: newVersion, deletedAt: deletedAt), created: false), with: writes)
            return .deleted(version: newVersion, name: stored.name)
        }
        if case .deleted = outcome { changeSignal.signal() }
        return outcome
    }

    func product(tenant: String, id: String) async throws -> Product? {
        try await pool.read { db in
            try GRDB.Row.fetchOne(
                db, sql: "SELECT * FROM products WHERE tenant = ? AND id = ? AND deleted = 0", arguments: [tenant, id]
            ).map(Self.product(from:))
        }
    }

    func list(tenant: String, query: ProductQuery) async throws -> ProductPage {
        let (sql, arguments, descending) = Self.listSQL(tenant: tenant, query: query)
        return try await pool.read { db in
            var products = try GRDB.Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.product(from:))
            let hasMore = products.count > query.limit
            if hasMore { products.removeLast() }
            if descending { products.reverse() }
            return ProductPage(products: products, hasMore: hasMore)
        }
    }

    func listJSON(tenant: String, query: ProductQuery) async throws -> ByteBuffer {
        let (sql, arguments, descending) = Self.listSQL(tenant: tenant, query: query)
        return try await pool.read { db in
            // Each row is written as its product's JSON, metadata copied as stored (written by `JSONWriter`);
            // then the page is assembled in paging order.
            var products = ByteBuffer()
            products.reserveCapacity((query.limit + 1) * 288)
            var ranges: [Range<Int>] = []
            ranges.reserveCapacity(query.limit + 1)
            let rows = try GRDB.Row.fetchCursor(db.cachedStatement(sql: sql), arguments: arguments)
            var cut = false
            while let row = try rows.next() {
                // Past `maxPageBytes`, the page ends early with more to follow (the rows read are on the cursor's side).
                if products.readableBytes > ServiceContract.maxPageBytes {
                    cut = true
                    break
                }
                let start = products.writerIndex
                let metadata: String = row[Self.Column.metadata]
                let images: String = row[Self.Column.images]
                Product.writeJSON(
                    id: row[Self.Column.id], name: row[Self.Column.name], type: row[Self.Column.type],
                    description: row[Self.Column.description], active: row[Self.Column.active], createdAt: row[Self.Column.createdAt],
                    updatedAt: row[Self.Column.updatedAt], version: row[Self.Column.version], into: &products,
                    images: { buffer in buffer.writeString(images) }
                ) { buffer in buffer.writeString(metadata) }
                ranges.append(start..<products.writerIndex)
            }
            let hasMore = cut || ranges.count > query.limit
            if ranges.count > query.limit { ranges.removeLast() }
            if descending { ranges.reverse() }
            var page = ByteBuffer()
            page.reserveCapacity(products.readableBytes + ranges.count + 32)
            ProductPage.writeJSON(ranges, hasMore: hasMore, into: &page) { range, page in
                page.writeBytes(products.readableBytesView[range])
            }
            return page
        }
    }

    /// The columns a listing selects, in this order.
    private enum Column {
        static let (id, name, type, metadata, createdAt, updatedAt, version) = (0, 1, 2, 3, 4, 5, 6)
        static let (description, images, active) = (7, 8, 9)
    }

    /// A listing's query: the page's rows and one more (whether more exist), in paging order.
    private static func listSQL(tenant: String, query: ProductQuery) -> (sql: String, arguments: StatementArguments, descending: Bool) {
        var sql = """
            SELECT id, name, type, metadata, created_at, updated_at, version, description, images, active
            FROM products WHERE tenant = ? AND deleted = 0
            """
        var arguments: StatementArguments = [tenant]
        var descending = false
        switch query.cursor {
        case .startingAfter(let id):
            sql += " AND id > ?"
            arguments += [id]
        case .endingBefore(let id):
            sql += " AND id < ?"
            arguments += [id]
            descending = true
        case nil:
            break
        }
        if let type = query.type {
            sql += " AND type = ?"
            arguments += [type]
        }
        if let active = query.active { sql += active ? " AND active" : " AND NOT active" }
        if let ids = query.ids {
            sql += " AND id IN (\(Array(repeating: "?", count: ids.count).joined(separator: ", ")))"
            arguments += StatementArguments(ids)
        }
        for (comparison, bound) in [(">=", query.createdGTE), (">", query.createdGT), ("<=", query.createdLTE), ("<", query.createdLT)] {
            if let bound {
                sql += " AND products_epoch_ms(created_at) \(comparison) ?"
                arguments += [bound]
            }
        }
        if let search = query.foldedSearch {
            sql += " AND instr(products_fold(name), ?) > 0"
            arguments += [search]
        }
        sql += descending ? " ORDER BY id DESC LIMIT ?" : " ORDER BY id LIMIT ?"
        arguments += [query.limit + 1]
        return (sql, arguments, descending)
    }

    func ping() async throws {
        _ = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }

    func schemaVersion() async throws -> String? {
        try await pool.read { db in try Self.migrator.appliedMigrations(db).last }
    }

    var poolDescription: String { "1 writer, up to \(pool.configuration.maximumReaderCount) readers (WAL)" }

    // MARK: Change log

    func changes(after cursor: ChangeCursor, limit: Int) async throws -> ChangeRead {
        try await pool.read { db in
            // One read transaction: the rows and the purge mark come from the same snapshot.
            let purged = try Int64.fetchOne(db, sql: "SELECT purged_position FROM change_log_state WHERE id = 1") ?? 0
            guard cursor.position >= purged else { return .expired(purgedThrough: ChangeCursor(transaction: 0, position: purged)) }
            let rows = try GRDB.Row.fetchAll(
                db,
                sql: """
                    SELECT \(Self.changeColumns) FROM product_changes WHERE position > ? ORDER BY position LIMIT ?
                    """,
                arguments: [cursor.position, limit])
            var page = ChangeLogPage(changes: [], next: cursor)
            for row in rows {
                page.changes.append(Self.change(from: row))
                page.next = ChangeCursor(transaction: 0, position: row["position"])
                page.recordedAtMs = row["recorded_ms"]
            }
            return .page(page)
        }
    }

    func changeHead() async throws -> ChangeCursor {
        try await pool.read { db in
            let position = try Int64.fetchOne(
                db, sql: "SELECT MAX(position) FROM (SELECT MAX(position) AS position FROM product_changes UNION ALL SELECT purged_position FROM change_log_state)")
            return ChangeCursor(transaction: 0, position: position ?? 0)
        }
    }

    func purgeChanges(recordedBefore cutoffMs: Int64) async throws -> Int {
        var purged = 0
        while true {
            let count = try await pool.write { db -> Int in
                // The oldest changes, up to the first one still within retention: the log only loses a prefix.
                let rows = try GRDB.Row.fetchAll(
                    db, sql: "SELECT position, recorded_ms FROM product_changes ORDER BY position LIMIT ?", arguments: [Self.purgeBatch])
                guard let last = rows.prefix(while: { $0["recorded_ms"] < cutoffMs }).last else { return 0 }
                let through: Int64 = last["position"]
                try db.execute(sql: "DELETE FROM product_changes WHERE position <= ?", arguments: [through])
                let deleted = db.changesCount
                try db.execute(sql: "UPDATE change_log_state SET purged_position = max(purged_position, ?) WHERE id = 1", arguments: [through])
                return deleted
            }
            purged += count
            if count < Self.purgeBatch { return purged }
        }
    }

    private static let purgeBatch = 5000

    static let changeColumns = "position, tenant, product_id, version, op, changed_at, recorded_ms, product, event_type"

    func writerNode(replicaID: String, preferred: Int64?) async throws -> Int64? {
        let now = Timestamp.nowMilliseconds()
        return try await pool.write { db -> Int64? in
            if let node = try Int64.fetchOne(db, sql: "SELECT node FROM writer_nodes WHERE replica_id = ?", arguments: [replicaID]) {
                try db.execute(sql: "UPDATE writer_nodes SET last_seen_ms = ? WHERE node = ?", arguments: [now, node])
                return node
            }
            let taken = try GRDB.Row.fetchAll(db, sql: "SELECT node, last_seen_ms FROM writer_nodes").map { (node: $0["node"] as Int64, lastSeenMs: $0["last_seen_ms"] as Int64) }
            guard let (node, _) = WriterNodes.choose(taken: taken, preferred: preferred, nowMs: now) else { return nil }
            try db.execute(
                sql: """
                    INSERT INTO writer_nodes (node, replica_id, last_seen_ms) VALUES (?, ?, ?)
                    ON CONFLICT (node) DO UPDATE SET replica_id = excluded.replica_id, last_seen_ms = excluded.last_seen_ms
                    """,
                arguments: [node, replicaID, now])
            return node
        }
    }

    /// One process serves a SQLite file: its own commits signal directly.
    func listenForChanges() async {}

    private static func record(_ change: LoggedChange, with writes: Writes) throws {
        let log = writes.log
        log.bind(change.tenant)
        log.bind(change.id)
        log.bind(change.version)
        log.bind(change.op.rawValue)
        log.bind(change.changedAt)
        log.bind(Timestamp.nowMilliseconds())
        if let product = change.productJSON { log.bind(product) } else { log.bind(nil as Int64?) }
        log.bind(change.eventType.rawValue)
        try log.execute()
    }

    static func change(from row: GRDB.Row) -> LoggedChange {
        LoggedChange(
            tenant: row["tenant"], id: row["product_id"], version: row["version"],
            op: Change.Operation(rawValue: row["op"]) ?? .delete, changedAt: row["changed_at"], productJSON: row["product"],
            eventType: (row["event_type"] as String?).flatMap(EventType.init(rawValue:)),
            cursor: ChangeCursor(transaction: 0, position: row["position"]), recordedMs: row["recorded_ms"])
    }

    // MARK: SQL functions

    /// `products_epoch_ms(created_at)`: milliseconds since the epoch, as the `created[...]` filters compare them.
    private static let epochMilliseconds = DatabaseFunction("products_epoch_ms", argumentCount: 1, pure: true) { values in
        String.fromDatabaseValue(values[0]).flatMap(Timestamp.epochMilliseconds)
    }

    /// `products_fold(name)`: the case folding `q` matches under, the same as the Products Service's (SQLite's
    /// `lower` folds ASCII only).
    private static let fold = DatabaseFunction("products_fold", argumentCount: 1, pure: true) { values in
        String.fromDatabaseValue(values[0]).map(ProductQuery.fold)
    }

    // MARK: Rows

    private struct Row: Sendable {
        var tenant, id, name, type, metadata, createdAt, updatedAt: String
        var version: Int64
        var deleted: Bool
        var description: String? = nil
        var images = "[]"
        var active = true
    }

    private static func row(for operation: WriteOperation) -> Row {
        switch operation {
        case .upsert(let tenant, let product):
            var buffer = ByteBuffer()
            JSONWriter.writeObject(product.metadata, into: &buffer)
            let metadata = String(buffer: buffer)
            buffer.clear()
            JSONWriter.writeArray(product.images, into: &buffer)
            return Row(tenant: tenant, id: product.id, name: product.name, type: product.type, metadata: metadata,
                       createdAt: product.createdAt, updatedAt: product.updatedAt, version: product.version, deleted: false,
                       description: product.description, images: String(buffer: buffer), active: product.active)
        case .delete(let tenant, let id, let version, let deletedAt):
            return Row(tenant: tenant, id: id, name: "", type: "", metadata: "{}",
                       createdAt: deletedAt, updatedAt: deletedAt, version: version, deleted: true)
        }
    }

    /// The statements a write runs, taken from the connection's cache once per transaction.
    private final class Writes {
        let state, live, tombstone, log: BoundStatement

        init(_ db: Database) throws {
            state = try BoundStatement(db, sql: "SELECT version, deleted, name FROM products WHERE tenant = ? AND id = ?")
            live = try BoundStatement(
                db,
                sql: """
                    INSERT INTO products (tenant, id, name, type, metadata, description, images, active, created_at, updated_at, version, deleted)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
                    ON CONFLICT (tenant, id) DO UPDATE SET
                        name = excluded.name, type = excluded.type, metadata = excluded.metadata,
                        description = excluded.description, images = excluded.images, active = excluded.active,
                        created_at = excluded.created_at, updated_at = excluded.updated_at,
                        version = excluded.version, deleted = 0, deleted_ms = NULL
                    """)
            // Keep the last name so a delete can report it; the rest of a tombstone is never read.
            tombstone = try BoundStatement(
                db,
                sql: """
                    INSERT INTO products (tenant, id, name, type, metadata, created_at, updated_at, version, deleted, deleted_ms)
                    VALUES (?, ?, ?, '', '{}', ?, ?, ?, 1, ?)
                    ON CONFLICT (tenant, id) DO UPDATE SET
                        description = NULL, images = '[]', active = 1, updated_at = excluded.updated_at, version = excluded.version, deleted = 1, deleted_ms = excluded.deleted_ms
                    """)
            log = try BoundStatement(
                db,
                sql: """
                    INSERT INTO product_changes (tenant, product_id, version, op, changed_at, recorded_ms, product, event_type)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """)
        }
    }

    /// Stores a row only if its version is newer than the stored one; a tombstone keeps its original creation time
    /// and records when it was stored. A write recorded before `horizonMs`, for a product with no row, is refused.
    private static func store(_ row: Row, with writes: Writes, recordedAtMs: Int64? = nil, horizonMs: Int64 = 0) throws -> ApplyOutcome {
        let existing = try state(tenant: row.tenant, id: row.id, with: writes)
        if let existing, existing.version >= row.version {
            return .stale(storedVersion: existing.version, deleted: existing.deleted)
        }
        if existing == nil, TombstoneSchema.isBefore(horizonMs, recordedAtMs: recordedAtMs) { return .expired(horizonMs: horizonMs) }
        let statement = row.deleted ? writes.tombstone : writes.live
        statement.bind(row.tenant)
        statement.bind(row.id)
        statement.bind(row.name)
        if !row.deleted {
            statement.bind(row.type)
            statement.bind(row.metadata)
            if let description = row.description { statement.bind(description) } else { statement.bind(nil as Int64?) }
            statement.bind(row.images)
            statement.bind(row.active ? 1 : 0 as Int64)
        }
        statement.bind(row.createdAt)
        statement.bind(row.updatedAt)
        statement.bind(row.version)
        if row.deleted { statement.bind(Timestamp.nowMilliseconds()) }
        try statement.execute()
        return existing == nil ? .inserted : .updated
    }

    private static func state(tenant: String, id: String, with writes: Writes) throws -> (version: Int64, deleted: Bool, name: String)? {
        writes.state.bind(tenant)
        writes.state.bind(id)
        return try writes.state.first { row in
            (sqlite3_column_int64(row, 0), sqlite3_column_int64(row, 1) != 0, BoundStatement.text(row, 2))
        }
    }

    private static func product(from row: GRDB.Row) throws -> Product {
        let metadataText: String = row["metadata"]
        let imagesText: String = row["images"]
        return Product(
            id: row["id"], name: row["name"], type: row["type"], description: row["description"],
            images: try [String](jsonArray: imagesText), active: row["active"],
            metadata: try [String: String](jsonObject: metadataText),
            createdAt: row["created_at"], updatedAt: row["updated_at"], version: row["version"])
    }
}

extension SQLiteProductStore: APIKeyStore {
    func createKey(tenant: String, scope: KeyGrant.Scope) async throws -> (grant: KeyGrant, key: String) {
        let key = APIKey.generate()
        let grant = KeyGrant(id: APIKey.generateID(), tenant: tenant, scope: scope)
        try await pool.write { db in
            try db.execute(
                sql: "INSERT INTO api_keys (id, tenant, scope, key_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [grant.id, tenant, scope.rawValue, APIKey.hash(key), Timestamp.now()])
        }
        return (grant, key)
    }

    func keys() async throws -> [APIKeyRecord] {
        try await pool.read { db in
            try GRDB.Row.fetchAll(db, sql: "SELECT * FROM api_keys ORDER BY created_at, id").map { row in
                APIKeyRecord(
                    id: row["id"], tenant: row["tenant"], scope: KeyGrant.Scope(rawValue: row["scope"]) ?? .readOnly,
                    createdAt: row["created_at"], lastUsedAt: row["last_used_at"], revokedAt: row["revoked_at"])
            }
        }
    }

    func revokeKey(id: String) async throws -> Bool {
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", arguments: [Timestamp.now(), id])
            return db.changesCount > 0
        }
    }

    func verifyKey(hash: String) async throws -> KeyGrant? {
        try await pool.write { db in
            guard let row = try GRDB.Row.fetchOne(
                db, sql: "SELECT id, tenant, scope FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL", arguments: [hash])
            else { return nil }
            let grant = KeyGrant(id: row["id"], tenant: row["tenant"], scope: KeyGrant.Scope(rawValue: row["scope"]) ?? .readOnly)
            try db.execute(sql: "UPDATE api_keys SET last_used_at = ? WHERE id = ?", arguments: [Timestamp.now(), grant.id])
            return grant
        }
    }

    func activeKeyCount() async throws -> Int {
        try await pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL") ?? 0 }
    }

    func tenants() async throws -> [String] {
        try await pool.read { db in
            try String.fetchAll(
                db,
                sql: """
                    SELECT DISTINCT tenant FROM products WHERE deleted = 0
                    UNION SELECT tenant FROM api_keys WHERE revoked_at IS NULL
                    ORDER BY 1
                    """)
        }
    }
}

extension SQLiteProductStore: ImportStore {
    func createImport(_ job: ImportJob) async throws -> ImportCreation {
        let text = try ImportSchema.encode(job)
        return try await pool.write { db in
            if let key = job.idempotencyKey,
               let stored = try String.fetchOne(
                   db, sql: "SELECT job FROM import_jobs WHERE tenant = ? AND idempotency_key = ?", arguments: [job.tenant, key])
            {
                return .existing(try ImportSchema.decode(stored))
            }
            guard try Bool.fetchOne(
                db, sql: "SELECT EXISTS (SELECT 1 FROM import_jobs WHERE tenant = ? AND id = ?)", arguments: [job.tenant, job.id]) == false
            else { return .idTaken }
            try db.execute(
                sql: """
                    INSERT INTO import_jobs (tenant, id, job, status, replica_id, idempotency_key, updated_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [job.tenant, job.id, text, job.status.rawValue, job.replicaID, job.idempotencyKey, job.updatedMs])
            return .created(job)
        }
    }

    func importJob(tenant: String, id: String) async throws -> ImportJob? {
        try await pool.read { db in
            try String.fetchOne(db, sql: "SELECT job FROM import_jobs WHERE tenant = ? AND id = ?", arguments: [tenant, id])
                .map(ImportSchema.decode)
        }
    }

    func updateImport(tenant: String, id: String, _ progress: ImportProgress) async throws -> ImportJob? {
        let nowMs = Timestamp.nowMilliseconds()
        return try await pool.write { db in
            guard let stored = try String.fetchOne(db, sql: "SELECT job FROM import_jobs WHERE tenant = ? AND id = ?", arguments: [tenant, id])
                .map(ImportSchema.decode)
            else { return nil }
            guard !stored.status.isFinished else { return stored }
            let job = progress.applied(to: stored, nowMs: nowMs)
            try db.execute(
                sql: "UPDATE import_jobs SET job = ?, status = ?, updated_ms = ?, finished_ms = ? WHERE tenant = ? AND id = ?",
                arguments: [try ImportSchema.encode(job), job.status.rawValue, nowMs, job.status.isFinished ? nowMs : nil, tenant, id])
            return job
        }
    }

    func addImportErrors(tenant: String, id: String, _ errors: [ImportLineError]) async throws {
        guard !errors.isEmpty else { return }
        try await pool.write { db in
            let kept = try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM import_errors WHERE tenant = ? AND job_id = ?", arguments: [tenant, id]) ?? 0
            for error in errors.prefix(max(0, ImportRules.maxStoredErrors - kept)) {
                try db.execute(
                    sql: "INSERT INTO import_errors (tenant, job_id, line, code, param, error) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    arguments: [tenant, id, error.line, error.code, error.param, error.error])
            }
        }
    }

    func importErrors(tenant: String, id: String, afterLine: Int64?, limit: Int) async throws -> (errors: [ImportLineError], hasMore: Bool) {
        try await pool.read { db in
            let rows = try GRDB.Row.fetchAll(
                db,
                sql: "SELECT line, code, param, error FROM import_errors WHERE tenant = ? AND job_id = ? AND line > ? ORDER BY line LIMIT ?",
                arguments: [tenant, id, afterLine ?? 0, limit + 1])
            let errors = rows.prefix(limit).map { ImportLineError(line: $0["line"], code: $0["code"], param: $0["param"], error: $0["error"]) }
            return (errors, rows.count > limit)
        }
    }

    func unfinishedImports(replicaID: String) async throws -> [ImportJob] {
        try await pool.read { db in
            try String.fetchAll(
                db, sql: "SELECT job FROM import_jobs WHERE replica_id = ? AND finished_ms IS NULL ORDER BY id", arguments: [replicaID]
            ).map(ImportSchema.decode)
        }
    }

    func failSilentImports(silentSinceMs: Int64, nowMs: Int64) async throws -> Int {
        try await pool.write { db in
            let silent = try String.fetchAll(
                db, sql: "SELECT job FROM import_jobs WHERE finished_ms IS NULL AND updated_ms < ?", arguments: [silentSinceMs]
            ).map(ImportSchema.decode)
            for stored in silent {
                let job = ImportProgress(status: .failed, error: ImportSchema.silenceError(stored), finishedAt: Timestamp.now())
                    .applied(to: stored, nowMs: nowMs)
                try db.execute(
                    sql: "UPDATE import_jobs SET job = ?, status = ?, updated_ms = ?, finished_ms = ? WHERE tenant = ? AND id = ?",
                    arguments: [try ImportSchema.encode(job), job.status.rawValue, nowMs, nowMs, job.tenant, job.id])
            }
            return silent.count
        }
    }

    func purgeImports(finishedBefore cutoffMs: Int64) async throws -> Int {
        try await pool.write { db in
            try db.execute(
                sql: """
                    DELETE FROM import_errors WHERE (tenant, job_id) IN (
                        SELECT tenant, id FROM import_jobs WHERE finished_ms IS NOT NULL AND finished_ms < ?)
                    """,
                arguments: [cutoffMs])
            try db.execute(sql: "DELETE FROM import_jobs WHERE finished_ms IS NOT NULL AND finished_ms < ?", arguments: [cutoffMs])
            return db.changesCount
        }
    }
}
