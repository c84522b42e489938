import Foundation
import HTTPTypes

/// Strong entity tags for products (RFC 9110 §8.8.3) and the `If-Match` / `If-None-Match` conditions on them.
package enum EntityTag {
    /// `"<id>.v<version>"`: changes with every version; characters an entity tag cannot hold are percent-encoded.
    package static func product(id: String, version: Int64) -> String {
        var tag = "\""
        for byte in id.utf8 {
            if byte == 0x21 || (0x23...0x7E).contains(byte), byte != UInt8(ascii: "%") {
                tag.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                tag += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return tag + ".v\(version)\""
    }

    /// A parsed `If-Match` or `If-None-Match` field: `*`, or a list of tags.
    package enum Condition: Equatable, Sendable {
        case any
        case tags([(weak: Bool, opaque: Substring)])

        package static func == (lhs: Condition, rhs: Condition) -> Bool {
            switch (lhs, rhs) {
            case (.any, .any): true
            case (.tags(let left), .tags(let right)): left.elementsEqual(right) { $0.weak == $1.weak && $0.opaque == $1.opaque }
            default: false
            }
        }

        /// `If-Match` uses the strong comparison: a weak tag never matches.
        package func matchesStrongly(_ current: String) -> Bool {
            switch self {
            case .any: true
            case .tags(let tags): tags.contains { !$0.weak && $0.opaque == current[...] }
            }
        }

        /// `If-None-Match` uses the weak comparison: `W/` is ignored.
        package func matchesWeakly(_ current: String) -> Bool {
            switch self {
            case .any: true
            case .tags(let tags): tags.contains { $0.opaque == current[...] }
            }
        }
    }

    /// Parses a condition header (all its lines); nil when absent; a malformed one is a 400 naming the header.
    package static func condition(_ name: HTTPField.Name, in headers: HTTPFields) throws(APIError) -> Condition? {
        let values = headers[values: name]
        guard !values.isEmpty else { return nil }
        let text = values.joined(separator: ",")
        let invalid = APIError.invalidParameter(name.rawName, "\(name.rawName) must be * or a list of entity tags (\"...\")")
        if text.trimmingCharacters(in: .whitespaces) == "*" { return .any }
        var tags: [(weak: Bool, opaque: Substring)] = []
        var rest = Substring(text)
        while true {
            rest = rest.drop { $0 == " " || $0 == "\t" || $0 == "," }
            if rest.isEmpty { break }
            var weak = false
            if rest.hasPrefix("W/") {
                weak = true
                rest = rest.dropFirst(2)
            }
            guard rest.first == "\"", let close = rest.dropFirst().firstIndex(of: "\"") else { throw invalid }
            let opaque = rest[rest.startIndex...close]
            guard opaque.utf8.dropFirst().dropLast().allSatisfy({ $0 == 0x21 || (0x23...0x7E).contains($0) || $0 >= 0x80 }) else {
                throw invalid
            }
            tags.append((weak, opaque))
            rest = rest[rest.index(after: close)...]
            let separator = rest.prefix { $0 == " " || $0 == "\t" }
            rest = rest.dropFirst(separator.count)
            guard rest.isEmpty || rest.first == "," else { throw invalid }
        }
        guard !tags.isEmpty else { throw invalid }
        return .tags(tags)
    }
}

extension String {
    /// Zero-padded on the left to `width` characters.
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }

}
