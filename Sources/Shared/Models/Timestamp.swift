import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// RFC 3339 UTC timestamps with milliseconds, the one date format of the API.
package enum Timestamp {
    private static let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
    private static let styleWithoutFraction = Date.ISO8601FormatStyle(timeZone: .gmt)

    /// The current time as `2026-01-07T14:00:00.000Z`.
    package static func now() -> String { format(Date()) }

    /// The current time in milliseconds since the epoch.
    package static func nowMilliseconds() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    /// Formats with `gmtime_r`: on every write, where Foundation's formatter was measurably slow.
    package static func format(_ date: Date) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(milliseconds.floorDivided(by: 1000))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var text = [UInt8](repeating: 0, count: 24)
        func put(_ value: Int, _ width: Int, at offset: Int) {
            var value = value
            for index in stride(from: offset + width - 1, through: offset, by: -1) {
                text[index] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
            }
        }
        put(Int(parts.tm_year) + 1900, 4, at: 0)
        text[4] = UInt8(ascii: "-")
        put(Int(parts.tm_mon) + 1, 2, at: 5)
        text[7] = UInt8(ascii: "-")
        put(Int(parts.tm_mday), 2, at: 8)
        text[10] = UInt8(ascii: "T")
        put(Int(parts.tm_hour), 2, at: 11)
        text[13] = UInt8(ascii: ":")
        put(Int(parts.tm_min), 2, at: 14)
        text[16] = UInt8(ascii: ":")
        put(Int(parts.tm_sec), 2, at: 17)
        text[19] = UInt8(ascii: ".")
        put(Int(milliseconds.floorModulo(by: 1000)), 3, at: 20)
        text[23] = UInt8(ascii: "Z")
        return String(decoding: text, as: UTF8.self)
    }

    /// Parses an RFC 3339 timestamp, with or without fractional seconds.
    package static func parse(_ string: String) -> Date? {
        guard isValid(string) else { return nil }
        return (try? style.parse(string)) ?? (try? styleWithoutFraction.parse(string))
    }

    /// Whether a string is an RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, upper-case
    /// `T` and `Z` as Foundation's parser requires), checked
    /// without allocating: the Database Service checks two on every stored product.
    package static func isValid(_ string: String) -> Bool {
        let utf8 = Array(string.utf8)
        func number(_ offset: Int, _ width: Int) -> Int? {
            guard offset + width <= utf8.count else { return nil }
            var value = 0
            for byte in utf8[offset..<offset + width] {
                guard (0x30...0x39).contains(byte) else { return nil }
                value = value * 10 + Int(byte - 0x30)
            }
            return value
        }
        guard utf8.count >= 20,
              number(0, 4) != nil, utf8[4] == UInt8(ascii: "-"),
              let month = number(5, 2), (1...12).contains(month), utf8[7] == UInt8(ascii: "-"),
              let day = number(8, 2), (1...31).contains(day),
              utf8[10] == UInt8(ascii: "T"),
              let hour = number(11, 2), hour < 24, utf8[13] == UInt8(ascii: ":"),
              let minute = number(14, 2), minute < 60, utf8[16] == UInt8(ascii: ":"),
              let second = number(17, 2), second <= 60
        else { return false }
        var index = 19
        if utf8[index] == UInt8(ascii: ".") {
            index += 1
            let start = index
            while index < utf8.count, (0x30...0x39).contains(utf8[index]) { index += 1 }
            guard index > start else { return false }
        }
        guard index < utf8.count else { return false }
        switch utf8[index] {
        case UInt8(ascii: "Z"):
            return index + 1 == utf8.count
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard index + 6 == utf8.count, let offsetHours = number(index + 1, 2), offsetHours < 24,
                  utf8[index + 3] == UInt8(ascii: ":"), let offsetMinutes = number(index + 4, 2), offsetMinutes < 60
            else { return false }
            return true
        default:
            return false
        }
    }
}

extension Int64 {
    fileprivate func floorDivided(by divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }

    fileprivate func floorModulo(by divisor: Int64) -> Int64 {
        self - floorDivided(by: divisor) * divisor
    }
}

extension Timestamp {
    /// Milliseconds since the Unix epoch of an RFC 3339 timestamp (fraction truncated to milliseconds, offset applied);
    /// computed without Foundation, since the cache keeps one per product.
    package static func epochMilliseconds(_ string: String) -> Int64? {
        guard isValid(string) else { return nil }
        let utf8 = Array(string.utf8)
        func number(_ offset: Int, _ width: Int) -> Int64 {
            utf8[offset..<offset + width].reduce(0) { $0 * 10 + Int64($1 - 0x30) }
        }
        let days = daysSinceEpoch(year: number(0, 4), month: number(5, 2), day: number(8, 2))
        var milliseconds = ((days * 24 + number(11, 2)) * 60 + number(14, 2)) * 60_000 + min(number(17, 2), 59) * 1000
        var index = 19
        if utf8[index] == UInt8(ascii: ".") {
            index += 1
            var scale: Int64 = 100
            while (0x30...0x39).contains(utf8[index]) {
                milliseconds += Int64(utf8[index] - 0x30) * scale
                scale /= 10
                index += 1
            }
        }
        if utf8[index] != UInt8(ascii: "Z") {
            let offset = (number(index + 1, 2) * 60 + number(index + 4, 2)) * 60_000
            milliseconds += utf8[index] == UInt8(ascii: "+") ? -offset : offset
        }
        return milliseconds
    }

    /// Formats milliseconds since the Unix epoch as `2026-01-07T14:00:00.000Z`.
    package static func format(epochMilliseconds: Int64) -> String {
        format(Date(timeIntervalSince1970: Double(epochMilliseconds) / 1000))
    }

    /// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    private static func daysSinceEpoch(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
