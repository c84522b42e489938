import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Synchronization

/// The ids that tie one request's log lines together, across both services.
package struct RequestTrace: Sendable, Equatable {
    /// `X-Request-ID`: the client's when sane, else generated.
    package var requestID: String
    /// The W3C trace id (32 hex digits): from an incoming `traceparent`, else generated.
    package var traceID: String
    /// The span of the current request (16 hex digits).
    package var spanID: String

    /// The trace of the request being handled by the current task, if any.
    @TaskLocal package static var current: RequestTrace?

    /// A `traceparent` for a call made on behalf of this request: same trace, a new span.
    package func outgoingTraceparent() -> String { "00-\(traceID)-\(Self.randomHex(bytes: 8))-01" }

    /// Reads (or makes up) the ids of an incoming request.
    package init(headers: HTTPFields) {
        requestID = headers[.xRequestID].flatMap { Self.isSane($0) ? $0 : nil } ?? Self.randomHex(bytes: 16)
        let parent = headers[.traceparent].flatMap(Self.parseTraceparent)
        traceID = parent ?? Self.randomHex(bytes: 16)
        spanID = Self.randomHex(bytes: 8)
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

    /// `count` random bytes (a multiple of 8) in lowercase hex, eight at a time, from `IDGenerator`: ids need
    /// to be unique and unguessable enough to not collide, not secret, and a system call per word showed in profiles.
    static func randomHex(bytes count: Int) -> String {
        var text = ""
        text.reserveCapacity(count * 2)
        for _ in 0..<(count + 7) / 8 { text += String(IDGenerator.next(), radix: 16).leftPadded(to: 16) }
        return text
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

/// Gives every request its ids: echoed in `X-Request-ID`, on every log line of the request (the context's logger,
/// where the error middleware also finds it for error bodies), and (as a task local) on calls made to the
/// Database Service. Logs each client request once, at `info`; probes and internal polls at `debug`, so an idle
/// stack stays quiet.
package struct RequestIDMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Paths asked by health checkers, scrapers and the other service's polling: logged at `debug`.
    package static var probePaths: Set<String> { ["/livez", "/readyz", "/health", "/metrics", "/api/keys/status"] }

    let quietPaths: Set<String>

    package init(quietPaths: Set<String> = Self.probePaths) {
        self.quietPaths = quietPaths
    }

    package func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let trace = RequestTrace(headers: request.headers)
        var context = context
        context.logger[metadataKey: "request_id"] = "\(trace.requestID)"
        context.logger[metadataKey: "trace_id"] = "\(trace.traceID)"
        context.logger[metadataKey: "hb.request.id"] = nil
        let started = ContinuousClock.now
        do {
            var response = try await RequestTrace.$current.withValue(trace) { try await next(request, context) }
            response.headers[.xRequestID] = trace.requestID
            log(request, context: context, status: response.status, since: started)
            return response
        } catch {
            // Errors are turned into responses further in; whatever escapes is answered by the server.
            log(request, context: context, status: (error as? any HTTPResponseError)?.status ?? .internalServerError, since: started)
            throw error
        }
    }

    private func log(_ request: Request, context: Context, status: HTTPResponse.Status, since started: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - started
        let milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        context.logger.log(
            level: quietPaths.contains(request.uri.path) ? .debug : .info,
            "request",
            metadata: [
                "method": "\(request.method)", "path": "\(request.uri.path)", "status": "\(status.code)",
                "duration_ms": "\((milliseconds * 1000).rounded() / 1000)",
            ])
    }
}
