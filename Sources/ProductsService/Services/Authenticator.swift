import Foundation
import HTTPTypes
import Logging
import NIOCore
import ServiceLifecycle
import Shared
import Synchronization

/// Who a request acts for. API keys are verified with the Database Service (by hash) and cached for
/// `freshFor`; a revoked key is refused within `usableFor` even when the Database Service cannot be asked.
/// While no key exists at all, the service runs open, as the `default` tenant.
final class Authenticator: Sendable {
    enum Mode: UInt8, Sendable {
        /// Not known yet: the Database Service has not answered since a first start. Requests without a key are
        /// served as in open mode, so that writes are taken during an outage (`--require-api-keys` closes this).
        case unknown
        /// No key exists: requests without a key act for `default`.
        case open
        /// Keys exist: every request needs one.
        case enforced
    }

    /// How long a verification is reused without asking again.
    let freshFor: Duration
    /// How long it is still trusted when the Database Service cannot be asked: the bound on a revoked key.
    let usableFor: Duration

    private let database: any DatabaseServiceClient
    private let modeFile: String?
    private let logger: Logger
    private let currentMode: Atomic<UInt8>
    /// Never run open, whatever the Database Service says (`--require-api-keys`).
    let requireKeys: Bool
    private let entries: Mutex<KeyVerifications>
    /// Whether asking the Database Service is failing: then a verification still trusted is used without asking, and
    /// one request at a time, at most once a second, asks again, so that an outage does not cost every request a
    /// failed call (which can take seconds).
    private struct Outage {
        var failedAt: ContinuousClock.Instant?
        var probing = false
    }
    private let outage = Mutex(Outage())
    /// Set once the first request without a key has waited for the mode to be known (only that one waits).
    private let firstCheckDone = Atomic<Bool>(false)

    /// The time verifications are aged by; tests move it by hand.
    private let now: @Sendable () -> ContinuousClock.Instant

    /// `directory` keeps the last mode seen, so a restart while the Database Service is down keeps it.
    init(
        database: any DatabaseServiceClient, directory: String?, logger: Logger, requireKeys: Bool = false,
        freshFor: Duration = .seconds(5), usableFor: Duration = .seconds(10),
        verifications: KeyVerifications = KeyVerifications(), clock now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }
    ) {
        self.now = now
        entries = Mutex(verifications)
        self.database = database
        self.requireKeys = requireKeys
        self.freshFor = freshFor
        self.usableFor = usableFor
        self.logger = logger
        modeFile = directory.map { $0 + "/auth-mode" }
        let saved = modeFile.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }
        let initial: Mode = requireKeys || saved == "enforced" ? .enforced : saved == "open" ? .open : .unknown
        currentMode = Atomic(initial.rawValue)
    }

    var mode: Mode { Mode(rawValue: currentMode.load(ordering: .acquiring)) ?? .unknown }

    /// What the remembered verifications take, in bytes, and how many there are.
    var verificationFigures: (bytes: Int, count: Int) { entries.withLock { ($0.bytes, $0.count) } }

    /// The grant of the request's key, or nil for a request without one while the service runs open.
    func authenticate(_ headers: HTTPFields) async throws -> KeyGrant? {
        guard let key = Self.presentedKey(headers) else {
            if mode == .unknown, !firstCheckDone.exchange(true, ordering: .acquiringAndReleasing) { await refreshMode() }
            guard mode != .enforced else {
                throw APIError.unauthorized("An API key is required: 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
            }
            return nil
        }
        guard APIKey.isWellFormed(key) else { throw APIError.unauthorized("The API key is not valid") }
        let hash = APIKey.hash(key)
        let now = self.now()
        let cached = entries.withLock { $0[hash] }
        if let cached, now - cached.verifiedAt < freshFor { return try Self.granted(cached.grant) }
        if let cached, now - cached.verifiedAt < usableFor {
            let skip = outage.withLock { outage -> Bool in
                guard let failedAt = outage.failedAt else { return false }
                if outage.probing || now - failedAt < .seconds(1) { return true }
                outage.probing = true
                return false
            }
            if skip { return try Self.granted(cached.grant) }
        }
        let grant: KeyGrant?
        do {
            grant = try await database.verifyKey(hash: hash)
            outage.withLock { $0 = Outage() }
        } catch {
            outage.withLock { $0 = Outage(failedAt: self.now(), probing: false) }
            // The Database Service cannot say: a recent answer still counts, an old one does not.
            if let cached, now - cached.verifiedAt < usableFor { return try Self.granted(cached.grant) }
            logger.warning("cannot verify an API key", metadata: ["error": "\(error)"])
            throw Self.unavailable
        }
        entries.withLock { $0.record(hash, grant: grant, at: now) }
        if grant != nil { setMode(.enforced) }
        return try Self.granted(grant)
    }

    /// Asks the Database Service whether any key exists, and runs open or enforced accordingly.
    func refreshMode() async {
        do {
            setMode(try await database.keyStatus().activeKeys > 0 ? .enforced : .open)
        } catch {
            logger.debug("cannot read the API key status", metadata: ["error": "\(error)"])
        }
    }

    private func setMode(_ mode: Mode) {
        let mode = requireKeys ? .enforced : mode
        let previous = Mode(rawValue: currentMode.exchange(mode.rawValue, ordering: .acquiringAndReleasing))
        guard previous != mode else { return }
        switch mode {
        case .open:
            logger.warning("AUTHENTICATION IS DISABLED: no API key exists, so anyone can use the API as tenant 'default'; create one with 'database-service keys create'")
        case .enforced:
            logger.notice("API keys exist: every request needs one")
        case .unknown:
            break
        }
        if let modeFile {
            do {
                try DurableFile.replace(modeFile, with: ByteBuffer(string: mode == .open ? "open" : "enforced"))
            } catch {
                logger.error("cannot save the authentication mode", metadata: ["error": "\(error)"])
            }
        }
    }

    private static func granted(_ grant: KeyGrant?) throws -> KeyGrant {
        guard let grant else { throw APIError.unauthorized("The API key is not valid or has been revoked") }
        return grant
    }

    private static let unavailable = APIError.serviceUnavailable(
        "auth_unavailable", "API keys cannot be verified now: the Database Service is unreachable")

    /// `Authorization: Bearer <key>`, else `X-API-Key: <key>`.
    static func presentedKey(_ headers: HTTPFields) -> String? {
        if let authorization = headers[.authorization] {
            let parts = authorization.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { return parts[1].trimmingCharacters(in: .whitespaces) }
            return ""
        }
        return headers[.xAPIKey]
    }
}

/// Keeps the authentication mode current: polls the Database Service for whether any key exists.
struct AuthModeMonitor: Service {
    let authenticator: Authenticator
    let interval: Duration

    func run() async throws {
        try? await cancelWhenGracefulShutdown { () async throws in
            // A moment's wait first keeps a start that fails (a port in use) to its one-line error; a request
            // without a key in the meantime asks at once.
            try await Task.sleep(for: .milliseconds(250))
            while !Task.isCancelled {
                await authenticator.refreshMode()
                try await Task.sleep(for: interval)
            }
        }
        try? await gracefulShutdown()
    }
}

extension HTTPField.Name {
    static let xAPIKey = Self("X-API-Key")!
}
