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

    /// Named migrations, applied once, in order, under an advisory lock (processes may start together).
    static let migrations: [(name: String, sql: [String])] = [
        ("v1-products", [
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
                PRIMARY KEY (tenant, id)
            )
            """,
        ]),
        ("v2-api-keys", [APIKeySchema.createTable]),
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
        let rows = try await client.query("SELECT name FROM schema_migrations ORDER BY name DESC LIMIT 1", logger: logger)
        for try await name in rows.decode(String.self) { return name }
        return nil
    }

    var poolDescription: String { "up to \(maximumConnections) connections" }

    // MARK: Products

    func apply(_ operations: [WriteOperation]) async throws -> [ApplyOutcome] {
        // Rows are locked in key order, so concurrent batches over the same products cannot deadlock;
        // the outcomes go back in the batch's order. (Stable: a product's operations keep their order.)
        let order = operations.indices.sorted { left, right in
            let (a, b) = (operations[left], operations[right])
            return (a.tenant, a.productID, left) < (b.tenant, b.productID, right)
        }
        return try await retryingConflicts {
            try await self.client.withTransaction(logger: self.logger) { connection in
                var outcomes = [ApplyOutcome?](repeating: nil, count: operations.count)
                for index in order { outcomes[index] = try await self.store(operations[index], on: connection) }
                return outcomes.map { $0! }
            }
        }
    }

    /// Runs a transaction again when PostgreSQL aborts it for a deadlock or a serialization failure.
    private func retryingConflicts<T: Sendable>(_ transaction: () async throws -> T) async throws -> T {
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
            rows = try await connection.query(
                """
                INSERT INTO products (tenant, id, name, name_folded, type, metadata, created_at, created_ms, updated_at, version, deleted)
                VALUES (\(tenant), \(product.id), \(product.name), \(ProductQuery.fold(product.name)), \(product.type),
                        \(String(buffer: metadata)), \(product.createdAt), \(Timestamp.epochMilliseconds(product.createdAt)),
                        \(product.updatedAt), \(product.version), FALSE)
                ON CONFLICT (tenant, id) DO UPDATE SET
                    name = EXCLUDED.name, name_folded = EXCLUDED.name_folded, type = EXCLUDED.type, metadata = EXCLUDED.metadata,
                    created_at = EXCLUDED.created_at, created_ms = EXCLUDED.created_ms, updated_at = EXCLUDED.updated_at,
                    version = EXCLUDED.version, deleted = FALSE
                WHERE products.version < EXCLUDED.version
                RETURNING (xmax = 0)
                """, logger: logger)
        case .delete(let tenant, let id, let version, let deletedAt):
            rows = try await connection.query(
                """
                INSERT INTO products (tenant, id, name, name_folded, type, metadata, created_at, created_ms, updated_at, version, deleted)
                VALUES (\(tenant), \(id), '', '', '', '{}', \(deletedAt), NULL, \(deletedAt), \(version), TRUE)
                ON CONFLICT (tenant, id) DO UPDATE SET updated_at = EXCLUDED.updated_at, version = EXCLUDED.version, deleted = TRUE
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

    func delete(tenant: String, id: String, version: Int64?, deletedAt: String) async throws -> DeleteOutcome {
        try await client.withTransaction(logger: logger) { connection in
            let rows = try await connection.query(
                "SELECT version, deleted, name FROM products WHERE tenant = \(tenant) AND id = \(id) FOR UPDATE", logger: self.logger)
            var stored: (version: Int64, deleted: Bool, name: String)?
            for try await row in rows.decode((Int64, Bool, String).self) { stored = row }
            guard let stored, !stored.deleted else { return .notFound }
            let newVersion = version ?? stored.version + 1
            guard newVersion > stored.version else { return .stale(storedVersion: stored.version) }
            try await connection.query(
                """
                UPDATE products SET updated_at = \(deletedAt), version = \(newVersion), deleted = TRUE
                WHERE tenant = \(tenant) AND id = \(id)
                """, logger: self.logger)
            return .deleted(version: newVersion, name: stored.name)
        }
    }

    private static let columns = "id, name, type, metadata, created_at, updated_at, version"

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
        for try await (id, name, type, metadata, createdAt, updatedAt, version) in rows.decode(
            (String, String, String, String, String, String, Int64).self)
        {
            products.append(Product(
                id: id, name: name, type: type,
                metadata: try JSONCoding.decoder.decode([String: String].self, from: Data(metadata.utf8)),
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
