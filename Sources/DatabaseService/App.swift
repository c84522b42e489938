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
    @Option(help: "SQLite file path; postgres:// URLs are reserved for the PostgreSQL backend (env DATABASE).")
    var database: String = Settings.env("DATABASE", default: "./data/db/products.sqlite")

    func openStore() throws -> SQLiteProductStore {
        if database.hasPrefix("postgres://") || database.hasPrefix("postgresql://") {
            throw SettingError("--database (DATABASE): the PostgreSQL backend is not available yet; use a SQLite file path")
        }
        let directory = URL(fileURLWithPath: database).deletingLastPathComponent().path
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            return try SQLiteProductStore(path: database)
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

    @Option(help: "Secret every /api call must carry as 'Authorization: Bearer <token>'; empty: none (env SERVICE_TOKEN).")
    var serviceToken: String = Settings.env("SERVICE_TOKEN", default: "")

    @Option(help: "File holding the service token, such as a Docker secret; wins over --service-token (env SERVICE_TOKEN_FILE).")
    var serviceTokenFile: String = Settings.env("SERVICE_TOKEN_FILE", default: "")

    @Option(help: "trace, debug, info, notice, warning, error or critical (env LOG_LEVEL).")
    var logLevel: Logger.Level = Settings.env("LOG_LEVEL", default: .info)

    func run() async throws {
        try Settings.validatePort(port)
        let token = try Settings.secret(serviceToken, file: serviceTokenFile, name: "service-token")
        LoggingSetup.bootstrap(level: logLevel, secrets: token.map { [$0] } ?? [])
        let store = try storage.openStore()
        let settings = DatabaseServiceSettings(host: host, port: port, logLevel: logLevel, serviceToken: token)

        let started = StartupFlag()
        let app = try buildApplication(settings: settings, store: store) { channel in
            started.set()
            let logger = Logger(label: "database-service")
            logger.notice(
                "listening", metadata: ["address": "\(settings.host):\(channel.localAddress?.port ?? settings.port)", "backend": "\(store.backend)"])
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
