import HTTPTypes
import Logging
import Synchronization

/// The ids that tie one request's log lines together, across both services.
package struct RequestTrace: Sendable, Equatable {
    /// `X-Request-ID`: the client's when sane, else generated.
    package var requestID: String
    /// The W3C trace id (32 hex digits): from an incoming `traceparent`, else generated.
    package var traceID: String

    /// The trace of the request being handled by the current task, if any.
    @TaskLocal package static var current: RequestTrace?

    /// A `traceparent` for a call made on behalf of this request: same trace, a new span.
    package func outgoingTraceparent() -> String { "00-\(traceID)-\(Self.randomHex(words: 1))-01" }

    /// Reads (or makes up) the ids of an incoming request.
    package init(headers: HTTPFields) {
        requestID = headers[.xRequestID].flatMap { Self.isSane($0) ? $0 : nil } ?? Self.randomHex(words: 2)
        traceID = headers[.traceparent].flatMap(Self.parseTraceparent) ?? Self.randomHex(words: 2)
    }

    /// Adds `request_id` and `trace_id` to every line logged while a request is handled, read from the task
    /// local when a line is written: nothing is built per request for lines that are never written.
    package static let metadataProvider = Logger.MetadataProvider {
        guard let trace = RequestTrace.current else { return [:] }
        return ["request_id": .string(trace.requestID), "trace_id": .string(trace.traceID)]
    }

    /// 1 to 128 of `A-Z a-z 0-9 . _ - : /`: safe to log and echo.
    static func isSane(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 128
            && id.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || "._-:/".utf8.contains($0) }
    }

    /// The trace id of a version-00 `traceparent`, if valid and not all zeros.
    static func parseTraceparent(_ value: String) -> String? {
        let parts = value.split(separator: "-")
        guard parts.count == 4, parts[0] == "00", parts[1].utf8.count == 32, parts[2].utf8.count == 16, parts[3].utf8.count == 2,
              parts[1].utf8.allSatisfy(isLowerHex), parts[2].utf8.allSatisfy(isLowerHex),
              parts[1].contains(where: { $0 != "0" }), parts[2].contains(where: { $0 != "0" })
        else { return nil }
        return String(parts[1])
    }

    private static func isLowerHex(_ byte: UInt8) -> Bool { (0x30...0x39).contains(byte) || (0x61...0x66).contains(byte) }

    /// `words` random 64-bit words from `IDGenerator` in lowercase hex, written straight into the string's
    /// storage: ids need to be unique, not secret, and a system call per word showed in profiles.
    static func randomHex(words: Int) -> String {
        String(unsafeUninitializedCapacity: words * 16) { buffer in
            let digits: StaticString = "0123456789abcdef"
            for word in 0..<words {
                var value = IDGenerator.next()
                for index in stride(from: word * 16 + 15, through: word * 16, by: -1) {
                    buffer[index] = digits.utf8Start[Int(value & 0xF)]
                    value >>= 4
                }
            }
            return words * 16
        }
    }
}

/// Random 64-bit words for request, trace and span ids without a system call each: SplitMix64 over an atomic
/// counter seeded once from the system's generator (never for secrets: those use `SystemRandomNumberGenerator`).
enum IDGenerator {
    private static let state = Atomic<UInt64>({
        var system = SystemRandomNumberGenerator()
        return system.next()
    }())

    static func next() -> UInt64 {
        let (previous, _) = state.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed)
        var z = previous &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
