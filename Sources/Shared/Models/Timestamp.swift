import Foundation

/// RFC 3339 UTC timestamps with milliseconds, the one date format of the API.
package enum Timestamp {
    private static let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
    private static let styleWithoutFraction = Date.ISO8601FormatStyle(timeZone: .gmt)

    /// The current time as `2026-01-07T14:00:00.000Z`.
    package static func now() -> String { format(Date()) }

    package static func format(_ date: Date) -> String { style.format(date) }

    /// Parses an RFC 3339 timestamp, with or without fractional seconds.
    package static func parse(_ string: String) -> Date? {
        (try? style.parse(string)) ?? (try? styleWithoutFraction.parse(string))
    }
}
