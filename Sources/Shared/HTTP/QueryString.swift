import Foundation

/// Query strings decoded the way browsers and curl encode them: percent-escapes in names and values, `+` as space.
package enum QueryString {
    /// The decoded name-value pairs in order; a malformed escape is a 400.
    package static func parse(_ query: String?) throws(APIError) -> [(name: String, value: String)] {
        guard let query, !query.isEmpty else { return [] }
        var pairs: [(name: String, value: String)] = []
        for part in query.split(separator: "&", omittingEmptySubsequences: true) {
            let equals = part.firstIndex(of: "=")
            let rawName = equals.map { part[..<$0] } ?? part
            let rawValue = equals.map { part[part.index(after: $0)...] } ?? ""
            guard let name = decode(rawName) else {
                throw APIError.invalidParameter(String(rawName), "Query parameter name is not validly percent-encoded")
            }
            guard let value = decode(rawValue) else {
                throw APIError.invalidParameter(name, "'\(name)' is not validly percent-encoded")
            }
            pairs.append((name, value))
        }
        return pairs
    }

    /// `name=value&...` with everything but RFC 3986's unreserved characters percent-encoded.
    package static func encode(_ pairs: [(name: String, value: String)]) -> String {
        pairs.map { escape($0.name) + "=" + escape($0.value) }.joined(separator: "&")
    }

    package static func escape(_ text: String) -> String {
        // Ids and numbers need no escaping: skip Foundation on the common path.
        if text.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || $0 == 0x2D || $0 == 0x2E || $0 == 0x5F || $0 == 0x7E }) {
            return text
        }
        return text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? text
    }

    private static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    private static func decode(_ raw: Substring) -> String? {
        guard raw.contains(where: { $0 == "%" || $0 == "+" }) else { return String(raw) }
        return raw.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }
}
