import NIOCore

/// A product's history: its versions as the change log keeps them (`--change-retention`), and restoring one.
package enum ProductHistory {
    /// Versions listed per page: `limit` 1 to 100, 20 by default.
    package static let limitRange = 1...100
    package static let defaultLimit = 20
    /// The Database Service's page headers: whether older versions exist, and the oldest version listed.
    package static let hasMoreHeader = EventPageHeaders.hasMore
    package static let lastVersionHeader = "Page-Last-Version"

    /// `limit` and `starting_after` (a version: the page holds the versions older than it).
    package struct Query: Sendable, Equatable {
        package var limit = ProductHistory.defaultLimit
        package var startingAfter: Int64?

        package init(limit: Int = ProductHistory.defaultLimit, startingAfter: Int64? = nil) {
            self.limit = limit
            self.startingAfter = startingAfter
        }

        /// Parses a raw query string; unknown, repeated or invalid parameters are 400s naming the parameter.
        package static func parse(query: String?) throws(APIError) -> Query {
            let (limit, startingAfter) = try NumberedPage.parse(query: query, limits: limitRange, cursor: "a version")
            return Query(limit: limit ?? defaultLimit, startingAfter: startingAfter)
        }

        /// The query string of this page's listing with `startingAfter` in place of its own.
        package func queryString(startingAfter: Int64?) -> String {
            NumberedPage.queryString(limit: limit, startingAfter: startingAfter)
        }
    }

    /// `POST /products/{id}/restore` (and the Database Service's): `{"version": n}`.
    package struct RestoreRequest: Codable, Sendable, Equatable {
        package var version: Int64
        package init(version: Int64) { self.version = version }

        package static let fields: Set<String> = ["version"]

        /// Checks the version asked for.
        package func validated() throws(APIError) -> RestoreRequest {
            guard version >= 1 else { throw APIError.invalidParameter("version", "version must be a positive integer") }
            return self
        }
    }
}

/// A listing paged by a number (a version, a line): `limit` within a range and `starting_after`, a positive integer.
package enum NumberedPage {
    /// The `limit` and `starting_after` given; unknown, repeated or invalid parameters are 400s naming the parameter.
    package static func parse(
        query: String?, limits: ClosedRange<Int>, cursor what: String
    ) throws(APIError) -> (limit: Int?, startingAfter: Int64?) {
        var result: (limit: Int?, startingAfter: Int64?) = (nil, nil)
        var seen = Set<String>()
        for (name, value) in try QueryString.parse(query) {
            guard seen.insert(name).inserted else { throw APIError.invalidParameter(name, "'\(name)' may be given only once") }
            switch name {
            case "limit":
                guard let limit = Int(value), limits.contains(limit) else {
                    throw APIError.invalidParameter(name, "limit must be an integer from \(limits.lowerBound) to \(limits.upperBound)")
                }
                result.limit = limit
            case "starting_after":
                guard let number = Int64(value), number >= 1 else {
                    throw APIError.invalidParameter(name, "starting_after must be \(what), a positive integer")
                }
                result.startingAfter = number
            default:
                throw APIError.unknownParameter(name, in: "query")
            }
        }
        return result
    }

    /// `limit` and `starting_after` as a query string.
    package static func queryString(limit: Int, startingAfter: Int64?) -> String {
        var pairs: [(name: String, value: String)] = [("limit", String(limit))]
        if let startingAfter { pairs.append(("starting_after", String(startingAfter))) }
        return QueryString.encode(pairs)
    }
}
