import Crypto
import Foundation

/// API keys: `sk_` + 43 base62 characters (about 256 bits), stored only as a SHA-256 hash, and known by a public
/// id `key_` + 20 base62 characters. A fast hash is right here: the keys are random, not passwords.
package enum APIKey {
    package static let prefix = "sk_"
    package static let secretLength = 43
    package static let idPrefix = "key_"

    /// A new secret key.
    package static func generate() -> String { prefix + randomBase62(count: secretLength) }

    /// A new public key id.
    package static func generateID() -> String { idPrefix + randomBase62(count: 20) }

    /// Whether a string has the shape of a key (so that anything else is refused without a lookup).
    package static func isWellFormed(_ key: String) -> Bool {
        key.hasPrefix(prefix) && key.utf8.count >= prefix.utf8.count + 32 && key.utf8.count <= 128
            && key.utf8.dropFirst(prefix.utf8.count).allSatisfy(isBase62)
    }

    /// The stored form of a key: its SHA-256, in lowercase hex.
    package static func hash(_ key: String) -> String {
        SHA256.hash(data: Data(key.utf8)).map { String($0, radix: 16).leftPadded(to: 2) }.joined()
    }

    /// Compares two secrets in time that depends only on their lengths' hashes, not on where they differ.
    package static func constantTimeEquals(_ left: String, _ right: String) -> Bool {
        let a = SHA256.hash(data: Data(left.utf8))
        let b = SHA256.hash(data: Data(right.utf8))
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    /// Replaces anything shaped like a key in `text` with `sk_[REDACTED]`.
    package static func redact(_ text: String) -> String {
        guard text.containsBytes(of: prefix) else { return text }
        var result = ""
        var rest = Substring(text)
        while let range = rest.range(of: prefix) {
            result += rest[..<range.lowerBound]
            let secret = rest[range.upperBound...].prefix { $0.isASCII && ($0.isLetter || $0.isNumber) }
            result += secret.count >= 16 ? prefix + "[REDACTED]" : prefix + secret
            rest = rest[secret.endIndex...]
        }
        return result + rest
    }

    private static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    private static func isBase62(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
    }

    /// Uniform base62 characters from the system's cryptographic random source (rejection sampling).
    private static func randomBase62(count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        while bytes.count < count {
            let byte = UInt8.random(in: 0...255, using: &generator)
            if byte < 248 { bytes.append(alphabet[Int(byte % 62)]) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// What a key grants: its tenant and whether it may write.
package struct KeyGrant: Codable, Sendable, Equatable {
    package var id: String
    package var tenant: String
    package var scope: Scope

    package enum Scope: String, Codable, Sendable {
        case readWrite = "read_write"
        case readOnly = "read_only"
    }

    package init(id: String, tenant: String, scope: Scope) {
        self.id = id
        self.tenant = tenant
        self.scope = scope
    }
}

/// The body of `GET /api/keys/status`.
package struct KeyStatus: Codable, Sendable, Equatable {
    package var activeKeys: Int

    package init(activeKeys: Int) { self.activeKeys = activeKeys }

    enum CodingKeys: String, CodingKey {
        case activeKeys = "active_keys"
    }
}

/// The body of `GET /api/tenants`.
package struct TenantList: Codable, Sendable, Equatable {
    package var tenants: [String]
    package init(tenants: [String]) { self.tenants = tenants }
}
