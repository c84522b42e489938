import Foundation
import Logging
import Metrics
import NIOCore
import PostgresNIO
import Shared
import Synchronization

/// The PostgresNIO pool of the server a `PostgresTarget` picks: the first host, in order, whose role suits. While in
/// use the server is asked its role every second (at once after a connection error or SQLSTATE 25006); a server that
/// no longer suits, such as a primary demoted to standby, or that stops answering twice in a row, is replaced by
/// choosing again. Requests made while choosing wait for the choice, up to `waitForServer`.
final class PostgresPool: Sendable {
    let target: PostgresTarget
    let maximumConnections: Int
    private let logger: Logger
    private let state = Mutex(State())
    /// How long a request waits for a server to be chosen before it fails as unavailable.
    let waitForServer: Duration

    private struct State {
        var client: PostgresClient?
        var leases = Leases()
        var host: PostgresTarget.Host?
        var lastError: String?
        var suspected = false
    }

    private static let replaced = Counter(label: "postgres_server_changes_total")

    init(target: PostgresTarget, maximumConnections: Int, logger: Logger, waitForServer: Duration = .seconds(10)) {
        self.target = target
        self.maximumConnections = maximumConnections
        self.logger = logger
        self.waitForServer = waitForServer
        if target.isSingleServer {
            let client = Self.makeClient(target.hosts[0], target: target, maximumConnections: maximumConnections, logger: logger)
            state.withLock { ($0.client, $0.host) = (client, target.hosts[0]) }
        }
    }

    /// The pool of the chosen server, waiting up to `waitForServer` while one is being chosen.
    func client() async throws -> PostgresClient {
        if let client = state.withLock({ $0.client }) { return client }
        let deadline = ContinuousClock.now + waitForServer
        while ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            if let client = state.withLock({ $0.client }) { return client }
        }
        throw PostgresUnavailable(reason: state.withLock { $0.lastError } ?? "no server chosen yet")
    }

    /// Runs `work` on a connection of the chosen server's pool, in a task of its own that is given up (503) as soon
    /// as the connection closes (`Leases.whileOpen`): PostgresNIO 1.33 never answers a statement written to a closed
    /// channel, so a statement on a server that went away could otherwise wait for ever. The connection is closed
    /// under `work` if its server is replaced meanwhile. With `finishing`, cancelling the caller leaves `work` to
    /// run to its end (a transaction, once begun, commits or rolls back); otherwise it cancels `work`.
    func withConnection<T: Sendable>(finishing: Bool = false, _ work: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            let (client, leases) = try await serving()
            var leased = false
            do {
                return try await client.withConnection { connection in
                    leased = true
                    guard leases.add(connection) else { throw PostgresUnavailable(reason: "the server in use was replaced") }
                    defer { leases.remove(connection) }
                    return try await leases.whileOpen(connection, finishing: finishing) { try await work(connection) }
                }
            } catch where !leased {
                // No connection from a pool shut down as its server was replaced: nothing was sent, so the next
                // server's pool may be tried once.
                guard attempt == 1 else { throw PostgresUnavailable(reason: "no connection to the server: \(error)") }
            }
        }
    }

    /// One statement and all its rows, on a watched connection (see `withConnection`).
    func query(_ query: PostgresQuery, logger: Logger) async throws -> FetchedRows {
        try await withConnection { connection in
            FetchedRows(rows: try await connection.query(query, logger: logger).collect())
        }
    }

    /// BEGIN, `body` and COMMIT on one watched connection (ROLLBACK when `body` throws), as PostgresNIO's
    /// `withTransaction` but given up as soon as its connection closes (see `withConnection`), and run to its end
    /// whatever happens to the caller. Errors are thrown as they are, not wrapped.
    func withTransaction<T: Sendable>(logger: Logger, _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await withConnection(finishing: true) { connection in
            try await connection.query("BEGIN", logger: logger)
            do {
                let value = try await body(connection)
                try await connection.query("COMMIT", logger: logger)
                return value
            } catch {
                // Never hand the connection back inside a transaction, holding its locks: roll back in a task of
                // its own (so no cancellation stops it), and close the connection if that fails.
                if !connection.isClosed {
                    let rolledBack = await Task { (try? await connection.query("ROLLBACK", logger: logger)) != nil }.value
                    if !rolledBack { try? await connection.close() }
                }
                throw error
            }
        }
    }

    /// The chosen server's pool and its connections in use, waiting up to `waitForServer` while one is being chosen.
    private func serving() async throws -> (PostgresClient, Leases) {
        _ = try await client()
        guard let serving = state.withLock({ state in state.client.map { ($0, state.leases) } }) else {
            throw PostgresUnavailable(reason: state.withLock { $0.lastError } ?? "no server chosen yet")
        }
        return serving
    }

    /// Waits until the first pass over the hosts has chosen a server, or throws why none suited. Each pass is
    /// bounded by `connect_timeout` and the role query's timeout per host.
    func firstChoice() async throws {
        while true {
            let (chosen, error) = state.withLock { ($0.client != nil, $0.lastError) }
            if chosen { return }
            if let error { throw PostgresUnavailable(reason: error) }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// The server in use, if one is chosen.
    var currentHost: PostgresTarget.Host? { state.withLock { $0.host } }

    /// Whether a server is chosen and in use now.
    var isServing: Bool { state.withLock { $0.client != nil } }

    /// Why the last choice or check failed.
    var lastError: String? { state.withLock { $0.lastError } }

    /// Looks at the server again at once when `error` says it may have gone away or stopped taking writes.
    func notice(_ error: any Error) {
        guard Self.suggestsAnotherServer(error) else { return }
        state.withLock { $0.suspected = true }
    }

    /// Whether `error` is PostgresNIO's connection pool refusing a lease (shut down, or its circuit breaker open),
    /// which `PostgresClient.withConnection` passes on as it is.
    static func isPoolRefusal(_ error: any Error) -> Bool {
        "\(type(of: error))" == "ConnectionPoolError"
    }

    static func suggestsAnotherServer(_ error: any Error) -> Bool {
        guard let error = error as? PSQLError else { return false }
        return suggestsAnotherServer(code: error.code, sqlState: error.serverInfo?[.sqlState])
    }

    /// By a failed statement's SQLSTATE, or the client's error code when the server sent none.
    static func suggestsAnotherServer(code: PSQLError.Code, sqlState: String?) -> Bool {
        if let sqlState {
            // read_only_sql_transaction, admin/crash shutdown, cannot_connect_now, connection exceptions.
            return sqlState == "25006" || sqlState.hasPrefix("57P") || sqlState.hasPrefix("08")
        }
        return [.connectionError, .serverClosedConnection, .uncleanShutdown, .poolClosed].contains(code)
    }

    /// Chooses a server, runs its pool, and replaces it whenever it stops suiting, until cancelled.
    func run() async {
        if target.isSingleServer, let client = state.withLock({ $0.client }) {
            // One server and any role: nothing to choose or watch; PostgresNIO reconnects by itself.
            await client.run()
            return
        }
        var running: (client: PostgresClient, task: Task<Void, Never>)?
        var retryDelay = Duration.milliseconds(250)
        while !Task.isCancelled {
            let host: PostgresTarget.Host
            do {
                host = try await choose()
            } catch {
                state.withLock { $0.lastError = (error as? PostgresUnavailable)?.reason ?? "\(error)" }
                logger.warning("no PostgreSQL server suits; trying the hosts again", metadata: ["error": "\(error)", "target_session_attrs": "\(target.sessionAttributes.rawValue)"])
                try? await Task.sleep(for: retryDelay)
                retryDelay = min(retryDelay * 2, .seconds(2))
                continue
            }
            retryDelay = .milliseconds(250)
            let client = Self.makeClient(host, target: target, maximumConnections: maximumConnections, logger: logger)
            running = (client, Task { await client.run() })
            let previous = state.withLock { state in
                defer { (state.client, state.leases, state.host, state.lastError, state.suspected) = (client, Leases(), host, nil, false) }
                return state.host
            }
            if let previous {
                Self.replaced.increment()
                logger.warning("PostgreSQL server replaced", metadata: ["from": "\(previous)", "to": "\(host)"])
            } else {
                logger.info("PostgreSQL server chosen", metadata: ["host": "\(host)", "target_session_attrs": "\(target.sessionAttributes.rawValue)"])
            }
            await watch(host: host)
            // Requests now wait for the next choice instead of queueing on a server that does not suit; those in
            // progress end with an error. The old pool ends in the background: the next choice does not wait for it.
            state.withLock { state in
                state.client = nil
                return state.leases
            }.closeAll()
            running?.task.cancel()
            running = nil
        }
        running?.task.cancel()
        await running?.task.value
    }

    /// Returns when the server in use no longer suits or stops answering, or when cancelled. Asks on a connection
    /// of its own, so that a pool waiting for connections cannot hold the check up.
    private func watch(host: PostgresTarget.Host) async {
        var connection: PostgresConnection?
        var failures = 0
        watching: while !Task.isCancelled {
            for _ in 0..<50 {
                if state.withLock({ $0.suspected }) { break }
                try? await Task.sleep(for: .milliseconds(20))
            }
            state.withLock { $0.suspected = false }
            if Task.isCancelled { break }
            do {
                let current = connection
                let (checked, role) = try await withAbandonedDeadline(target.connectTimeout + Self.answerTimeout) { [self] in
                    let connection: PostgresConnection
                    if let current { connection = current } else { connection = try await connect(host) }
                    return (connection, try await Self.role(of: connection, within: Self.answerTimeout, logger: logger))
                }
                connection = checked
                failures = 0
                if target.sessionAttributes.outgrown(by: role) {
                    logger.warning("PostgreSQL server no longer suits", metadata: ["host": "\(host)", "in_recovery": "\(role.inRecovery)", "read_only": "\(role.readOnly)"])
                    state.withLock { $0.lastError = "\(host) is \(role.inRecovery ? "a standby" : "read-only") now" }
                    break watching
                }
            } catch {
                if let connection { try? await connection.close() }
                connection = nil
                failures += 1
                state.withLock { $0.lastError = "\(host): \(error)" }
                if failures >= 2 {
                    logger.warning("PostgreSQL server stopped answering", metadata: ["host": "\(host)", "error": "\(error)"])
                    break watching
                }
                state.withLock { $0.suspected = true }
            }
        }
        if let connection { try? await connection.close() }
    }

    /// How long a server has to answer the role query.
    private static var answerTimeout: Duration { .seconds(2) }

    /// The first host, in order, whose server suits; `prefer-standby` goes over them twice, for a standby and then any.
    func choose() async throws -> PostgresTarget.Host {
        var reasons: [String] = []
        for firstPass in target.sessionAttributes == .preferStandby ? [true, false] : [false] {
            for host in target.hosts {
                do {
                    let role = try await probe(host)
                    if target.sessionAttributes.accepts(role, firstPass: firstPass) { return host }
                    if firstPass { continue }
                    reasons.append("\(host): \(role.inRecovery ? "standby" : role.readOnly ? "read-only" : "primary")")
                } catch {
                    reasons.append("\(host): \(String(reflecting: error).split(whereSeparator: \.isNewline).joined(separator: " "))")
                }
            }
        }
        throw PostgresUnavailable(reason: "no server is \(target.sessionAttributes.rawValue) (\(reasons.joined(separator: "; ")))")
    }

    /// One direct connection to `host`: its server's role. Bounded by the URL's `connect_timeout` and `answerTimeout`.
    func probe(_ host: PostgresTarget.Host) async throws -> PostgresTarget.ServerRole {
        try await withAbandonedDeadline(target.connectTimeout + Self.answerTimeout) { [self] in
            let connection = try await connect(host)
            do {
                let role = try await Self.role(of: connection, within: Self.answerTimeout, logger: logger)
                try? await connection.close()
                return role
            } catch {
                try? await connection.close()
                throw error
            }
        }
    }

    /// A connection of its own to `host`, outside the pool; closed at once if the caller has given up meanwhile.
    private func connect(_ host: PostgresTarget.Host) async throws -> PostgresConnection {
        var configuration = PostgresConnection.Configuration(
            host: host.name, port: host.port, username: target.user, password: target.password, database: target.database,
            tls: try connectionTLS())
        configuration.options.connectTimeout = TimeAmount(target.connectTimeout)
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
        if Task.isCancelled {
            try? await connection.close()
            throw CancellationError()
        }
        return connection
    }

    /// Asks the server on `connection` its role, closing the connection if it has not answered `within`.
    static func role(of connection: PostgresConnection, within timeout: Duration, logger: Logger) async throws -> PostgresTarget.ServerRole {
        let deadline = connection.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            let _: EventLoopFuture<Void> = connection.close()
        }
        defer { deadline.cancel() }
        let rows = try await connection.query("SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'", logger: logger)
        for try await (inRecovery, readOnly) in rows.decode((Bool, Bool).self) {
            return PostgresTarget.ServerRole(inRecovery: inRecovery, readOnly: readOnly)
        }
        throw PostgresUnavailable(reason: "the server did not say its role")
    }

    private func connectionTLS() throws -> PostgresConnection.Configuration.TLS {
        guard let configuration = target.tls else { return .disable }
        return target.requireTLS ? .require(try .init(configuration: configuration)) : .prefer(try .init(configuration: configuration))
    }

    private static func makeClient(_ host: PostgresTarget.Host, target: PostgresTarget, maximumConnections: Int, logger: Logger) -> PostgresClient {
        var tls = PostgresClient.Configuration.TLS.disable
        if let configuration = target.tls { tls = target.requireTLS ? .require(configuration) : .prefer(configuration) }
        var configuration = PostgresClient.Configuration(
            host: host.name, port: host.port, username: target.user, password: target.password, database: target.database, tls: tls)
        configuration.options.maximumConnections = maximumConnections
        configuration.options.connectTimeout = target.connectTimeout
        // A transaction this process gave up on (its caller was told 503) must not keep its locks: the server ends
        // a session left idle inside a transaction. Statements of one transaction follow each other at once.
        configuration.options.additionalStartupParameters = [("idle_in_transaction_session_timeout", "15s")]
        // The pool reports each failed connection attempt at info; requests that fail are logged by the service.
        var poolLogger = logger
        poolLogger.logLevel = max(logger.logLevel, .warning)
        return PostgresClient(configuration: configuration, backgroundLogger: poolLogger)
    }
}

/// A statement's rows, read whole on a watched connection (`PostgresPool.query`); `decode` as PostgresNIO's rows.
struct FetchedRows: AsyncSequence, Sendable {
    typealias Element = PostgresRow
    let rows: [PostgresRow]

    struct AsyncIterator: AsyncIteratorProtocol {
        var rows: IndexingIterator<[PostgresRow]>
        mutating func next() async throws -> PostgresRow? { rows.next() }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(rows: rows.makeIterator()) }
}

/// No PostgreSQL server to use: none of the hosts suits, or none answers. A 503 to clients.
struct PostgresUnavailable: Error, CustomStringConvertible {
    let reason: String
    var description: String { "PostgreSQL unavailable: \(reason)" }
}
