import Foundation
import Logging
import PostgresNIO
import Testing

@testable import DatabaseService
import Shared

/// The storage backends the store tests run on: SQLite always, PostgreSQL when `TEST_POSTGRES_URL` names a
/// server (`scripts/test` starts one; with `REQUIRE_POSTGRES=1` its absence fails the run).
enum StoreBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgresql

    var testDescription: String { rawValue }

    static var available: [StoreBackend] { TestPostgres.url == nil ? [.sqlite] : [.sqlite, .postgresql] }

    typealias Store = any DataStore
    typealias Reopen = @Sendable (@Sendable (Store) async throws -> Void) async throws -> Void

    /// Runs `body` on a fresh, empty store; `reopen` opens a second store on the same data.
    func withStore(_ body: @escaping @Sendable (Store, Reopen) async throws -> Void) async throws {
        switch self {
        case .sqlite:
            let (store, directory) = try makeStore()
            defer { try? FileManager.default.removeItem(at: directory) }
            let path = directory.appendingPathComponent("products.sqlite").path
            try await body(store) { use in try await use(try SQLiteStore(path: path)) }
        case .postgresql:
            let url = try await TestPostgres.createDatabase()
            let store = try PostgresStore(url: url, logger: TestPostgres.logger, maximumConnections: 4)
            try await store.run {
                try await store.migrate()
                try await body(store) { use in
                    let reopened = try PostgresStore(url: url, logger: TestPostgres.logger, maximumConnections: 2)
                    try await reopened.run {
                        try await reopened.migrate()
                        try await use(reopened)
                    }
                }
            }
            try await TestPostgres.dropDatabase(url)
        }
    }
}

/// The PostgreSQL server the tests use, and a fresh database per test.
enum TestPostgres {
    static let url = ProcessInfo.processInfo.environment["TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    static let required = ProcessInfo.processInfo.environment["REQUIRE_POSTGRES"] == "1"
    static let logger = Logger(label: "test-postgres")

    /// Creates an empty database on the test server; returns its URL.
    static func createDatabase() async throws -> String {
        let admin = try #require(url, "TEST_POSTGRES_URL is not set")
        let name = "products_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        try await administer(admin, "CREATE DATABASE \(name)")
        var components = try #require(URLComponents(string: admin))
        components.path = "/" + name
        return try #require(components.string)
    }

    static func dropDatabase(_ databaseURL: String) async throws {
        guard let admin = url, let name = URLComponents(string: databaseURL)?.path.dropFirst() else { return }
        try await administer(admin, "DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    private static func administer(_ admin: String, _ sql: String) async throws {
        let store = try PostgresStore(url: admin, logger: logger, maximumConnections: 1)
        _ = try await store.run { try await store.query(PostgresQuery(unsafeSQL: sql), logger: logger) }
    }
}
