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
        subcommands: [Serve.self],
        defaultSubcommand: Serve.self
    )
}

/// `database-service serve`: runs the HTTP server.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the Database Service.")

    @Option(help: "Address to listen on (env HOST).")
    var host: String = Settings.env("HOST", default: "127.0.0.1")

    @Option(help: "Port to listen on; 0 picks a free one (env PORT).")
    var port: Int = Settings.env("PORT", default: 8081)

    @Option(help: "SQLite file path; postgres:// URLs are reserved for the PostgreSQL backend (env DATABASE).")
    var database: String = Settings.env("DATABASE", default: "./data/db/products.sqlite")

    @Option(help: "trace, debug, info, notice, warning, error or critical (env LOG_LEVEL).")
    var logLevel: Logger.Level = Settings.env("LOG_LEVEL", default: .info)

    func run() async throws {
        try Settings.validatePort(port)
        LoggingSetup.bootstrap(level: logLevel)
        let store = try openStore()
        let settings = DatabaseServiceSettings(host: host, port: port, logLevel: logLevel)
        let started = StartupFlag()
        let app = try buildApplication(settings: settings, store: store) { channel in
            started.set()
            Logger(label: "database-service").notice(
                "listening", metadata: ["address": "\(settings.host):\(channel.localAddress?.port ?? settings.port)", "backend": "\(store.backend)"])
        }
        do {
            try await app.runService()
        } catch where !started.isSet {
            throw SettingError("--host/--port (HOST/PORT): cannot listen on \(host):\(port): \(error)")
        }
    }

    private func openStore() throws -> any ProductStore {
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
