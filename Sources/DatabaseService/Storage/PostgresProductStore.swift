import Foundation
import Logging
import NIOCore
import PostgresNIO
import ServiceLifecycle
import Shared

/// `ProductStore` and `APIKeyStore` on PostgreSQL through PostgresNIO's connection pool.
///
/// Several Database Service processes may share one database: every versioned write is one
/// `INSERT ... ON CONFLICT DO UPDATE ... WHERE stored version < new version`, which PostgreSQL applies
/// atomically per row, so no update is lost between processes; batches run in one transaction.
final class PostgresProductStore: ProductStore, APIKeyStore {
    let client: PostgresClient
    let logger: Logger
    let maximumConnections: Int
    let changeSignal = ChangeSignal()
    var backend: String { "postgresql" }

    /// Connects to `url` (`postgres://user:password@host:port/database?sslmode=disable|prefer|require`).
    /// The pool runs as a service: add `client` to the service group (or call `run(_:)` around one-off work).
    private let target: Target

    init(url: String, logger: Logger, maximumConnections: Int = 20) throws {
        self.logger = logger
        self.maximumConnections = maximumConnections
        let target = try Target(url)
        self.target = target
        var tls = PostgresClient.Configuration.TLS.disable
        if let configuration = target.tls { tls = target.requireTLS ? .require(configuration) : .prefer(configuration) }
        var configuration = PostgresClient.Configuration(
            host: target.host, port: target.port, username: target.user, password: target.password, database: target.database, tls: tls)
        configuration.options.maximumConnections = maximumConnections
        // The pool reports each failed connection attempt at info; requests that fail are logged by the service.
        var poolLogger = logger
        poolLogger.logLevel = max(logger.logLevel, .warning)
        client = PostgresClient(configuration: configuration, backgroundLogger: poolLogger)
    }

    /// Where a `postgres://` URL points.
    struct Target {
        var host: String
        var port: Int
        var user: String
        var password: String?
        var database: String?
        var tls: TLSConfiguration?
        var requireTLS: Bool

        init(_ url: String) throws {
            guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme ?? ""),
                  let host = components.host, !host.isEmpty
            else { throw SettingError("--database (DATABASE): '\(PostgresProductStore.redacted(url))' is not a postgres://user:password@host:port/database URL") }
            self.host = host
            port = components.port ?? 5432
            user = components.user ?? "postgres"
            password = components.password?.removingPercentEncoding
            let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
            database = path.isEmpty ? nil : path
            switch components.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? "prefer" {
            case "disable": (tls, requireTLS) = (nil, false)
            case "prefer", "allow": (tls, requireTLS) = (.makeClientConfiguration(), false)
            case "require", "verify-ca", "verify-full": (tls, requireTLS) = (.makeClientConfiguration(), true)
            case let mode: throw SettingError("--database (DATABASE): sslmode '\(mode)' is not disable, prefer or require")
            }
        }
    }

    /// One direct connection attempt: the pool retries a refused connection forever, a start should not.
    func checkConnection() async throws {
        var tls = PostgresConnection.Configuration.TLS.disable
        if let configuration = target.tls { tls = target.requireTLS ? .require(try .init(configuration: configuration)) : .prefer(try .init(configuration: configuration)) }
        let connection = try await PostgresConnection.connect(
            configuration: PostgresConnection.Configuration(
                host: target.host, port: target.port, username: target.user, password: target.password, database: target.database,
                tls: tls),
            id: 0, logger: logger)
        try await connection.close()
    }

    /// The URL with its password hidden, for messages.
    static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "***"
        return components.string ?? "postgres://***"
    }

    /// Runs `body` with the pool running, for commands that do not start the server.
    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await self.client.run()
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
    ]

    func migrate() async throws {
        try await client.withTransaction(logger: logger) { connection in
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
            }
        }
    }

    func schemaVersion() async throws -> String? {
        let rows = try await client.query("SELECT name FROM schema_migrations ORDER BY substring(name FROM '^v([0-9]+)')::int DESC, name DESC LIMIT 1", logger: logger)
        for try await name in rows.decode(String.self) { return name }
        return nil
    }

    var poolDescription: String { "up to \(maximumConnections) connections" }

    // MARK: Products

    /// Applies a batch in one transaction with a few statements a round, not a few a row: each round takes at most
    /// one operation of each product (the first round the first of each, and so on, so a product's operations keep
    /// their order), upserts them all with one multi-row `INSERT … SELECT FROM unnest(…)` in key order (rows are
    /// locked in key order, so concurrent batches cannot deadlock), reads back the stored versions of those it
    /// found stale, and logs the applied ones with one more multi-row insert. Outcomes go back in the batch's order.
    func apply(_ operations: [WriteOperation], recordedAtMs: [Int64?]) async throws -> [ApplyOutcome] {
        struct Key: Hashable { var tenant: String; var id: String }
        let order = operations.indices.sorted { left, right in
            let (a, b) = (operations[left], operations[right])
            return (a.tenant, a.productID, left) < (b.tenant, b.productID, right)
        }
        var rounds: [[Int]] = []
        var seen: [Key: Int] = [:]
        for index in order {
            let key = Key(tenant: operations[index].tenant, id: operations[index].productID)
            let round = seen[key, default: 0]
            seen[key] = round + 1
            if round == rounds.count { rounds.append([]) }
            rounds[round].append(index)
        }
        let outcomes = try await retryingConflicts {
            try await self.client.withTransaction(logger: self.logger) { connection in
                var outcomes = [ApplyOutcome?](repeating: nil, count: operations.count)
                if !recordedAtMs.isEmpty {
                    for (index, horizonMs) in try await self.expired(operations, recordedAtMs: recordedAtMs, on: connection) {
                        outcomes[index] = .expired(horizonMs: horizonMs)
                    }
                }
                for allRound in rounds {
                    let round = allRound.filter { outcomes[$0] == nil }
                    let stored = try await self.store(round.map { operations[$0] }, on: connection)
                    var changes: [LoggedChange] = []
                    for (index, outcome) in zip(round, stored) {
                        outcomes[index] = outcome
                        if let change = LoggedChange(operations[index], outcome: outcome) { changes.append(change) }
                    }
                    try await self.record(changes, on: connection)
                }
                if outcomes.contains(where: { $0?.isApplied == true }) { try await self.notifyChanges(on: connection) }
                return outcomes.map { $0! }
            }
        }
        if outcomes.contains(where: \.isApplied) { changeSignal.signal() }
        return outcomes
    }

    /// The operations recorded before the tombstone horizon whose products have no row, with the horizon. Holds the
    /// horizon's lock, shared, for the rest of the transaction: a purge (which takes it alone) cannot raise the horizon
    /// and drop a tombstone between this check and the writes.
    private func expired(
        _ operations: [WriteOperation], recordedAtMs: [Int64?], on connection: PostgresConnection
    ) async throws -> [(index: Int, horizonMs: Int64)] {
        try await connection.query("SELECT pg_advisory_xact_lock_shared(\(Self.tombstoneLock))", logger: logger)
        // A statement of its own, so that its snapshot is taken after the lock is held.
        var horizonMs: Int64 = 0
        for try await value in try await connection.query("SELECT horizon_ms FROM tombstone_horizon", logger: logger).decode(Int64.self) {
            horizonMs = value
        }
        let old = operations.indices.filter { TombstoneSchema.isBefore(horizonMs, recordedAtMs: recordedAtMs[$0]) }
        guard !old.isEmpty else { return [] }
        var present: [String: Set<String>] = [:]
        let rows = try await connection.query(
            """
            SELECT products.tenant, products.id
            FROM products JOIN unnest(\(old.map { operations[$0].tenant })::text[], \(old.map { operations[$0].productID })::text[])
                AS wanted (tenant, id) ON products.tenant = wanted.tenant AND products.id = wanted.id
            """, logger: logger)
        for try await (tenant, id) in rows.decode((String, String).self) { present[tenant, default: []].insert(id) }
        return old.filter { present[operations[$0].tenant]?.contains(operations[$0].productID) != true }.map { ($0, horizonMs) }
    }

    /// The advisory lock that orders tombstone purges with writes checked against the horizon.
    private static let tombstoneLock: Int64 = 7_206_114

    /// Stores operations of distinct products, each only if its version is newer, in one statement; then reads the
    /// stored state of those that were not. A tombstone keeps its product's name, so a delete can report it, and
    /// its creation time.
    private func store(_ operations: [WriteOperation], on connection: PostgresConnection) async throws -> [ApplyOutcome] {
        guard !operations.isEmpty else { return [] }
        if operations.count == 1 { return [try await store(operations[0], on: connection)] }
        var tenants: [String] = [], ids: [String] = [], names: [String] = [], folded: [String] = [], types: [String] = []
        var metadata: [String] = [], createdAt: [String] = [], createdMs: [Int64] = [], updatedAt: [String] = []
        var versions: [Int64] = [], deleted: [Bool] = []
        // Arrays bind no NULLs: a description is its text and whether there is one.
        var descriptions: [String] = [], hasDescription: [Bool] = [], images: [String] = [], active: [Bool] = []
        for operation in operations {
            tenants.append(operation.tenant)
            ids.append(operation.productID)
            versions.append(operation.version)
            switch operation {
            case .upsert(_, let product):
                var buffer = ByteBuffer()
                JSONWriter.writeObject(product.metadata, into: &buffer)
                names.append(product.name)
                folded.append(ProductQuery.fold(product.name))
                types.append(product.type)
                metadata.append(String(buffer: buffer))
                createdAt.append(product.createdAt)
                createdMs.append(Timestamp.epochMilliseconds(product.createdAt) ?? Self.noMilliseconds)
                updatedAt.append(product.updatedAt)
                deleted.append(false)
                descriptions.append(product.description ?? "")
                hasDescription.append(product.description != nil)
                buffer.clear()
                JSONWriter.writeArray(product.images, into: &buffer)
                images.append(String(buffer: buffer))
                active.append(product.active)
            case .delete(_, _, _, let deletedAt):
                names.append("")
                folded.append("")
                types.append("")
                metadata.append("{}")
                createdAt.append(deletedAt)
                createdMs.append(Self.noMilliseconds)
                updatedAt.append(deletedAt)
                deleted.append(true)
                descriptions.append("")
                hasDescription.append(false)
                images.append("[]")
                active.append(true)
            }
        }
        let rows = try await connection.query(
            """
            INSERT INTO products (tenant, id, name, name_folded, type, metadata, description, images, active,
                                  created_at, created_ms, updated_at, version, deleted, deleted_ms)
            SELECT tenant, id, name, name_folded, type, metadata, CASE WHEN has_description THEN description END, images, active,
                   created_at, CASE WHEN deleted OR created_ms = \(Self.noMilliseconds) THEN NULL ELSE created_ms END, updated_at, version,
                   deleted, CASE WHEN deleted THEN \(Timestamp.nowMilliseconds()) ELSE NULL END
            FROM unnest(\(tenants)::text[], \(ids)::text[], \(names)::text[], \(folded)::text[], \(types)::text[], \(metadata)::text[],
                        \(descriptions)::text[], \(hasDescription)::boolean[], \(images)::text[], \(active)::boolean[],
                        \(createdAt)::text[], \(createdMs)::bigint[], \(updatedAt)::text[], \(versions)::bigint[], \(deleted)::boolean[])
                AS input (tenant, id, name, name_folded, type, metadata, description, has_description, images, active,
                          created_at, created_ms, updated_at, version, deleted)
            ORDER BY tenant, id
            ON CONFLICT (tenant, id) DO UPDATE SET
                description = EXCLUDED.description, images = EXCLUDED.images, active = EXCLUDED.active,
                name = CASE WHEN EXCLUDED.deleted THEN products.name ELSE EXCLUDED.name END,
                name_folded = CASE WHEN EXCLUDED.deleted THEN products.name_folded ELSE EXCLUDED.name_folded END,
                type = CASE WHEN EXCLUDED.deleted THEN products.type ELSE EXCLUDED.type END,
                metadata = CASE WHEN EXCLUDED.deleted THEN products.metadata ELSE EXCLUDED.metadata END,
                created_at = CASE WHEN EXCLUDED.deleted THEN products.created_at ELSE EXCLUDED.created_at END,
                created_ms = CASE WHEN EXCLUDED.deleted THEN products.created_ms ELSE EXCLUDED.created_ms END,
                updated_at = EXCLUDED.updated_at, version = EXCLUDED.version, deleted = EXCLUDED.deleted, deleted_ms = EXCLUDED.deleted_ms
            WHERE products.version < EXCLUDED.version
            RETURNING tenant, id, (xmax = 0)
            """, logger: logger)
        var applied: [String: [String: Bool]] = [:]
        for try await (tenant, id, inserted) in rows.decode((String, String, Bool).self) { applied[tenant, default: [:]][id] = inserted }
        var stale: [String: [String: (version: Int64, deleted: Bool)]] = [:]
        let staleIndices = operations.indices.filter { applied[operations[$0].tenant]?[operations[$0].productID] == nil }
        if !staleIndices.isEmpty {
            let stored = try await connection.query(
                """
                SELECT products.tenant, products.id, products.version, products.deleted
                FROM products JOIN unnest(\(staleIndices.map { tenants[$0] })::text[], \(staleIndices.map { ids[$0] })::text[]) AS wanted (tenant, id)
                    ON products.tenant = wanted.tenant AND products.id = wanted.id
                """, logger: logger)
            for try await (tenant, id, version, isDeleted) in stored.decode((String, String, Int64, Bool).self) {
                stale[tenant, default: [:]][id] = (version, isDeleted)
            }
        }
        return try operations.map { operation in
            if let inserted = applied[operation.tenant]?[operation.productID] { return inserted ? .inserted : .updated }
            guard let stored = stale[operation.tenant]?[operation.productID] else { throw PostgresStoreError.vanished(operation.productID) }
            return .stale(storedVersion: stored.version, deleted: stored.deleted)
        }
    }

    /// Stands for "no creation time in milliseconds" in the arrays a batch binds (they cannot hold NULL).
    private static let noMilliseconds = Int64.min

    /// Runs a transaction again when PostgreSQL aborts it for a deadlock or a serialization failure.
    func retryingConflicts<T: Sendable>(_ transaction: () async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            do {
                return try await transaction()
            } catch let error as PostgresTransactionError {
                let state = (error.closureError as? PSQLError)?.serverInfo?[.sqlState]
                guard state == "40P01" || state == "40001", attempt < 5 else { throw error }
                attempt += 1
                logger.debug("transaction conflict; retrying", metadata: ["sqlstate": "\(state ?? "")", "attempt": "\(attempt)"])
                try await Task.sleep(for: .milliseconds(Int.random(in: 1...10) * attempt))
            }
        }
    }

    /// Stores one operation if its version is newer; a tombstone keeps the last name, so a delete can report it.
    private func store(_ operation: WriteOperation, on connection: PostgresConnection) async throws -> ApplyOutcome {
        let rows: PostgresRowSequence
        switch operation {
        case .upsert(let tenant, let product):
            var metadata = ByteBuffer()
            JSONWriter.writeObject(product.metadata, into: &metadata)
            var images = ByteBuffer()
            JSONWriter.writeArray(product.images, into: &images)
            rows = try await connection.query(
                """
                INSERT INTO products (tenant, id, name, name_folded, type, metadata, description, images, active,
                                      created_at, created_ms, updated_at, version, deleted)
                VALUES (\(tenant), \(product.id), \(product.name), \(ProductQuery.fold(product.name)), \(product.type),
                        \(String(buffer: metadata)), \(product.description), \(String(buffer: images)), \(product.active),
                        \(product.createdAt), \(Timestamp.epochMilliseconds(product.createdAt)),
                        \(product.updatedAt), \(product.version), FALSE)
                ON CONFLICT (tenant, id) DO UPDATE SET
                    description = EXCLUDED.description, images = EXCLUDED.images, active = EXCLUDED.active,
                    name = EXCLUDED.name, name_folded = EXCLUDED.name_folded, type = EXCLUDED.type, metadata = EXCLUDED.metadata,
                    created_at = EXCLUDED.created_at, created_ms = EXCLUDED.created_ms, updated_at = EXCLUDED.updated_at,
                    version = EXCLUDED.version, deleted = FALSE, deleted_ms = NULL
                WHERE products.version < EXCLUDED.version
                RETURNING (xmax = 0)
                """, logger: logger)
        case .delete(let tenant, let id, let version, let deletedAt):
            rows = try await connection.query(
                """
                INSERT INTO products (tenant, id, name, name_folded, type, metadata, created_at, created_ms, updated_at, version, deleted, deleted_ms)
                VALUES (\(tenant), \(id), '', '', '', '{}', \(deletedAt), NULL, \(deletedAt), \(version), TRUE, \(Timestamp.nowMilliseconds()))
                ON CONFLICT (tenant, id) DO UPDATE SET
                    description = NULL, images = '[]', active = TRUE,
                    updated_at = EXCLUDED.updated_at, version = EXCLUDED.version, deleted = TRUE, deleted_ms = EXCLUDED.deleted_ms
                WHERE products.version < EXCLUDED.version
                RETURNING (xmax = 0)
                """, logger: logger)
        }
        for try await inserted in rows.decode(Bool.self) { return inserted ? .inserted : .updated }
        let stored = try await connection.query(
            "SELECT version, deleted FROM products WHERE tenant = \(operation.tenant) AND id = \(operation.productID)", logger: logger)
        for try await (version, deleted) in stored.decode((Int64, Bool).self) { return .stale(storedVersion: version, deleted: deleted) }
        throw PostgresStoreError.vanished(operation.productID)
    }

    func write(_ write: CoordinatedWrite) async throws -> CoordinatedResult {
        let operation = write.operation
        let result = try await retryingConflicts {
            try await self.client.withTransaction(logger: self.logger) { connection -> CoordinatedResult in
                if let answer = write.idempotency {
                    // One request per key at a time, across processes: the second waits, then finds the first's answer.
                    try await connection.query(
                        "SELECT pg_advisory_xact_lock(7206113, hashtext(\(operation.tenant) || '/' || \(answer.key)))", logger: self.logger)
                    let rows = try await connection.query(
                        """
                        SELECT fingerprint, status, body, etag, created_ms FROM idempotency_answers
                        WHERE tenant = \(operation.tenant) AND key = \(answer.key)
                        """, logger: self.logger)
                    for try await (fingerprint, status, body, etag, createdMs) in rows.decode((String, Int, String, String, Int64).self) {
                        guard fingerprint == answer.fingerprint else { return CoordinatedResult(outcome: .keyReused) }
                        return CoordinatedResult(
                            outcome: .replayed,
                            answer: StoredAnswer(
                                key: answer.key, fingerprint: fingerprint, status: status, body: body, etag: etag, createdAt: createdMs))
                    }
                }
                if let expected = write.expectedVersion {
                    let rows = try await connection.query(
                        """
                        SELECT version, deleted FROM products WHERE tenant = \(operation.tenant) AND id = \(operation.productID) FOR UPDATE
                        """, logger: self.logger)
                    var stored: (version: Int64, deleted: Bool)?
                    for try await row in rows.decode((Int64, Bool).self) { stored = row }
                    guard let stored, !stored.deleted, stored.version == expected else {
                        return CoordinatedResult(outcome: .preconditionFailed, storedVersion: stored?.version ?? 0, deleted: stored?.deleted ?? true)
                    }
                }
                let outcome = try await self.store(operation, on: connection)
                if case .stale(let version, let deleted) = outcome {
                    return CoordinatedResult(outcome: .stale, storedVersion: version, deleted: deleted)
                }
                if let change = LoggedChange(operation, outcome: outcome) { try await self.record(change, on: connection) }
                if let answer = write.idempotency {
                    try await connection.query(
                        """
                        INSERT INTO idempotency_answers (tenant, key, fingerprint, status, body, etag, created_ms)
                        VALUES (\(operation.tenant), \(answer.key), \(answer.fingerprint), \(answer.status), \(answer.body), \(answer.etag),
                                \(answer.createdAt))
                        """, logger: self.logger)
                }
                try await self.notifyChanges(on: connection)
                return CoordinatedResult(outcome: .applied)
            }
        }
        if result.outcome == .applied { changeSignal.signal() }
        return result
    }

    func versions(tenant: String, id: String, before: Int64?, limit: Int) async throws -> (versions: [LoggedChange], hasMore: Bool)? {
        let rows = try await client.query(
            """
            SELECT \(unescaped: Self.changeColumns) FROM product_changes
            WHERE tenant = \(tenant) AND product_id = \(id) AND version < \(before ?? Int64.max) ORDER BY version DESC LIMIT \(limit + 1)
            """, logger: logger)
        let versions = try await Self.changes(rows)
        if versions.isEmpty, before == nil, try await product(tenant: tenant, id: id) == nil { return nil }
        return (Array(versions.prefix(limit)), versions.count > limit)
    }

    func restore(tenant: String, id: String, version: Int64, restoredAt: String) async throws -> RestoreOutcome {
        let outcome = try await retryingConflicts {
            try await self.client.withTransaction(logger: self.logger) { connection -> RestoreOutcome in
                let stored = try await connection.query(
                    "SELECT version, deleted FROM products WHERE tenant = \(tenant) AND id = \(id) FOR UPDATE", logger: self.logger)
                var current: (version: Int64, deleted: Bool)?
                for try await row in stored.decode((Int64, Bool).self) { current = row }
                let rows = try await connection.query(
                    """
                    SELECT \(unescaped: Self.changeColumns) FROM product_changes
                    WHERE tenant = \(tenant) AND product_id = \(id) AND version = \(version) LIMIT 1
                    """, logger: self.logger)
                guard let wanted = try await Self.changes(rows).first else {
                    let logged = try await connection.query(
                        "SELECT EXISTS (SELECT 1 FROM product_changes WHERE tenant = \(tenant) AND product_id = \(id))", logger: self.logger)
                    var any = false
                    for try await exists in logged.decode(Bool.self) { any = exists }
                    return any || current?.deleted == false ? .versionNotFound : .productNotFound
                }
                let next = Versions.next(after: current?.version ?? 0, writer: 0)
                guard let product = try wanted.restoredProduct(version: next, restoredAt: restoredAt) else { return .versionIsDeletion }
                let operation = WriteOperation.upsert(tenant: tenant, product: product)
                guard try await self.store(operation, on: connection).isApplied else {
                    throw PostgresStoreError.vanished(id)
                }
                let created = current?.deleted != false
                try await self.record([LoggedChange(operation, created: created)], on: connection)
                try await self.notifyChanges(on: connection)
                return .restored(product, created: created)
            }
        }
        if case .restored = outcome { changeSignal.signal() }
        return outcome
    }

    func purgeTombstones(deletedBefore cutoffMs: Int64) async throws -> Int {
        var purged = 0
        while true {
            let count = try await client.withTransaction(logger: logger) { connection -> Int in
                // Alone on the horizon's lock: writes checking it wait, then see the new horizon and the purge together.
                try await connection.query("SELECT pg_advisory_xact_lock(\(Self.tombstoneLock))", logger: self.logger)
                try await connection.query(
                    "UPDATE tombstone_horizon SET horizon_ms = GREATEST(horizon_ms, \(cutoffMs)) WHERE id = 1", logger: self.logger)
                let rows = try await connection.query(
                    """
                    WITH gone AS (
                        DELETE FROM products WHERE ctid = ANY(ARRAY(
                            SELECT ctid FROM products WHERE deleted AND deleted_ms < \(cutoffMs) LIMIT \(Self.purgeBatch)))
                        RETURNING 1)
                    SELECT count(*) FROM gone
                    """, logger: self.logger)
                var count: Int64 = 0
                for try await value in rows.decode(Int64.self) { count = value }
                return Int(count)
            }
            purged += count
            if count < Self.purgeBatch { return purged }
        }
    }

    func purgeAnswers(createdBefore cutoffMs: Int64) async throws -> Int {
        let rows = try await client.query(
            "WITH gone AS (DELETE FROM idempotency_answers WHERE created_ms < \(cutoffMs) RETURNING 1) SELECT count(*) FROM gone",
            logger: logger)
        for try await count in rows.decode(Int64.self) { return Int(count) }
        return 0
    }

    func delete(tenant: String, id: String, version: Int64?, deletedAt: String) async throws -> DeleteOutcome {
        let outcome = try await client.withTransaction(logger: logger) { connection -> DeleteOutcome in
            let rows = try await connection.query(
                "SELECT version, deleted, name FROM products WHERE tenant = \(tenant) AND id = \(id) FOR UPDATE", logger: self.logger)
            var stored: (version: Int64, deleted: Bool, name: String)?
            for try await row in rows.decode((Int64, Bool, String).self) { stored = row }
            guard let stored, !stored.deleted else { return .notFound }
            let newVersion = version ?? Versions.next(after: stored.version, writer: 0)
            guard newVersion > stored.version else { return .stale(storedVersion: stored.version) }
            try await connection.query(
                """
                UPDATE products SET updated_at = \(deletedAt), version = \(newVersion), deleted = TRUE, deleted_ms = \(Timestamp.nowMilliseconds())
                WHERE tenant = \(tenant) AND id = \(id)
                """, logger: self.logger)
            try await self.record(
                LoggedChange(.delete(tenant: tenant, id: id, version: newVersion, deletedAt: deletedAt), created: false), on: connection)
            try await self.notifyChanges(on: connection)
            return .deleted(version: newVersion, name: stored.name)
        }
        if case .deleted = outcome { changeSignal.signal() }
        return outcome
    }

    private static let columns = "id, name, type, metadata, created_at, updated_at, version, description, images, active"

    // MARK: Change log

    /// Records an applied change in the transaction that applied it; `transaction_id` defaults to that
    /// transaction's id.
    private func record(_ change: LoggedChange, on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            INSERT INTO product_changes (tenant, product_id, version, op, changed_at, recorded_ms, product, event_type)
            VALUES (\(change.tenant), \(change.id), \(change.version), \(change.op.rawValue), \(change.changedAt),
                    \(Timestamp.nowMilliseconds()), \(change.productJSON), \(change.eventType.rawValue))
            """, logger: logger)
    }

    /// Logs changes in their order, with one statement.
    private func record(_ changes: [LoggedChange], on connection: PostgresConnection) async throws {
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

    /// The channel every Database Service process listens on. A notification is a hint that changes committed.
    static let changesChannel = "product_changes"

    /// Queues one notification, sent when the transaction commits (PostgreSQL folds repeats within a transaction).
    private func notifyChanges(on connection: PostgresConnection) async throws {
        try await connection.query("SELECT pg_notify(\(Self.changesChannel), '')", logger: logger)
    }

    // Reading below the horizon. Positions come from a sequence, taken when a row is inserted, but transactions
    // commit in any order: a reader that saw position 12 committed may later see 11 appear, when the slower
    // transaction that took 11 commits. Ordering by position alone would skip 11 for good. Instead every row
    // carries its transaction's id, and a reader returns only rows whose transaction id is below
    // `pg_snapshot_xmin(pg_current_snapshot())`, the oldest transaction still running anywhere: every
    // transaction below it has committed or aborted, so the rows below it are final and no row can appear among
    // them later. Rows are returned in (transaction id, position) order, and a cursor is such a pair. A long
    // transaction delays the feed (by its duration); it never makes the feed skip a change.
    static let horizon = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"

    func changes(after cursor: ChangeCursor, limit: Int) async throws -> ChangeRead {
        let rows = try await client.query(
            PostgresQuery(
                unsafeSQL: """
                    SELECT \(Self.changeColumns) FROM product_changes
                    WHERE (transaction_id, position) > ($1, $2) AND transaction_id < \(Self.horizon)
                    ORDER BY transaction_id, position LIMIT $3
                    """,
                binds: { var binds = PostgresBindings(); binds.append(cursor.transaction); binds.append(cursor.position); binds.append(Int64(limit)); return binds }()),
            logger: logger)
        var page = ChangeLogPage(changes: try await Self.changes(rows), next: cursor)
        if let last = page.changes.last {
            page.next = last.cursor ?? cursor
            page.recordedAtMs = last.recordedMs
        }
        // Read after the rows: a purge that raced this read shows here, and the page is not trusted.
        let purged = try await purgedThrough()
        if cursor < purged { return .expired(purgedThrough: purged) }
        return .page(page)
    }

    static let changeColumns = "transaction_id, position, tenant, product_id, version, op, changed_at, recorded_ms, product, event_type"

    /// Changes read with `changeColumns`.
    static func changes(_ rows: PostgresRowSequence) async throws -> [LoggedChange] {
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

    private func purgedThrough() async throws -> ChangeCursor {
        let rows = try await client.query("SELECT purged_transaction, purged_position FROM change_log_state WHERE id = 1", logger: logger)
        for try await (transaction, position) in rows.decode((Int64, Int64).self) {
            return ChangeCursor(transaction: transaction, position: position)
        }
        return .start
    }

    func changeHead() async throws -> ChangeCursor {
        let rows = try await client.query(
            PostgresQuery(unsafeSQL: """
                SELECT transaction_id, position FROM product_changes WHERE transaction_id < \(Self.horizon)
                ORDER BY transaction_id DESC, position DESC LIMIT 1
                """),
            logger: logger)
        var head = try await purgedThrough()
        for try await (transaction, position) in rows.decode((Int64, Int64).self) {
            head = max(head, ChangeCursor(transaction: transaction, position: position))
        }
        return head
    }

    func purgeChanges(recordedBefore cutoffMs: Int64) async throws -> Int {
        var purged = 0
        while true {
            let count = try await client.withTransaction(logger: logger) { connection -> Int in
                let rows = try await connection.query(
                    PostgresQuery(unsafeSQL: """
                        SELECT transaction_id, position, recorded_ms FROM product_changes WHERE transaction_id < \(Self.horizon)
                        ORDER BY transaction_id, position LIMIT \(Self.purgeBatch)
                        """),
                    logger: self.logger)
                // The oldest changes, up to the first one still within retention: the log only loses a prefix.
                var through: ChangeCursor?
                var count = 0
                for try await (transaction, position, recordedMs) in rows.decode((Int64, Int64, Int64).self) {
                    guard recordedMs < cutoffMs else { break }
                    through = ChangeCursor(transaction: transaction, position: position)
                    count += 1
                }
                guard let through else { return 0 }
                try await connection.query(
                    """
                    DELETE FROM product_changes WHERE (transaction_id, position) <= (\(through.transaction), \(through.position))
                    """, logger: self.logger)
                try await connection.query(
                    """
                    UPDATE change_log_state SET purged_transaction = \(through.transaction), purged_position = \(through.position)
                    WHERE id = 1 AND (purged_transaction, purged_position) < (\(through.transaction), \(through.position))
                    """, logger: self.logger)
                return count
            }
            purged += count
            if count < Self.purgeBatch { return purged }
        }
    }

    private static let purgeBatch = 5000

    func writerNode(replicaID: String, preferred: Int64?) async throws -> Int64? {
        let now = Timestamp.nowMilliseconds()
        return try await client.withTransaction(logger: logger) { connection -> Int64? in
            // One allocation at a time across processes.
            try await connection.query("SELECT pg_advisory_xact_lock(7206112)", logger: self.logger)
            var taken: [(node: Int64, lastSeenMs: Int64)] = []
            var own: Int64?
            // Read every row before the next statement: a connection runs one query at a time.
            for try await (node, id, lastSeen) in try await connection.query(
                "SELECT node, replica_id, last_seen_ms FROM writer_nodes", logger: self.logger
            ).decode((Int64, String, Int64).self) {
                if id == replicaID { own = node }
                taken.append((node, lastSeen))
            }
            if let own {
                try await connection.query("UPDATE writer_nodes SET last_seen_ms = \(now) WHERE node = \(own)", logger: self.logger)
                return own
            }
            guard let (node, _) = WriterNodes.choose(taken: taken, preferred: preferred, nowMs: now) else { return nil }
            try await connection.query(
                """
                INSERT INTO writer_nodes (node, replica_id, last_seen_ms) VALUES (\(node), \(replicaID), \(now))
                ON CONFLICT (node) DO UPDATE SET replica_id = EXCLUDED.replica_id, last_seen_ms = EXCLUDED.last_seen_ms
                """, logger: self.logger)
            return node
        }
    }

    /// Signals `changeSignal` on every notification of any process's commits, until cancelled; reconnects
    /// after a failure. Holds one pooled connection, so not with a pool of one: readers then see other
    /// processes' changes on their 0.5 s re-read.
    func listenForChanges() async {
        guard maximumConnections > 1 else {
            logger.notice("not listening for other processes' changes with a pool of one connection; feed readers re-read every 0.5 s")
            return
        }
        while !Task.isCancelled {
            do {
                try await client.withConnection { connection in
                    try await connection.listen(on: Self.changesChannel) { notifications in
                        // Whatever committed while not listening is caught up by the readers' next look.
                        self.changeSignal.signal()
                        for try await _ in notifications { self.changeSignal.signal() }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("listening for change notifications failed; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    func product(tenant: String, id: String) async throws -> Product? {
        let rows = try await client.query(
            PostgresQuery(
                unsafeSQL: "SELECT \(Self.columns) FROM products WHERE tenant = $1 AND id = $2 AND NOT deleted",
                binds: Self.binds([tenant, id])),
            logger: logger)
        return try await Self.products(rows).first
    }

    func list(tenant: String, query: ProductQuery) async throws -> ProductPage {
        var sql = "SELECT \(Self.columns) FROM products WHERE tenant = $1 AND NOT deleted"
        var binds = PostgresBindings()
        binds.append(tenant)
        func parameter(_ value: some PostgresThrowingDynamicTypeEncodable) throws -> String {
            try binds.append(value)
            return "$\(binds.count)"
        }
        var descending = false
        switch query.cursor {
        case .startingAfter(let id): sql += " AND id > \(try parameter(id))"
        case .endingBefore(let id):
            sql += " AND id < \(try parameter(id))"
            descending = true
        case nil: break
        }
        if let type = query.type { sql += " AND type = \(try parameter(type))" }
        if let active = query.active { sql += active ? " AND active" : " AND NOT active" }
        if let ids = query.ids { sql += " AND id = ANY(\(try parameter(ids)))" }
        for (comparison, bound) in [(">=", query.createdGTE), (">", query.createdGT), ("<=", query.createdLTE), ("<", query.createdLT)] {
            if let bound { sql += " AND created_ms \(comparison) \(try parameter(bound))" }
        }
        if let search = query.foldedSearch { sql += " AND strpos(name_folded, \(try parameter(search))) > 0" }
        sql += descending ? " ORDER BY id DESC" : " ORDER BY id"
        sql += " LIMIT \(try parameter(query.limit + 1))"
        var products = try await Self.products(try await client.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger))
        let hasMore = products.count > query.limit
        if hasMore { products.removeLast() }
        if descending { products.reverse() }
        return ProductPage(products: products, hasMore: hasMore)
    }

    func ping() async throws {
        try await client.query("SELECT 1", logger: logger)
    }

    private static func binds(_ values: [String]) -> PostgresBindings {
        var binds = PostgresBindings()
        for value in values { binds.append(value) }
        return binds
    }

    private static func products(_ rows: PostgresRowSequence) async throws -> [Product] {
        var products: [Product] = []
        for try await (id, name, type, metadata, createdAt, updatedAt, version, description, images, active) in rows.decode(
            (String, String, String, String, String, String, Int64, String?, String, Bool).self)
        {
            products.append(Product(
                id: id, name: name, type: type, description: description, images: try [String](jsonArray: images), active: active,
                metadata: try [String: String](jsonObject: metadata),
                createdAt: createdAt, updatedAt: updatedAt, version: version))
        }
        return products
    }

    // MARK: API keys

    func createKey(tenant: String, scope: KeyGrant.Scope) async throws -> (grant: KeyGrant, key: String) {
        let key = APIKey.generate()
        let grant = KeyGrant(id: APIKey.generateID(), tenant: tenant, scope: scope)
        try await client.query(
            """
            INSERT INTO api_keys (id, tenant, scope, key_hash, created_at)
            VALUES (\(grant.id), \(tenant), \(scope.rawValue), \(APIKey.hash(key)), \(Timestamp.now()))
            """, logger: logger)
        return (grant, key)
    }

    func keys() async throws -> [APIKeyRecord] {
        var records: [APIKeyRecord] = []
        let rows = try await client.query(
            "SELECT id, tenant, scope, created_at, last_used_at, revoked_at FROM api_keys ORDER BY created_at, id", logger: logger)
        for try await (id, tenant, scope, createdAt, lastUsedAt, revokedAt) in rows.decode(
            (String, String, String, String, String?, String?).self)
        {
            records.append(APIKeyRecord(
                id: id, tenant: tenant, scope: KeyGrant.Scope(rawValue: scope) ?? .readOnly, createdAt: createdAt,
                lastUsedAt: lastUsedAt, revokedAt: revokedAt))
        }
        return records
    }

    func revokeKey(id: String) async throws -> Bool {
        let rows = try await client.query(
            "UPDATE api_keys SET revoked_at = \(Timestamp.now()) WHERE id = \(id) AND revoked_at IS NULL RETURNING id", logger: logger)
        for try await _ in rows.decode(String.self) { return true }
        return false
    }

    func verifyKey(hash: String) async throws -> KeyGrant? {
        let rows = try await client.query(
            """
            UPDATE api_keys SET last_used_at = \(Timestamp.now()) WHERE key_hash = \(hash) AND revoked_at IS NULL
            RETURNING id, tenant, scope
            """, logger: logger)
        for try await (id, tenant, scope) in rows.decode((String, String, String).self) {
            return KeyGrant(id: id, tenant: tenant, scope: KeyGrant.Scope(rawValue: scope) ?? .readOnly)
        }
        return nil
    }

    func activeKeyCount() async throws -> Int {
        let rows = try await client.query("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL", logger: logger)
        for try await count in rows.decode(Int64.self) { return Int(count) }
        return 0
    }

    func tenants() async throws -> [String] {
        var tenants: [String] = []
        let rows = try await client.query(
            """
            SELECT DISTINCT tenant FROM products WHERE NOT deleted
            UNION SELECT tenant FROM api_keys WHERE revoked_at IS NULL
            ORDER BY 1
            """, logger: logger)
        for try await tenant in rows.decode(String.self) { tenants.append(tenant) }
        return tenants
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
