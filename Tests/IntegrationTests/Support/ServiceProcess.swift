import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One of the two executables, started for real on a loopback port, with its log captured to a file.
final class ServiceProcess: @unchecked Sendable {
    let process = Process()
    let logURL: URL
    private(set) var port = 0
    var baseURL: String { "http://127.0.0.1:\(port)" }

    /// Where the built executables are: `SERVICE_BIN_DIR`, else next to the test bundle.
    static let binaryDirectory: URL = {
        if let directory = ProcessInfo.processInfo.environment["SERVICE_BIN_DIR"] {
            return URL(fileURLWithPath: directory)
        }
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("products-service").path) { return url }
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath + "/.build/debug")
    }()

    private init(binary: String, arguments: [String], environment: [String: String], logURL: URL) {
        self.logURL = logURL
        process.executableURL = Self.binaryDirectory.appendingPathComponent(binary)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for key in [
            "HOST", "PORT", "DATABASE", "DATA_DIR", "DATABASE_SERVICE_URL", "JOURNAL", "LOG_LEVEL", "SERVICE_TOKEN", "SERVICE_TOKEN_FILE", "REQUIRE_API_KEYS", "RATE_LIMIT",
            "RATE_BURST", "CORS_ORIGINS", "WEBHOOK_ALLOW_PRIVATE", "WEBHOOK_RETRY_SCHEDULE", "WEBHOOK_TIMEOUT",
        ] { env[key] = nil }
        env.merge(environment) { $1 }
        process.environment = env
    }

    /// Starts a binary and waits until it logs the address it listens on.
    static func start(
        _ binary: String, _ arguments: [String], environment: [String: String] = [:], in directory: TemporaryDirectory
    ) async throws -> ServiceProcess {
        let logURL = directory.url.appendingPathComponent("\(binary)-\(UUID().uuidString.prefix(8)).log")
        let service = ServiceProcess(binary: binary, arguments: arguments, environment: environment, logURL: logURL)
        try service.launch()
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let port = service.listeningPort() {
                service.port = port
                return service
            }
            if let status = service.process.exitStatus() {
                throw ServiceProcessError.exited(binary: binary, status: status, log: service.log)
            }
            try await Task.sleep(for: .milliseconds(25))
        }
        service.kill()
        throw ServiceProcessError.notListening(binary: binary, log: service.log)
    }

    /// Runs a binary to completion (for settings that must fail at start); returns its exit status and output.
    static func runToExit(_ binary: String, _ arguments: [String], environment: [String: String] = [:], in directory: TemporaryDirectory)
        async throws -> (status: Int32, output: String)
    {
        let logURL = directory.url.appendingPathComponent("\(binary)-exit-\(UUID().uuidString.prefix(8)).log")
        let service = ServiceProcess(binary: binary, arguments: arguments, environment: environment, logURL: logURL)
        try service.launch()
        let status = try await service.waitForExit(timeout: .seconds(90))
        return (status, service.log)
    }

    private func launch() throws {
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let handle = try FileHandle(forWritingTo: logURL)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try handle.close()
    }

    var log: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    private func listeningPort() -> Int? {
        // Text logs say address=HOST:PORT; JSON logs "address":"HOST:PORT".
        guard let range = log.range(of: #"address("?[=:]"?)[0-9.]+:[0-9]+"#, options: .regularExpression) else { return nil }
        return Int(log[range].split(separator: ":").last!.prefix { $0.isNumber })
    }

    /// `kill -9`: no chance to flush anything. Returns once the process is gone (at most 30 s).
    func kill() {
        guard process.exitStatus() == nil else { return }
        deliver(SIGKILL, to: process.processIdentifier)
        _ = process.waitForExit(timeout: .seconds(30))
    }

    /// SIGTERM and wait for a graceful exit; returns the exit status.
    @discardableResult
    func terminate(timeout: Duration = .seconds(30)) async throws -> Int32 {
        if let status = process.exitStatus() { return status }
        process.terminate()  // SIGTERM
        return try await waitForExit(timeout: timeout)
    }

    private func waitForExit(timeout: Duration) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let status = process.exitStatus() { return status }
            guard ContinuousClock.now < deadline else {
                kill()
                throw ServiceProcessError.didNotExit(log: log)
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    deinit { kill() }
}

enum ServiceProcessError: Error, CustomStringConvertible {
    case exited(binary: String, status: Int32, log: String)
    case notListening(binary: String, log: String)
    case didNotExit(log: String)

    var description: String {
        switch self {
        case .exited(let binary, let status, let log): "\(binary) exited with status \(status) before listening:\n\(log)"
        case .notListening(let binary, let log): "\(binary) did not report a listening address:\n\(log)"
        case .didNotExit(let log): "process did not exit in time:\n\(log)"
        }
    }
}

/// A directory removed when the test ends.
final class TemporaryDirectory: @unchecked Sendable {
    let url: URL
    var path: String { url.path }

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("products-it-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }
}

private let reservedPorts = Mutex<Set<Int>>([])

/// A loopback port that was free a moment ago, for a service that must come back on the same port.
func freePort() throws -> Int {
    // Below the kernel's ephemeral range (32768-60999 on Linux): a process started with `--port 0`, or an outgoing
    // connection, can then never be given a port reserved here before its owner binds it.
    for _ in 0..<1000 {
        let port = Int.random(in: 20_000..<32_000)
        // Never the same port twice to this test process, whose services may not have bound theirs yet.
        guard reservedPorts.withLock({ $0.insert(port).inserted }) else { continue }
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        if bound { return port }
    }
    throw ServiceProcessError.notListening(binary: "freePort", log: "no free port found in 20000-31999")
}

/// Sends a signal; a free function, so `kill` here is the C call and not `ServiceProcess.kill()`.
extension Process {
    /// The exit status once the process has exited, even when Foundation has not noticed: under a full parallel
    /// run, children have stayed zombies with `isRunning` true for good, and `waitUntilExit` (which blocks a thread
    /// of the concurrency pool) then never returned, stalling every test. Such a zombie is reaped here.
    func exitStatus() -> Int32? {
        if !isRunning { return terminationStatus }
        let pid = processIdentifier
        let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // The state follows the command's closing parenthesis: Z is a zombie, X dead.
        guard let stat, let close = stat.lastIndex(of: ")") else { return isRunning ? nil : terminationStatus }
        let state = stat[stat.index(after: close)...].drop { $0 == " " }.first
        guard state == "Z" || state == "X" else { return nil }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid {
            return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        }
        return isRunning ? nil : terminationStatus
    }

    /// Waits, without the run loop, until the process has exited; its status, or nil after `timeout`.
    func waitForExit(timeout: Duration) -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = exitStatus() { return status }
            usleep(10_000)
        }
        return nil
    }
}

private func deliver(_ signal: Int32, to process: Int32) {
    _ = kill(process, signal)
}
