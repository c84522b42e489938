import Foundation
import Synchronization

/// Generates product ids `prod_` + a 26-character ULID: 48 bits of milliseconds and 80 random bits.
///
/// Ids sort by creation time; within one millisecond (or if the clock steps back) the previous id is
/// incremented, so ids from one process are strictly increasing.
final class ProductIDGenerator: Sendable {
    private let last = Mutex<UInt128>(0)

    private static let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)
    static let prefix = "prod_"
    /// What the ids start with: `prod_` for products, `imp_` for import jobs.
    let prefix: String

    init(prefix: String = ProductIDGenerator.prefix) { self.prefix = prefix }

    func next(now: Date = Date()) -> String {
        let milliseconds = UInt128(UInt64(max(0, now.timeIntervalSince1970 * 1000)))
        // Each draw is a system call: take the 80 random bits in two.
        var generator = SystemRandomNumberGenerator()
        let random = UInt128(generator.next() as UInt64) << 16 | UInt128(generator.next() as UInt16)
        let candidate = (milliseconds << 80) | random
        let value = last.withLock { last in
            last = candidate > last ? candidate : last &+ 1
            return last
        }
        return prefix + Self.encode(value)
    }

    /// When a product id (`prod_` and a ULID) was minted; nil for any other id.
    static func mintTime(of id: String) -> Date? {
        mintMilliseconds(of: id).map { Date(timeIntervalSince1970: Double($0) / 1000) }
    }

    /// The same in Unix milliseconds.
    static func mintMilliseconds(of id: String) -> Int64? {
        let utf8 = id.utf8
        guard utf8.count == prefix.utf8.count + 26, id.hasPrefix(prefix) else { return nil }
        var milliseconds: UInt64 = 0
        for byte in utf8.dropFirst(prefix.utf8.count).prefix(10) {
            guard let digit = alphabet.firstIndex(of: byte) else { return nil }
            milliseconds = milliseconds << 5 | UInt64(digit)
        }
        return Int64(exactly: milliseconds)
    }

    static func encode(_ value: UInt128) -> String {
        var characters = [UInt8](repeating: 0, count: 26)
        var remaining = value
        for index in stride(from: 25, through: 0, by: -1) {
            characters[index] = alphabet[Int(remaining & 0x1F)]
            remaining >>= 5
        }
        return String(decoding: characters, as: UTF8.self)
    }
}
