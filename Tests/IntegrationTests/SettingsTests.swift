import Foundation
import Shared
import Testing

/// Settings that cannot work end the process at start with a one-line error naming the setting.
@Suite("Settings")
struct SettingsTests {
    func expectRefused(_ binary: String, _ arguments: [String], environment: [String: String] = [:], naming setting: String) async throws {
        let directory = try TemporaryDirectory()
        let (status, output) = try await ServiceProcess.runToExit(binary, arguments, environment: environment, in: directory)
        #expect(status != 0, "\(binary) \(arguments) should fail; output:\n\(output)")
        let lines = output.split(separator: "\n")
        #expect(lines.count == 1, "one line: \(output)")
        #expect(output.contains(setting), "names \(setting): \(output)")
    }

    @Test("bad settings are refused")
    func refused() async throws {
        let directory = try TemporaryDirectory()
        let file = directory.path + "/a-file"
        _ = FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        try await expectRefused("products-service", ["--database-service-url", "not a url", "--data-dir", directory.path + "/p1"], naming: "--database-service-url")
        try await expectRefused("products-service", ["--database-service-url", "ftp://host", "--data-dir", directory.path + "/p2"], naming: "--database-service-url")
        try await expectRefused("products-service", ["--data-dir", file + "/sub"], naming: "--data-dir")
        try await expectRefused("products-service", ["--port", "70000", "--data-dir", directory.path + "/p3"], naming: "--port")
        try await expectRefused("products-service", ["--cache-budget", "12KB", "--data-dir", directory.path + "/p5"], naming: "--cache-budget")
        try await expectRefused("products-service", ["--data-dir", directory.path + "/p4"], environment: ["PORT": "abc"], naming: "PORT")
        try await expectRefused("database-service", ["--database", "postgres://u:p@localhost/db"], naming: "--database")
        try await expectRefused("database-service", ["--database", file + "/db.sqlite"], naming: "--database")
        try await expectRefused(
            "database-service", ["--database", directory.path + "/d1.sqlite", "--change-retention", "0"], naming: "--change-retention")
        try await expectRefused(
            "products-service", ["--data-dir", directory.path + "/p5", "--feed-lag-alert-after", "0"], naming: "--feed-lag-alert-after")
        try await expectRefused(
            "products-service", ["--data-dir", directory.path + "/p6"], environment: ["KEY_OUTAGE_TRUST": "1"], naming: "KEY_OUTAGE_TRUST")
        try await expectRefused(
            "database-service", ["--database", directory.path + "/d2.sqlite", "--webhook-retry-schedule", "5,soon"], naming: "--webhook-retry-schedule")
        try await expectRefused(
            "database-service", ["--database", directory.path + "/d3.sqlite"], environment: ["WEBHOOK_RETRY_SCHEDULE": "-1"],
            naming: "WEBHOOK_RETRY_SCHEDULE")
        try await expectRefused(
            "database-service", ["--database", directory.path + "/d4.sqlite"], environment: ["WEBHOOK_ALLOW_PRIVATE": "maybe"],
            naming: "WEBHOOK_ALLOW_PRIVATE")
        try await expectRefused(
            "database-service", ["--database", directory.path + "/d5.sqlite", "--webhook-timeout", "0"], naming: "--webhook-timeout")
    }

    @Test("a port in use is refused, and a data directory in use by another process too")
    func inUse() async throws {
        let stack = try await Stack.started()
        let busyPort = "\(stack.databasePort)"
        try await expectRefused("database-service", ["--port", busyPort, "--database", stack.directory.path + "/other.sqlite"], naming: "--port")
        try await expectRefused(
            "products-service", ["--port", "0", "--data-dir", stack.dataDirectory, "--database-service-url", stack.databaseURL],
            naming: "--data-dir")
        await stack.stop()
    }
}
