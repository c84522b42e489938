import Foundation
import NIOCore
import Testing
@testable import Shared

@Suite("Timestamps")
struct TimestampTests {
    @Test("the fast formatter agrees with Foundation's, before 1970 too")
    func formatting() {
        let foundation = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
        // Exactly representable fractions: other binary fractions round differently between implementations.
        for seconds in [0, 1_767_794_400.5, 951_782_400.875, -86_400.25, 4_102_444_799.125, 1_709_164_800] as [Double] {
            let date = Date(timeIntervalSince1970: seconds)
            #expect(Timestamp.format(date) == foundation.format(date), "\(seconds)")
        }
    }

    @Test("RFC 3339 shapes are recognised; others are not")
    func validity() {
        for valid in ["2026-01-07T14:00:00Z", "2026-01-07T14:00:00.123Z", "2026-01-07T14:00:00.1+02:00", "2026-01-07T14:00:00-05:30"] {
            #expect(Timestamp.isValid(valid), "\(valid)")
            #expect(Timestamp.parse(valid) != nil, "\(valid)")
        }
        for invalid in ["", "2026-01-07", "2026-13-07T14:00:00Z", "2026-01-07T24:00:00Z", "2026-01-07T14:00:00", "2026-01-07T14:00:00.Z",
                        "2026-01-07T14:00:00+0200", "2026-01-07 14:00:00Z", "2026-01-07t14:00:00z", "yesterday", "2026-01-07T14:00:00Zjunk"] {
            #expect(!Timestamp.isValid(invalid), "\(invalid)")
        }
    }
}
