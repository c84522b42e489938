import ArgumentParser
import Foundation
import Hummingbird
import Logging
import Shared

/// The `database-service` executable: serves the product store (the default subcommand).
@main
struct DatabaseServiceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "database-service",
        abstract: "Owns the product data: SQLite (embedded default) behind an internal HTTP API.",
        subcommands: [Serve.self, Keys.self],
        defaultSubcommand: Serve.self
    )
}

/// The storage a command works on.
struct StorageOptions: ParsableArguments {
    @Option(help: """
        A SQLite file path, or a libpq-style postgres://user:password@host:port[,host:port...]/database URL with \
        sslmode=disable|prefer|require, target_session_attrs=any|read-write|read-only|primary|standby|prefer-standby \
        and connect_timeout (env DATABASE).
        """)
    var database: String = Settings.env("DATABASE", default: "./data/db/products.sqlite")

    @Option(help: "File holding the PostgreSQL password, such as a Docker secret; wins over the URL's (env DATABASE_PASSWORD_FILE).")
    var databasePasswordFile: String = Settings.env("DATABASE_PASSWORD_FILE", default: "")

    @Option(help: "Most PostgreSQL connections this process opens (env DATABASE_POOL_SIZE).")
    var databasePoolSize: Int = Settings.env("DATABASE_POOL_SIZE", default: 20)

    var isPostgres: Bool { database.hasPrefix("postgres://") || database.hasPrefix("postgresql://") }

    /// The PostgreSQL password (from `--database-password-file`, else the URL's), so that logs can redact it.
    var databasePassword: String? {
        guard isPostgres else { return nil }
        return (try? filePassword()) ?? (try? PostgresTarget(database))?.password
    }

    /// The password in `--database-password-file`, when one is given.
    func filePassword() throws -> String? {
        try Settings.secret("", file: databasePasswordFile, name: "database-password")
    }

    /// Opens the store and runs `body` with it: for PostgreSQL, with the connection pool running and the
    /// migrations applied; for SQLite, on the file (created if needed, migrated).
    func withStore<T: Sendable>(
        logger: Logger = Logger(label: "database-service"), _ body: @escaping @Sendable (any DataStore) async throws -> T
    ) async throws -> T {
        guard isPostgres else { return try await body(try openSQLite()) }
        guard (1...1000).contains(databasePoolSize) else { throw SettingError("--database-pool-size (DATABASE_POOL_SIZE): must be 1 to 1000") }
        let store = try PostgresStore(url: database, password: try filePassword(), logger: logger, maximumConnections: databasePoolSize)
        return try await store.run {
            do {
                try await withDeadline(.seconds(15)) {
                    try await store.checkConnection()
                    try await store.migrate()
                }
            } catch {
                let reason = String(reflecting: error).split(whereSeparator: \.isNewline).joined(separator: " ")
                throw SettingError("--database (DATABASE): cannot use PostgreSQL at \(PostgresTarget.redacted(database)): \(reason)")
            }
            return try await body(store)
        }
    }

    func openSQLite() throws -> SQLiteStore {
        let directory = URL(fileURLWithPath: database).deletingLastPathComponent().path
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            return try SQLiteStore(path: database)
        } catch {
            throw SettingError("--database (DATABASE): cannot open SQLite database at \(database): \(error)")
        }
    }
}

/// `database-service serve`: runs the HTTP server.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the Database Service.")

    @Option(help: "Address to listen on (env HOST).")
    var host: String = Settings.env("HOST", default: "127.0.0.1")

    @Option(help: "Port to listen on; 0 picks a free one (env PORT).")
    var port: Int = Settings.env("PORT", default: 8081)

    @OptionGroup var storage: StorageOptions

    @OptionGroup var connections: ConnectionOptions

    @Option(help: "Secret every /api call must carry as 'Authorization: Bearer <token>'; empty: none (env SERVICE_TOKEN).")
    var serviceToken: String = Settings.env("SERVICE_TOKEN", default: "")

    @Option(help: "File holding the service token, such as a Docker secret; wins over --service-token (env SERVICE_TOKEN_FILE).")
    var serviceTokenFile: String = Settings.env("SERVICE_TOKEN_FILE", default: "")

    @Option(help: "Seconds the change log keeps a change, for replicas and events to catch up from, and the store a tombstone (env CHANGE_RETENTION).")
    var changeRetention: Double = Settings.env("CHANGE_RETENTION", default: 30 * 24 * 3600)

    @Option(help: "Seconds between purges of changes past retention (env CHANGE_PURGE_INTERVAL).")
    var changePurgeInterval: Double = Settings.env("CHANGE_PURGE_INTERVAL", default: 60)

    @Option(help: "Seconds to wait after each failed webhook try, comma-separated; its length is the number of retries (env WEBHOOK_RETRY_SCHEDULE).")
    var webhookRetrySchedule: String = Settings.env("WEBHOOK_RETRY_SCHEDULE", default: WebhookRetrySchedule.standard.description)

    @Flag(
        inversion: .prefixedNo,
        help: "Let webhook endpoints target loopback, private and link-local addresses: tests and local development only (env WEBHOOK_ALLOW_PRIVATE=1).")
    var webhookAllowPrivate: Bool = Settings.envFlag("WEBHOOK_ALLOW_PRIVATE", default: false)

    @Flag(
        inversion: .prefixedNo,
        help: "Fan events out to webhook endpoints and deliver them from this process; other processes over the same PostgreSQL share the work (env WEBHOOK_DELIVERY).")
    var webhookDelivery: Bool = Settings.envFlag("WEBHOOK_DELIVERY", default: true)

    @Option(help: "Seconds a webhook try may take before it counts as failed (env WEBHOOK_TIMEOUT).")
    var webhookTimeout: Int = Settings.env("WEBHOOK_TIMEOUT", default: 10)

    @Option(help: "Tries in flight to one webhook endpoint from this process (env WEBHOOK_CONCURRENCY).")
    var webhookConcurrency: Int = Settings.env("WEBHOOK_CONCURRENCY", default: 16)

    @Option(help: "Seconds of nothing but failed tries after which a webhook endpoint is disabled (env WEBHOOK_DISABLE_AFTER).")
    var webhookDisableAfter: Int = Settings.env("WEBHOOK_DISABLE_AFTER", default: 5 * 24 * 3600)

    @Option(help: "trace, debug, info, notice, warning, error or critical (env LOG_LEVEL).")
    var logLevel: Logger.Level = Settings.env("LOG_LEVEL", default: .info)

    @Option(help: "text, or json: one JSON object per line (env LOG_FORMAT).")
    var logFormat: LogFormat = Settings.env("LOG_FORMAT", default: .text)

    func run() async throws {
        try Settings.validatePort(port)
        guard changeRetention.isFinite, changeRetention >= 1 else { throw SettingError("--change-retention (CHANGE_RETENTION): must be at least 1 second") }
        guard changePurgeInterval.isFinite, changePurgeInterval >= 0.1, changePurgeInterval <= 86400 else {
            throw SettingError("--change-purge-interval (CHANGE_PURGE_INTERVAL): must be 0.1 to 86400 seconds")
        }
        guard let retrySchedule = WebhookRetrySchedule(webhookRetrySchedule) else {
            throw SettingError("--webhook-retry-schedule (WEBHOOK_RETRY_SCHEDULE): '\(webhookRetrySchedule)' is not up to 20 comma-separated seconds, each 0 to 2592000")
        }
        guard (1...120).contains(webhookTimeout) else { throw SettingError("--webhook-timeout (WEBHOOK_TIMEOUT): must be 1 to 120 seconds") }
        guard (1...64).contains(webhookConcurrency) else { throw SettingError("--webhook-concurrency (WEBHOOK_CONCURRENCY): must be 1 to 64") }
        guard webhookDisableAfter >= 1 else { throw SettingError("--webhook-disable-after (WEBHOOK_DISABLE_AFTER): must be at least 1 second") }
        let limits = try connections.limits()
        let token = try Settings.secret(serviceToken, file: serviceTokenFile, name: "service-token")
        LoggingSetup.bootstrap(level: logLevel, format: logFormat, secrets: [token, storage.databasePassword].compactMap { $0 })
        try await storage.withStore { store in try await serve(store, token: token, connections: limits) }
    }

    private func serve(_ store: any DataStore, token: String?, connections: ConnectionLimits) async throws {
        let settings = DatabaseServiceSettings(
            host: host, port: port, logLevel: logLevel, connections: connections, serviceToken: token, changeRetention: .seconds(changeRetention),
            changePurgeInterval: .seconds(changePurgeInterval),
            webhooks: WebhookSettings(
                retrySchedule: WebhookRetrySchedule(webhookRetrySchedule) ?? .standard, timeout: .seconds(webhookTimeout),
                allowPrivateTargets: webhookAllowPrivate, concurrencyPerEndpoint: webhookConcurrency,
                disableAfter: .seconds(webhookDisableAfter), enabled: webhookDelivery))
        let started = StartupFlag()
        let app = try buildApplication(settings: settings, store: store) { channel in
            started.set()
            let logger = Logger(label: "database-service")
            logger.notice(
                "listening",
                metadata: [
                    "address": "\(settings.host):\(channel.localAddress?.port ?? settings.port)", "backend": "\(store.backend)",
                    "pool": "\(store.poolDescription)", "max_connections": "\(settings.connections.maxConnections)",
                ])
            if token == nil {
                logger.warning("no service token: /api trusts any caller and its X-Tenant-ID; set --service-token (SERVICE_TOKEN) outside development")
            }
        }
        do {
            try await app.runService()
        } catch where !started.isSet {
            throw SettingError("--host/--port (HOST/PORT): cannot listen on \(host):\(port): \(error)")
        }
    }
}
