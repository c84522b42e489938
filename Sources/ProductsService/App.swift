import ArgumentParser
import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import Shared

#if canImport(Glibc)
import Glibc
#endif

/// The `products-service` executable: the public Products API.
@main
struct ProductsServiceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "products-service",
        abstract: "The public Products API: an in-memory catalog with a durable write-behind journal.")

    @Option(help: "Address to listen on (env HOST).")
    var host: String = Settings.env("HOST", default: "127.0.0.1")

    @Option(help: "Port to listen on; 0 picks a free one (env PORT).")
    var port: Int = Settings.env("PORT", default: 8080)

    @Option(help: "Base URL of the Database Service (env DATABASE_SERVICE_URL).")
    var databaseServiceURL: String = Settings.env("DATABASE_SERVICE_URL", default: "http://127.0.0.1:8081")

    @Option(help: "Directory for the journal and dead letters (env DATA_DIR).")
    var dataDir: String = Settings.env("DATA_DIR", default: "./data/products")

    @Option(help: "on: writes are durable before they are acknowledged; off: memory only (env JOURNAL).")
    var journal: JournalMode = Settings.env("JOURNAL", default: .on)

    @Option(help: "Most writes sent to the Database Service in one batch (env BATCH_SIZE).")
    var batchSize: Int = Settings.env("BATCH_SIZE", default: 256)

    @Option(help: "Seconds a graceful shutdown keeps flushing pending writes (env SHUTDOWN_TIMEOUT).")
    var shutdownTimeout: Double = Settings.env("SHUTDOWN_TIMEOUT", default: 10)

    @Option(help: "First retry delay, in seconds, when the Database Service fails; doubles per failure (env RETRY_BASE_DELAY).")
    var retryBaseDelay: Double = Settings.env("RETRY_BASE_DELAY", default: 0.1)

    @Option(help: "Longest retry delay, in seconds, when the Database Service fails (env RETRY_MAX_DELAY).")
    var retryMaxDelay: Double = Settings.env("RETRY_MAX_DELAY", default: 5)

    @Option(help: "Seconds POST /cache/sync waits for pending writes to be flushed (env SYNC_TIMEOUT).")
    var syncTimeout: Double = Settings.env("SYNC_TIMEOUT", default: 10)

    @Option(help: "Seconds after which an unpersisted write makes /health report degraded (env BACKLOG_ALERT_AFTER).")
    var backlogAlertAfter: Double = Settings.env("BACKLOG_ALERT_AFTER", default: 60)

    @Option(help: "Seconds behind the Database Service's change feed after which /health reports degraded (env FEED_LAG_ALERT_AFTER).")
    var feedLagAlertAfter: Double = Settings.env("FEED_LAG_ALERT_AFTER", default: 10)

    @OptionGroup var connections: ConnectionOptions

    @Option(help: "Secret sent to the Database Service on every call; must match its own (env SERVICE_TOKEN).")
    var serviceToken: String = Settings.env("SERVICE_TOKEN", default: "")

    @Option(help: "File holding the service token, such as a Docker secret; wins over --service-token (env SERVICE_TOKEN_FILE).")
    var serviceTokenFile: String = Settings.env("SERVICE_TOKEN_FILE", default: "")

    @Flag(
        inversion: .prefixedNo,
        help: "Refuse requests without an API key even while none exists, and while that cannot be checked (env REQUIRE_API_KEYS).")
    var requireAPIKeys: Bool = Settings.env("REQUIRE_API_KEYS", default: false)

    @Option(
        help: """
            Seconds a key verified before still works while the Database Service cannot be asked: writes go on during \
            an outage this long, and a key revoked meanwhile works this long at most (env KEY_OUTAGE_TRUST).
            """)
    var keyOutageTrust: Double = Settings.env("KEY_OUTAGE_TRUST", default: 10)

    @Option(help: "Requests a second allowed per API key on average; 0 turns the limit off (env RATE_LIMIT).")
    var rateLimit: Double = Settings.env("RATE_LIMIT", default: 100)

    @Option(help: "Requests an API key may send in a burst above its rate (env RATE_BURST).")
    var rateBurst: Int = Settings.env("RATE_BURST", default: 200)

    @Option(help: "Comma-separated browser origins allowed by CORS; empty: * while no API key exists, none after (env CORS_ORIGINS).")
    var corsOrigins: String = Settings.env("CORS_ORIGINS", default: "")

    @Option(help: "Most memory the product cache may take, by its own estimate: bytes, or with KiB, MiB or GiB; 0: no limit. Least recently used shops are evicted past it (env CACHE_BUDGET).")
    var cacheBudget: String = Settings.env("CACHE_BUDGET", default: "0")

    @Option(
        help: """
            Seconds a tombstone of a deleted product is kept, so that no older state fetched meanwhile shows it again; \
            a replica's own unconfirmed deletes are kept until confirmed (env TOMBSTONE_RETENTION).
            """)
    var tombstoneRetention: Double = Settings.env("TOMBSTONE_RETENTION", default: 600)

    @Option(help: "Most a shop's tombstones may take: bytes, or with KiB, MiB or GiB; past it the oldest go early (env TOMBSTONE_BUDGET).")
    var tombstoneBudget: String = Settings.env("TOMBSTONE_BUDGET", default: "16MiB")

    @Option(help: "Most this replica's kept Idempotency-Key answers may take: bytes, or with KiB, MiB or GiB; past it the oldest go (env IDEMPOTENCY_BUDGET).")
    var idempotencyBudget: String = Settings.env("IDEMPOTENCY_BUDGET", default: "64MiB")

    @Option(help: "Most this replica's remembered API key verifications may take, four fifths for working keys and one for unknown ones: bytes, or with KiB, MiB or GiB (env KEY_CACHE_BUDGET).")
    var keyCacheBudget: String = Settings.env("KEY_CACHE_BUDGET", default: "5MiB")

    @Option(help: "Most a backlog of writes not yet confirmed by the Database Service may hold in memory; the rest waits in the journal on disk: bytes, or with KiB, MiB or GiB (env JOURNAL_MEMORY).")
    var journalMemory: String = Settings.env("JOURNAL_MEMORY", default: "64MiB")

    @Option(help: "trace, debug, info, notice, warning, error or critical (env LOG_LEVEL).")
    var logLevel: Logger.Level = Settings.env("LOG_LEVEL", default: .info)

    @Option(help: "text, or json: one JSON object per line (env LOG_FORMAT).")
    var logFormat: LogFormat = Settings.env("LOG_FORMAT", default: .text)

    enum JournalMode: String, ExpressibleByArgument, CaseIterable {
        case on, off
    }

    /// A size in bytes: digits, optionally followed by KiB, MiB or GiB; nil when it is not one.
    static func bytes(_ text: String) -> Int? {
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("", 1)]
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        for (suffix, scale) in units where trimmed.hasSuffix(suffix) {
            let digits = trimmed.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)
            guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber), let value = Int(digits) else { return nil }
            let (bytes, overflow) = value.multipliedReportingOverflow(by: scale)
            return overflow ? nil : bytes
        }
        return nil
    }

    func run() async throws {
        try Settings.validatePort(port)
        guard let url = URL(string: databaseServiceURL), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
            throw SettingError("--database-service-url (DATABASE_SERVICE_URL): '\(databaseServiceURL)' is not an http(s) URL")
        }
        guard (1...PersistenceSettings.maxBatchSize).contains(batchSize) else {
            throw SettingError("--batch-size (BATCH_SIZE): must be 1 to \(PersistenceSettings.maxBatchSize)")
        }
        let durations = [
            ("--shutdown-timeout (SHUTDOWN_TIMEOUT)", shutdownTimeout), ("--retry-base-delay (RETRY_BASE_DELAY)", retryBaseDelay),
            ("--retry-max-delay (RETRY_MAX_DELAY)", retryMaxDelay), ("--sync-timeout (SYNC_TIMEOUT)", syncTimeout),
            ("--backlog-alert-after (BACKLOG_ALERT_AFTER)", backlogAlertAfter),
            ("--feed-lag-alert-after (FEED_LAG_ALERT_AFTER)", feedLagAlertAfter),
            ("--tombstone-retention (TOMBSTONE_RETENTION)", tombstoneRetention),
        ]
        for (name, value) in durations where !(value > 0 && value < 86_400) {
            throw SettingError("\(name): must be a number of seconds above 0")
        }
        guard keyOutageTrust >= 5, keyOutageTrust <= 86_400 else {
            throw SettingError("--key-outage-trust (KEY_OUTAGE_TRUST): must be 5 to 86400 seconds (a verification is reused for 5 s)")
        }
        guard rateLimit >= 0, rateLimit.isFinite else { throw SettingError("--rate-limit (RATE_LIMIT): must be 0 or more requests a second") }
        guard rateBurst >= 1 else { throw SettingError("--rate-burst (RATE_BURST): must be at least 1") }
        let origins = corsOrigins.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for origin in origins where origin != "*" {
            guard let url = URL(string: origin), ["http", "https"].contains(url.scheme ?? ""), url.host != nil, url.path.isEmpty else {
                throw SettingError("--cors-origins (CORS_ORIGINS): '\(origin)' is not an origin such as https://shop.example.com")
            }
        }
        guard let budget = Self.bytes(cacheBudget) else {
            throw SettingError("--cache-budget (CACHE_BUDGET): '\(cacheBudget)' is not a size such as 536870912, 512MiB or 2GiB")
        }
        guard let tombstoneBytes = Self.bytes(tombstoneBudget), tombstoneBytes >= 1 << 20 else {
            throw SettingError("--tombstone-budget (TOMBSTONE_BUDGET): '\(tombstoneBudget)' is not a size of at least 1MiB, such as 16MiB")
        }
        guard let idempotencyBytes = Self.bytes(idempotencyBudget), idempotencyBytes >= 1 << 20 else {
            throw SettingError("--idempotency-budget (IDEMPOTENCY_BUDGET): '\(idempotencyBudget)' is not a size of at least 1MiB, such as 64MiB")
        }
        guard let keyCacheBytes = Self.bytes(keyCacheBudget), keyCacheBytes >= 64 << 10 else {
            throw SettingError("--key-cache-budget (KEY_CACHE_BUDGET): '\(keyCacheBudget)' is not a size of at least 64KiB, such as 5MiB")
        }
        guard let journalMemoryBytes = Self.bytes(journalMemory), journalMemoryBytes >= 1 << 20 else {
            throw SettingError("--journal-memory (JOURNAL_MEMORY): '\(journalMemory)' is not a size of at least 1MiB, such as 64MiB")
        }
        let token = try Settings.secret(serviceToken, file: serviceTokenFile, name: "service-token")
        try DataDirectory.claim(dataDir)
        LoggingSetup.bootstrap(level: logLevel, format: logFormat, secrets: token.map { [$0] } ?? [])

        var settings = ProductsServiceSettings(
            host: host, port: port, databaseServiceURL: databaseServiceURL, dataDirectory: dataDir,
            journalEnabled: journal == .on, logLevel: logLevel)
        settings.persistence.batchSize = batchSize
        settings.cacheBudget = budget > 0 ? budget : nil
        settings.persistence.shutdownFlushTimeout = .seconds(shutdownTimeout)
        settings.persistence.retryBaseDelay = .seconds(retryBaseDelay)
        settings.persistence.retryMaxDelay = .seconds(max(retryMaxDelay, retryBaseDelay))
        settings.syncFlushTimeout = .seconds(syncTimeout)
        settings.backlogAlertAfter = .seconds(backlogAlertAfter)
        settings.feedLagAlertAfter = .seconds(feedLagAlertAfter)
        settings.serviceToken = token
        settings.connections = try connections.limits()
        settings.requireAPIKeys = requireAPIKeys
        settings.keyOutageTrust = .seconds(keyOutageTrust)
        settings.rateLimit = rateLimit
        settings.rateBurst = rateBurst
        settings.corsOrigins = origins
        settings.idempotencyBytes = idempotencyBytes
        settings.keyCacheBytes = keyCacheBytes
        settings.journalMemoryBytes = journalMemoryBytes
        settings.shopLimits = ShopState.Limits(tombstoneRetention: .seconds(tombstoneRetention), tombstoneBytes: tombstoneBytes)

        var clientConfiguration = HTTPClient.Configuration()
        clientConfiguration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 16)
        clientConfiguration.timeout = .init(connect: .seconds(2))
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
        let database = HTTPDatabaseServiceClient(http: http, baseURL: databaseServiceURL, serviceToken: token)
        let started = StartupFlag()
        let maxConnections = settings.connections.maxConnections
        let address = "\(host):\(port)"
        let app: any ApplicationProtocol
        do {
            app = try buildApplication(settings: settings, database: database, services: [HTTPClientCloser(client: http)]) { channel in
                started.set()
                Logger(label: "products-service").notice(
                    "listening",
                    metadata: [
                        "address": "\(channel.localAddress.flatMap { $0.port.map { "\(host):\($0)" } } ?? address)",
                        "database_service": "\(databaseServiceURL)", "journal": "\(journal.rawValue)",
                        "max_connections": "\(maxConnections)",
                    ])
            }
        } catch {
            try await http.shutdown()
            throw SettingError("--data-dir (DATA_DIR): cannot open the journal in \(dataDir): \(error)")
        }
        do {
            try await app.runService()
        } catch where !started.isSet {
            try? await http.shutdown()
            throw SettingError("--host/--port (HOST/PORT): cannot listen on \(host):\(port): \(error)")
        }
    }
}

/// The data directory: created if needed, checked writable, and locked for this process alone.
enum DataDirectory {
    /// Held for the life of the process; the kernel releases the lock when it exits, however it exits.
    nonisolated(unsafe) private static var lockDescriptor: Int32 = -1

    static func claim(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw SettingError("--data-dir (DATA_DIR): cannot create \(path): \(error.localizedDescription)")
        }
        let descriptor = open(path + "/LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw SettingError("--data-dir (DATA_DIR): \(path) is not writable: \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw SettingError("--data-dir (DATA_DIR): \(path) is in use by another products-service process")
        }
        lockDescriptor = descriptor
    }
}
