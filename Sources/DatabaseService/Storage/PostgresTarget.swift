import Foundation
import PostgresNIO
import Shared

/// Where a libpq-style `postgres://` URL points: one or more hosts, tried in order, and the role the server must have.
///
/// `postgres://user:password@h1:5432,h2:5432/database?sslmode=disable&target_session_attrs=read-write&connect_timeout=5`,
/// the form pg_auto_failover hands out. Percent-encoded user, password and database; `[::1]:5432` for IPv6 hosts.
struct PostgresTarget: Sendable {
    /// One `host:port` of the list.
    struct Host: Sendable, Equatable, CustomStringConvertible {
        var name: String
        var port: Int
        var description: String { name.contains(":") ? "[\(name)]:\(port)" : "\(name):\(port)" }
    }

    /// libpq's `target_session_attrs`: which server a session may use.
    enum SessionAttributes: String, Sendable, CaseIterable {
        case any
        case readWrite = "read-write"
        case readOnly = "read-only"
        case primary
        case standby
        case preferStandby = "prefer-standby"

        /// Whether a server in this role suits; `prefer-standby` takes a standby on its first pass over the hosts, any on its second.
        func accepts(_ role: ServerRole, firstPass: Bool) -> Bool {
            switch self {
            case .any: true
            case .readWrite: !role.readOnly
            case .readOnly: role.readOnly
            case .primary: !role.inRecovery
            case .standby: role.inRecovery
            case .preferStandby: firstPass ? role.inRecovery : true
            }
        }

        /// Whether a session already in use must be replaced when its server turns out to be in `role`.
        func outgrown(by role: ServerRole) -> Bool {
            switch self {
            case .any, .preferStandby: false
            default: !accepts(role, firstPass: false)
            }
        }
    }

    /// What a server said about itself.
    struct ServerRole: Sendable, Equatable {
        var inRecovery: Bool
        var readOnly: Bool
    }

    var hosts: [Host]
    var user: String
    var password: String?
    var database: String?
    var sessionAttributes: SessionAttributes
    var connectTimeout: Duration
    var tls: TLSConfiguration?
    var requireTLS: Bool

    /// Whether one server is all there is and any will do: nothing to watch or choose between.
    var isSingleServer: Bool { hosts.count == 1 && sessionAttributes == .any }

    /// Parses `url`; `password`, when given (a secret file), wins over the URL's.
    init(_ url: String, password overridingPassword: String? = nil) throws {
        func invalid(_ reason: String) -> SettingError {
            SettingError("--database (DATABASE): '\(Self.redacted(url))' \(reason)")
        }
        guard let schemeEnd = url.range(of: "://"), ["postgres", "postgresql"].contains(url[..<schemeEnd.lowerBound].lowercased()) else {
            throw invalid("is not a postgres://user:password@host:port,host:port/database URL")
        }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        var user = "postgres"
        var password: String?
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
            let (name, secret) = userInfo.firstIndex(of: ":").map { (userInfo[..<$0], Optional(userInfo[userInfo.index(after: $0)...])) }
                ?? (userInfo, nil)
            guard let decodedName = String(name).removingPercentEncoding, secret.map({ String($0).removingPercentEncoding != nil }) ?? true
            else { throw invalid("has a badly percent-encoded user or password") }
            if !decodedName.isEmpty { user = decodedName }
            password = secret.flatMap { String($0).removingPercentEncoding }
        }
        hosts = try authority.split(separator: ",", omittingEmptySubsequences: false).map { spec in
            guard let host = Self.host(spec) else { throw invalid("has a host that is not host, host:port or [v6-address]:port: '\(spec)'") }
            return host
        }
        guard !hosts.isEmpty else { throw invalid("names no host") }
        var path = rest[authorityEnd...]
        var query = Substring("")
        if let mark = path.firstIndex(of: "?") { (path, query) = (path[..<mark], path[path.index(after: mark)...]) }
        let name = path.hasPrefix("/") ? path.dropFirst() : path
        guard let decodedDatabase = String(name).removingPercentEncoding else { throw invalid("has a badly percent-encoded database name") }
        database = decodedDatabase.isEmpty ? nil : decodedDatabase
        self.user = user
        self.password = overridingPassword ?? password

        var parameters: [String: String] = [:]
        for pair in query.split(separator: "&") {
            let (key, value) = pair.firstIndex(of: "=").map { (pair[..<$0], pair[pair.index(after: $0)...]) } ?? (pair, "")
            parameters[String(key).removingPercentEncoding ?? String(key)] = String(value).removingPercentEncoding ?? String(value)
        }
        // As libpq: `prefer` and `require` encrypt without checking the certificate (pg_auto_failover's self-signed
        // ones included); `verify-ca` checks it against the system's roots, `verify-full` the host name too.
        var tls = TLSConfiguration.makeClientConfiguration()
        switch parameters["sslmode"] ?? "prefer" {
        case "disable": (self.tls, requireTLS) = (nil, false)
        case "prefer", "allow":
            tls.certificateVerification = .none
            (self.tls, requireTLS) = (tls, false)
        case "require":
            tls.certificateVerification = .none
            (self.tls, requireTLS) = (tls, true)
        case "verify-ca":
            tls.certificateVerification = .noHostnameVerification
            (self.tls, requireTLS) = (tls, true)
        case "verify-full": (self.tls, requireTLS) = (tls, true)
        case let mode: throw invalid("has sslmode '\(mode)', not disable, allow, prefer, require, verify-ca or verify-full")
        }
        let attributes = parameters["target_session_attrs"] ?? "any"
        guard let sessionAttributes = SessionAttributes(rawValue: attributes) else {
            throw invalid("has target_session_attrs '\(attributes)', not one of \(SessionAttributes.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.sessionAttributes = sessionAttributes
        let timeout = parameters["connect_timeout"] ?? "10"
        // libpq: zero or negative waits forever, and under 2 s counts as 2 s.
        guard let seconds = Int(timeout) else { throw invalid("has connect_timeout '\(timeout)', not a whole number of seconds") }
        connectTimeout = .seconds(seconds <= 0 ? 3600 : max(2, seconds))
    }

    private static func host(_ spec: Substring) -> Host? {
        var name: Substring
        var port: Substring?
        if spec.hasPrefix("[") {
            guard let close = spec.firstIndex(of: "]") else { return nil }
            name = spec[spec.index(after: spec.startIndex)..<close]
            let after = spec[spec.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return nil }
                port = after.dropFirst()
            }
        } else if let colon = spec.firstIndex(of: ":") {
            (name, port) = (spec[..<colon], spec[spec.index(after: colon)...])
        } else {
            name = spec
        }
        guard !name.isEmpty, let decoded = String(name).removingPercentEncoding, !decoded.contains(where: { $0 == "/" || $0 == "@" || $0.isWhitespace })
        else { return nil }
        guard let port else { return Host(name: decoded, port: 5432) }
        guard let number = Int(port), (1...65535).contains(number) else { return nil }
        return Host(name: decoded, port: number)
    }

    /// The URL with its password hidden, for messages.
    static func redacted(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@"), let colon = rest[..<at].firstIndex(of: ":") else { return url }
        return String(url[..<rest.index(after: colon)]) + "***" + String(rest[at...])
    }
}
