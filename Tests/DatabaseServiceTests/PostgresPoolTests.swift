import Foundation
import PostgresNIO
import Synchronization
import Testing
import TestSupport

@testable import DatabaseService
import Shared

/// The pool's choice of server and its transactions, against the test server (the failover itself is in
/// IntegrationTests' FailoverTests, on a pg_auto_failover formation). A full parallel run on two cores has delayed
/// this process's first answer from the server past 12 s, so the choices here allow a minute.
@Suite("PostgreSQL pool: choosing a server, transactions on a connection that closes", .enabled(if: TestPostgres.url != nil))
struct PostgresPoolTests {
    /// The test server's URL with `hosts` in front of its own and `query` added.
    func url(before hosts: [String], _ query: String) throws -> String {
        let url = try #require(TestPostgres.url)
        let components = try #require(URLComponents(string: url))
        let own = "\(try #require(components.host)):\(components.port ?? 5432)"
        return "postgres://\(components.user ?? "postgres")@\((hosts + [own]).joined(separator: ","))\(components.path)?sslmode=disable&\(query)"
    }

    @Test("hosts are tried in order: one that refuses is passed over for the next that suits")
    func skipsDeadHost() async throws {
        let dead = try freeLoopbackPort()
        let store = try PostgresStore(url: try url(before: ["127.0.0.1:\(dead)"], "target_session_attrs=read-write&connect_timeout=60"), logger: TestPostgres.logger, maximumConnections: 2)
        try await store.run {
            // Connected first (a starved run has lost a first handshake); the claim is what follows.
            try await eventually("connected") { try await store.checkConnection(); return true }
            #expect(store.pool.currentHost?.port != dead)
            try await store.ping()
            // A transaction given up on cannot hold its locks for long.
            var timeout = ""
            for try await value in try await store.query("SHOW idle_in_transaction_session_timeout", logger: TestPostgres.logger).decode(String.self) { timeout = value }
            #expect(timeout == "15s")
        }
    }

    @Test("no host of the role asked for: start fails, naming each host and why")
    func noSuitableServer() async throws {
        let store = try PostgresStore(url: try url(before: [], "target_session_attrs=standby&connect_timeout=60"), logger: TestPostgres.logger, maximumConnections: 2)
        await #expect {
            try await store.run { try await withAbandonedDeadline(.seconds(150)) { try await store.checkConnection() } }
        } throws: { error in
            // The reason is "primary", or a timeout when a loaded machine delays the answer past connect_timeout.
            let host = "\(store.pool.target.hosts[0])"
            return "\(error)".contains("no server is standby") && "\(error)".contains(host + ": ")
        }
    }

    @Test("a transaction whose connection is closed under it ends with an error at once, never waits for ever")
    func closedUnderTransaction() async throws {
        let store = try PostgresStore(url: try url(before: [], "target_session_attrs=read-write&connect_timeout=60"), logger: TestPostgres.logger, maximumConnections: 3)
        try await store.run {
            // Connected first (a starved run once lost its first connection's handshake); the claim is what follows.
            try await eventually("connected") { try await store.checkConnection(); return true }
            let terminated = Mutex<ContinuousClock.Instant?>(nil)
            await #expect(throws: (any Error).self) {
                try await withAbandonedDeadline(.seconds(150)) {
                    try await store.transaction(logger: TestPostgres.logger) { connection in
                        var pid: Int32 = 0
                        for try await value in try await connection.query("SELECT pg_backend_pid()", logger: TestPostgres.logger).decode(Int32.self) { pid = value }
                        // Another session ends this one between two statements, as a server's shutdown does.
                        terminated.withLock { $0 = .now }
                        try await store.query("SELECT pg_terminate_backend(\(pid))", logger: TestPostgres.logger)
                        try await Task.sleep(for: .milliseconds(300))
                        try await connection.query("SELECT 1", logger: TestPostgres.logger)
                    }
                }
            }
            let since = try #require(terminated.withLock { $0 }).duration(to: .now)
            #expect(since < .seconds(60), "given up when the connection closed (\(since) after it was ended), not at the 150 s deadline")
            // The pool goes on with a fresh connection.
            try await store.ping()
        }
    }

    @Test("a statement written to a connection that has already closed ends with an error at once, never waits for ever")
    func statementOnClosedConnection() async throws {
        let store = try PostgresStore(url: try url(before: [], "target_session_attrs=read-write&connect_timeout=60"), logger: TestPostgres.logger, maximumConnections: 2)
        try await store.run {
            // Connected first (a starved run has lost a first handshake); the claim is what follows.
            try await eventually("connected") { try await store.checkConnection(); return true }
            let started = ContinuousClock.now
            await #expect(throws: PostgresUnavailable.self) {
                try await withAbandonedDeadline(.seconds(150)) {
                    try await store.pool.withConnection { connection in
                        try await connection.close()
                        // PostgresNIO 1.33 drops this write's failure: unwatched, it is never answered.
                        return try await connection.query("SELECT 1", logger: TestPostgres.logger).collect().count
                    }
                }
            }
            #expect(started.duration(to: .now) < .seconds(60), "given up when the connection closed, not at the 150 s deadline")
            try await store.ping()
        }
    }
}

private func freeLoopbackPort() throws -> Int {
    let socket = try #require(Optional(Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)))
    defer { close(socket) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}
