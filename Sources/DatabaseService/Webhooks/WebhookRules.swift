import Crypto
import Foundation
import Shared

/// The rules every webhook endpoint input is checked against, in the Database Service that stores it.
enum WebhookRules {
    static let maxURLLength = 2048
    static let maxDescriptionLength = 500
    /// Endpoints a tenant may have: each gets a delivery of every matching event, so their number bounds the fan-out.
    static let maxEndpointsPerTenant = 16
    static let createFields: Set<String> = ["url", "enabled_events", "description"]
    static let updateFields: Set<String> = ["url", "enabled_events", "description", "status"]

    /// An http(s) URL with a host and no credentials.
    static func validURL(_ value: JSONValue, param: String = "url") throws(APIError) -> String {
        guard case .string(let text) = value else { throw .invalidParameter(param, "'\(param)' must be a string") }
        guard !text.isEmpty, text.utf8.count <= maxURLLength else {
            throw .invalidParameter(param, "'\(param)' must be 1 to \(maxURLLength) bytes")
        }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
              scheme == "http" || scheme == "https"
        else { throw .invalidParameter(param, "'\(param)' must be an http:// or https:// URL") }
        guard let host = components.host, !host.isEmpty else { throw .invalidParameter(param, "'\(param)' must name a host") }
        guard components.user == nil, components.password == nil else {
            throw .invalidParameter(param, "'\(param)' must not carry credentials; authenticate deliveries by their signature")
        }
        guard components.fragment == nil else { throw .invalidParameter(param, "'\(param)' must not have a #fragment") }
        if let port = components.port, !(1...65535).contains(port) { throw .invalidParameter(param, "'\(param)' has an invalid port") }
        return text
    }

    /// A non-empty list of event types, or `["*"]`; duplicates dropped, order kept.
    static func validEvents(_ value: JSONValue, param: String = "enabled_events") throws(APIError) -> [String] {
        guard case .array(let items) = value, !items.isEmpty else {
            throw .invalidParameter(param, "'\(param)' must be a non-empty array of event types, or [\"*\"]")
        }
        var events: [String] = []
        for item in items {
            guard case .string(let name) = item, name == "*" || EventType(rawValue: name) != nil else {
                throw .invalidParameter(param, "'\(param)' may hold only \"*\" and \(EventType.names)")
            }
            if !events.contains(name) { events.append(name) }
        }
        return events.contains("*") ? ["*"] : events
    }

    static func validDescription(_ value: JSONValue) throws(APIError) -> String? {
        switch value {
        case .null: return nil
        case .string(let text):
            guard text.unicodeScalars.count <= maxDescriptionLength, !text.unicodeScalars.contains("\0") else {
                throw .invalidParameter("description", "'description' must be at most \(maxDescriptionLength) characters, without NUL")
            }
            return text
        default: throw .invalidParameter("description", "'description' must be a string")
        }
    }

    /// The fields of a JSON object body, refusing any not in `allowed`.
    static func fields(_ json: JSONValue, allowed: Set<String>) throws(APIError) -> [String: JSONValue] {
        guard case .object(let fields) = json else { throw .invalidBody("Request body must be a JSON object") }
        if let unknown = fields.keys.sorted().first(where: { !allowed.contains($0) }) { throw .unknownParameter(unknown) }
        return fields
    }
}

/// Standard Webhooks signing: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` keyed with the secret's
/// base64-decoded bytes.
enum WebhookSignature {
    static let secretPrefix = "whsec_"

    /// A new secret: `whsec_` and the base64 of 32 random bytes.
    static func generateSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return secretPrefix + Data(bytes).base64EncodedString()
    }

    /// The secret's key bytes; nil when it is not a `whsec_` secret.
    static func key(_ secret: String) -> SymmetricKey? {
        guard secret.hasPrefix(secretPrefix), let bytes = Data(base64Encoded: String(secret.dropFirst(secretPrefix.count))) else { return nil }
        return SymmetricKey(data: bytes)
    }

    /// One `v1,` signature.
    static func sign(id: String, timestamp: Int64, body: some DataProtocol, secret: String) -> String? {
        guard let key = key(secret) else { return nil }
        var hmac = HMAC<SHA256>(key: key)
        hmac.update(data: Data("\(id).\(timestamp).".utf8))
        hmac.update(data: body)
        return "v1," + Data(hmac.finalize()).base64EncodedString()
    }

    /// The `webhook-signature` header value: one signature per secret, separated by spaces.
    static func header(id: String, timestamp: Int64, body: some DataProtocol, secrets: [String]) -> String {
        secrets.compactMap { sign(id: id, timestamp: timestamp, body: body, secret: $0) }.joined(separator: " ")
    }

    /// Whether any signature in a `webhook-signature` header verifies with `secret` (constant-time compare).
    static func verify(header: String, id: String, timestamp: Int64, body: some DataProtocol, secret: String) -> Bool {
        guard let key = key(secret) else { return false }
        let payload = Data("\(id).\(timestamp).".utf8) + Data(body)
        for candidate in header.split(separator: " ") where candidate.hasPrefix("v1,") {
            guard let mac = Data(base64Encoded: String(candidate.dropFirst(3))) else { continue }
            if HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: payload, using: key) { return true }
        }
        return false
    }
}

/// The schedule of retries after a failed delivery: seconds after each failure.
struct WebhookRetrySchedule: Sendable, Equatable, CustomStringConvertible {
    var delays: [Double]

    /// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight tries over about 27.6 hours.
    static let standard = WebhookRetrySchedule(delays: [5, 300, 1800, 7200, 18000, 36000, 36000])

    init(delays: [Double]) { self.delays = delays }

    /// Comma-separated seconds, each 0 to 30 days, at most 20 of them; empty: no retries.
    init?(_ text: String) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty {
            delays = []
            return
        }
        var delays: [Double] = []
        for part in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
            guard let seconds = Double(part.trimmingCharacters(in: .whitespaces)), seconds.isFinite, (0...2_592_000).contains(seconds) else { return nil }
            delays.append(seconds)
        }
        guard delays.count <= 20 else { return nil }
        self.delays = delays
    }

    /// Tries in all: the first and one per delay.
    var maxAttempts: Int { delays.count + 1 }

    /// The wait after failed try number `attempt` (1-based); nil when it was the last.
    func delay(afterAttempt attempt: Int) -> Double? {
        attempt >= 1 && attempt <= delays.count ? delays[attempt - 1] : nil
    }

    var description: String { delays.map { $0 == $0.rounded() ? String(Int64($0)) : String($0) }.joined(separator: ",") }
}
