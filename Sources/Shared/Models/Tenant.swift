/// Tenant ids: 1 to 64 characters of lowercase letters, digits, `-` and `_`.
package enum Tenant {
    package static func isValid(_ tenant: String) -> Bool {
        !tenant.isEmpty && tenant.utf8.count <= 64
            && tenant.utf8.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2D || $0 == 0x5F }
    }
}

/// The `limit` query parameter shared by the list routes of both services.
package enum ListLimit {
    package static let `default` = 100
    package static let range = 1...1000

    /// Parses `limit`, defaulting when absent; anything outside 1...1000 is a 400 naming `limit`.
    package static func parse(_ raw: String?) throws(APIError) -> Int {
        guard let raw else { return `default` }
        guard let limit = Int(raw), range.contains(limit) else {
            throw APIError.invalidParameter("limit", "limit must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return limit
    }
}
