import Foundation
import Shared
import Synchronization
import TestSupport
import Testing

/// The pg_auto_failover formation `scripts/with-pg-ha` runs: a monitor and two nodes with synchronous replication.
/// `scripts/test` starts one when `pg_autoctl` is installed (CI installs it) and sets `REQUIRE_PG_HA=1`.
enum Formation {
    static let url = ProcessInfo.processInfo.environment["TEST_PG_HA_URL"].flatMap { $0.isEmpty ? nil : $0 }
    static let control = ProcessInfo.processInfo.environment["TEST_PG_HA_CONTROL"]
    static let required = ProcessInfo.processInfo.environment["REQUIRE_PG_HA"] == "1"

    /// A fresh database on the formation's primary; its URL keeps every host and `target_session_attrs`.
    static func createDatabase() async throws -> String {
        let url = try #require(url, "REQUIRE_PG_HA=1 but TEST_PG_HA_URL is not set")
        let name = "products_ha_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let status = try await run("/usr/bin/env", ["psql", url, "-q", "-c", "CREATE DATABASE \(name)"])
        try #require(status == 0, "psql could not create a database on the formation")
        return url.replacingOccurrences(of: "/products?", with: "/\(name)?")
    }

    /// `switchover` or `failover` (returns once the monitor has promoted the other node), or `wait` (until settled).
    static func perform(_ action: String) async throws {
        let control = try #require(control, "TEST_PG_HA_CONTROL is not set")
        let status = try await run(control, [action])
        try #require(status == 0, "scripts/with-pg-ha \(action) exited \(status)")
    }

    /// Each node's role and product count in `database`, asked directly (for a failure's diagnosis).
    static func describeNodes(database url: String) async -> String {
        guard let match = url.firstMatch(of: /@([^\/]+)(\/[^?]+)/) else { return "?" }
        let (hosts, path) = (match.1, match.2)
        var lines: [String] = []
        for host in hosts.split(separator: ",") {
            let single = "postgres://postgres@\(host)\(path)?sslmode=disable&connect_timeout=5"
            let query = "SELECT pg_is_in_recovery(), current_setting('transaction_read_only'), pg_last_wal_replay_lsn(), (SELECT count(*) FROM products WHERE NOT deleted)"
            let output = (try? await capture("/usr/bin/env", ["psql", single, "-XAtc", query])) ?? "unreachable"
            lines.append("\(host): \(output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return lines.joined(separator: "; ")
    }

    /// A command's standard output.
    private static func capture(_ executable: String, _ arguments: [String]) async throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        return try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { _ in
                continuation.resume(returning: String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
            }
            do { try process.run() } catch { continuation.resume(throwing: error) }
        }
    }

    /// Runs a command without holding a thread of the concurrency pool while it runs.
    private static func run(_ executable: String, _ arguments: [String]) async throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        return try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { continuation.resume(throwing: error) }
        }
    }
}

@Suite(
    "PostgreSQL failover under pg_auto_failover", .serialized,
    .enabled(if: Formation.url != nil || Formation.required, "no pg_auto_failover formation (scripts/with-pg-ha)"))
struct FailoverTests {
    /// What the writers saw, shared by the tasks of the test.
    final class Log: Sendable {
        let seen = Mutex(Observations())
        let stopped = Atomic<Bool>(false)
    }

    /// What the writers saw, by the time it happened.
    struct Observations {
        var acknowledged: [String] = []
        var acknowledgedAt: [ContinuousClock.Instant] = []
        var plainFailures: [Int: Int] = [:]
        var conditional: [(at: ContinuousClock.Instant, status: Int)] = []
        var promotions: [(action: String, done: ContinuousClock.Instant)] = []
    }

    @Test("a switchover and a failover under load: plain writes acknowledged throughout, none lost, no 500, conditional writes back within 15 s")
    func failoverUnderLoad() async throws {
        let stack = try Stack(postgresURL: try await Formation.createDatabase())
        try await stack.startDatabase()
        try await stack.startProducts()
        try await stack.waitForStatus("healthy")
        let base = stack.productsURL
        let target = try await stack.create("Conditional target")
        let log = Log()

        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<2 {
                group.addTask {
                    var count = 0
                    while !log.stopped.load(ordering: .relaxed) {
                        count += 1
                        let response = try await HTTP.post(base + "/products", json: #"{"name":"Failover \#(writer)-\#(count)"}"#)
                        if response.status == 201, let id = try? response.json(Product.self).id {
                            log.seen.withLock {
                                $0.acknowledged.append(id)
                                $0.acknowledgedAt.append(.now)
                            }
                        } else {
                            log.seen.withLock { $0.plainFailures[response.status, default: 0] += 1 }
                        }
                        try await Task.sleep(for: .milliseconds(10))
                    }
                }
            }
            group.addTask {
                let url = base + "/products/\(target.id)"
                while !log.stopped.load(ordering: .relaxed) {
                    if let etag = try await HTTP.get(url).headers.first(name: "ETag") {
                        let response = try await HTTP.send(.PATCH, url, body: #"{"description":"x"}"#, headers: [("If-Match", etag)])
                        log.seen.withLock { $0.conditional.append((.now, response.status)) }
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            group.addTask {
                for action in ["switchover", "failover"] {
                    try await Task.sleep(for: .seconds(3))
                    try await Formation.perform(action)
                    log.seen.withLock { $0.promotions.append((action, .now)) }
                    try await Formation.perform("wait")
                }
                try await Task.sleep(for: .seconds(16))
                log.stopped.store(true, ordering: .relaxed)
            }
            try await group.waitForAll()
        }

        let observed = log.seen.withLock { $0 }
        #expect(observed.plainFailures.isEmpty, "plain writes are acknowledged from the journal throughout: \(observed.plainFailures)")
        // Plain writes went on being acknowledged after each promotion, not only before the first.
        for promotion in observed.promotions {
            #expect(observed.acknowledgedAt.contains { $0 > promotion.done }, "plain writes acknowledged after the \(promotion.action)")
        }
        #expect(!observed.conditional.contains { $0.status == 500 }, "no 500")
        let started = observed.conditional.first?.at ?? .now
        let conditionalStatuses = observed.conditional.map { "\(started.duration(to: $0.at).components.seconds)s:\($0.status)" }.joined(separator: " ")
            + " promotions " + observed.promotions.map { "\($0.action)@\(started.duration(to: $0.done).components.seconds)s" }.joined(separator: " ")
        for promotion in observed.promotions {
            let resumed = observed.conditional.first { $0.at > promotion.done && (200..<300).contains($0.status) }
            let gap = resumed.map { promotion.done.duration(to: $0.at) }
            #expect(gap.map { $0 <= .seconds(15) } == true, "conditional writes resume within 15 s of the \(promotion.action): \(String(describing: gap)); statuses \(conditionalStatuses)")
        }

        // Nothing acknowledged is lost: every product reaches the database that survived both promotions.
        try await stack.waitUntilPersisted()
        let stored = Set(try await stack.databaseProducts().map(\.id))
        let missing = Set(observed.acknowledged).subtracting(stored)
        #expect(missing.isEmpty, "\(missing.count) of \(observed.acknowledged.count) acknowledged products are missing")
        if !missing.isEmpty || observed.conditional.last.map({ !(200..<300).contains($0.status) }) == true {
            // For the diagnosis: when the missing ones were acknowledged, what each node holds, and what the
            // Database Service said about its servers.
            let missingAt = zip(observed.acknowledged, observed.acknowledgedAt).filter { missing.contains($0.0) }
                .map { started.duration(to: $0.1).components.seconds }
            print("failover: missing acknowledged between \(missingAt.min() ?? -1)s and \(missingAt.max() ?? -1)s")
            print("failover: nodes: " + (await Formation.describeNodes(database: stack.postgresURL ?? "")))
            let serverLines = stack.serviceLogs.split(separator: "\n").filter { $0.contains("PostgreSQL") || $0.contains("error") }
            print("failover: Database Service log:\n" + serverLines.suffix(80).joined(separator: "\n"))
        }
        let replaced = stack.serviceLogs.components(separatedBy: "PostgreSQL server replaced").count - 1
        #expect(replaced >= 2, "the Database Service moved to the promoted node each time")
        let health = try await HTTP.get(stack.databaseURL + "/health")
        #expect(health.status == 200)
    }
}
