/// The validation rules a product must satisfy, enforced by both services.
package enum ProductRules {
    package static let maxIDLength = 64
    package static let maxNameLength = 250
    package static let maxTypeLength = 64
    package static let maxMetadataKeys = 50
    package static let maxMetadataKeyLength = 40
    package static let maxMetadataValueLength = 500
    package static let defaultType = "physical"
    package static let maxDescriptionLength = 40_000
    package static let maxImages = 8
    package static let maxImageURLLength = 2_048
    package static let maxTags = 64
    package static let maxTagLength = 64
    /// The largest body of a product write (and line of an import): 10,000 variants with two prices each take
    /// about 3 MiB of JSON.
    package static let maxBodyBytes = 8 << 20

    /// Refuses U+0000: storage backends (SQLite's C strings, PostgreSQL's text) cannot keep it.
    package static func checkNoNUL(_ text: String, param: String) throws(APIError) {
        guard !text.utf8.contains(0) else { throw APIError.invalidParameter(param, "'\(param)' must not contain the NUL character") }
    }

    /// Checks a product id: 1 to 64 characters, no NUL.
    package static func validID(_ id: String, param: String = "id") throws(APIError) -> String {
        guard !id.isEmpty, id.unicodeScalars.count <= maxIDLength else {
            throw APIError.invalidParameter(param, "Product id must be 1 to \(maxIDLength) characters")
        }
        try checkNoNUL(id, param: param)
        return id
    }

    /// Trims and checks a name; returns the stored form.
    package static func validName(_ raw: String, param: String = "name") throws(APIError) -> String {
        try checkNoNUL(raw, param: param)
        let name = trimmed(raw)
        guard !name.isEmpty else {
            throw APIError.invalidParameter(param, "Product name must not be empty or blank")
        }
        guard name.unicodeScalars.count <= maxNameLength else {
            throw APIError.invalidParameter(param, "Product name must be at most \(maxNameLength) characters")
        }
        return name
    }

    /// Trims and checks a product type; returns the stored form.
    package static func validType(_ raw: String, param: String = "type") throws(APIError) -> String {
        try checkNoNUL(raw, param: param)
        let type = trimmed(raw)
        guard !type.isEmpty, type.unicodeScalars.count <= maxTypeLength else {
            throw APIError.invalidParameter(param, "Product type must be 1 to \(maxTypeLength) characters")
        }
        return type
    }

    /// Trims and checks a tag: 1 to 64 characters, no comma (`?tag=` lists tags with commas), no NUL.
    package static func validTag(_ raw: String, param: String) throws(APIError) -> String {
        try checkNoNUL(raw, param: param)
        let tag = trimmed(raw)
        guard !tag.isEmpty, tag.unicodeScalars.count <= maxTagLength, !tag.utf8.contains(UInt8(ascii: ",")) else {
            throw APIError.invalidParameter(param, "'\(param)' must be a tag of 1 to \(maxTagLength) characters without a comma")
        }
        return tag
    }

    /// Checks a description (kept as given, white space included): at most 40,000 characters, no NUL.
    package static func validDescription(_ description: String, param: String = "description") throws(APIError) -> String {
        try checkNoNUL(description, param: param)
        guard description.unicodeScalars.count <= maxDescriptionLength else {
            throw APIError.invalidParameter(param, "description must be at most \(maxDescriptionLength) characters")
        }
        return description
    }

    /// An absolute http(s) URL starting with its host (a name or an IPv4 address: no brackets before the path), without
    /// white space or control characters (RFC 3986 allows neither); the OpenAPI documents state the same rule as a pattern.
    package static func validImageURL(_ url: String, param: String) throws(APIError) -> String {
        guard url.unicodeScalars.count <= maxImageURLLength else {
            throw APIError.invalidParameter(param, "'\(param)' must be at most \(maxImageURLLength) characters")
        }
        let utf8 = url.utf8
        // Schemes are case-insensitive (RFC 3986, 3.1).
        let head = String(decoding: utf8.prefix(8), as: UTF8.self).lowercased()
        let scheme: Int
        if head.hasPrefix("https://") {
            scheme = 8
        } else if head.hasPrefix("http://") {
            scheme = 7
        } else {
            throw APIError.invalidParameter(param, "'\(param)' must be an absolute http or https URL")
        }
        // The host must start right after "//"; white space, control characters, `\` and `"` are not URL characters.
        // Brackets (IPv6 literals) are refused in the host part: clients' URL parsers reject unbalanced ones.
        let authority = utf8.dropFirst(scheme).prefix { !"/?#".utf8.contains($0) }
        guard let first = authority.first, !"@:".utf8.contains(first),
              !authority.contains(where: { $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "]") }),
              !utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F || $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") })
        else {
            throw APIError.invalidParameter(param, "'\(param)' must be an absolute http or https URL with a host and no spaces")
        }
        return url
    }

    /// Without leading and trailing white space (Unicode's definition), sparing Foundation's bridging on every write.
    static func trimmed(_ text: String) -> String {
        guard let first = text.firstIndex(where: { !$0.isWhitespace }) else { return "" }
        let last = text.lastIndex(where: { !$0.isWhitespace })!
        return first == text.startIndex && last == text.index(before: text.endIndex) ? text : String(text[first...last])
    }

    /// Checks one metadata entry: the key 1 to 40 characters without brackets, the value at most 500. Lengths are
    /// counted in Unicode scalars, as JSON Schema (and the OpenAPI documents) count them.
    package static func validateMetadataEntry(_ key: String, _ value: String?, param: String = "metadata") throws(APIError) {
        // Byte checks: `String.contains(_:)` with a string goes through Foundation, and showed in profiles.
        guard !key.utf8.contains(0), !(value?.utf8.contains(0) ?? false) else {
            throw APIError.invalidParameter("\(param)[\(key)]", "'\(param)[\(key)]' must not contain the NUL character")
        }
        guard !key.isEmpty, key.unicodeScalars.count <= maxMetadataKeyLength,
              !key.utf8.contains(where: { $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "]") })
        else {
            throw APIError.invalidParameter(
                "\(param)[\(key)]", "metadata keys must be 1 to \(maxMetadataKeyLength) characters without [ or ]")
        }
        guard (value?.unicodeScalars.count ?? 0) <= maxMetadataValueLength else {
            throw APIError.invalidParameter(
                "\(param)[\(key)]", "metadata values must be at most \(maxMetadataValueLength) characters")
        }
    }
}
