import HTTPTypes
import Hummingbird
import Logging
import Metrics
import Synchronization

/// What a service lets browsers do (the Products Service's CORS): headers on every response, and the answer to a
/// preflight `OPTIONS`.
package protocol BrowserAccess: Sendable {
    func preflight(_ request: Request) -> Response
    func apply(to response: inout Response, for request: Request)
}

/// The one middleware in front of every route of both services: request and trace ids, browser access, errors in the one
/// JSON shape, request metrics and the access log line, in a single async frame. Each was a middleware of its
/// own before, and their frames, label allocations and post-write closures showed in profiles.
///
/// The request id is echoed in `X-Request-ID`, put on every log line of the request (through the task local
/// that `RequestTrace.metadataProvider` reads), in error bodies, and on calls made to the Database Service.
/// Each client request is logged once, at `info`; probes and internal polls at `debug`, so an idle stack
/// stays quiet.
package struct EdgeMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Paths asked by health checkers, scrapers and the other service's polling: logged at `debug`.
    package static var probePaths: Set<String> { ["/livez", "/readyz", "/health", "/metrics", "/api/keys/status"] }

    let browserAccess: (any BrowserAccess)?
    let metrics = RequestMetrics()
    let quietPaths: Set<String>

    /// `browserAccess` nil: no CORS headers, and `OPTIONS` answers 204 bare.
    package init(browserAccess: (any BrowserAccess)? = nil, quietPaths: Set<String> = Self.probePaths) {
        self.browserAccess = browserAccess
        self.quietPaths = quietPaths
    }

    package func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        let trace = RequestTrace(headers: request.headers)
        let active = metrics.active(request.method)
        active.increment()
        var response: Response
        let failed: Bool
        if request.method == .options {
            (response, failed) = (browserAccess?.preflight(request) ?? Response(status: .noContent), false)
        } else {
            (response, failed) = await RequestTrace.$current.withValue(trace) {
                do {
                    return (try await next(request, context), false)
                } catch {
                    return (ErrorResponses.response(for: error, to: request, context: context), true)
                }
            }
            browserAccess?.apply(to: &response, for: request)
        }
        response.headers[.xRequestID] = trace.requestID
        let elapsed = ContinuousClock.now - started
        active.decrement()
        metrics.record(
            route: context.endpointPath ?? (failed ? "NotFound" : "Unknown"), method: request.method, status: response.status,
            failed: failed, elapsed: elapsed)
        if context.logger.logLevel <= .info {
            logAccess(request, context: context, trace: trace, status: response.status, elapsed: elapsed)
        }
        return response
    }

    private func logAccess(_ request: Request, context: Context, trace: RequestTrace, status: HTTPResponse.Status, elapsed: Duration) {
        let milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        // Set on this line itself: the task local is gone once the route has answered.
        context.logger.log(
            level: quietPaths.contains(request.uri.path) ? .debug : .info,
            "request",
            metadata: [
                "request_id": .string(trace.requestID), "trace_id": .string(trace.traceID),
                "method": "\(request.method)", "path": "\(request.uri.path)", "status": "\(status.code)",
                "duration_ms": "\((milliseconds * 1000).rounded() / 1000)",
            ])
    }
}

/// Request counts, latency and errors by route, method and status, with the names Hummingbird's
/// `MetricsMiddleware` uses (`hb_requests`, `http_server_request_duration`, `hb_request_errors`,
/// `http_server_active_requests`). Each combination's handles are made once and looked up under a lock, and
/// the common methods' active-request meters are made up front.
package final class RequestMetrics: Sendable {
    private struct Key: Hashable {
        var route: String
        var method: HTTPRequest.Method
        var status: Int
    }

    private struct Handles: Sendable {
        let requests: Counter
        let duration: Metrics.Timer
        let errors: Counter
    }

    /// Route, method and status combinations are bounded: routes are the router's patterns, not request paths.
    private let handles = Mutex<[Key: Handles]>([:])
    private let commonMeters: [HTTPRequest.Method: Meter]
    /// Methods outside the common ones (answered 404 or 405) share one `OTHER` label: labels stay bounded.
    private static let otherMethod = HTTPRequest.Method("OTHER")!
    private let otherMeter = RequestMetrics.meter(RequestMetrics.otherMethod)

    package init() {
        MetricsSetup.bootstrap()
        let methods: [HTTPRequest.Method] = [.get, .head, .post, .put, .patch, .delete, .options]
        commonMeters = Dictionary(uniqueKeysWithValues: methods.map { ($0, Self.meter($0)) })
    }

    private static func meter(_ method: HTTPRequest.Method) -> Meter {
        Meter(label: "http.server.active_requests", dimensions: [("http.request.method", method.rawValue)])
    }

    func active(_ method: HTTPRequest.Method) -> Meter { commonMeters[method] ?? otherMeter }

    func record(route: String, method: HTTPRequest.Method, status: HTTPResponse.Status, failed: Bool, elapsed: Duration) {
        let key = Key(route: route, method: commonMeters[method] == nil ? Self.otherMethod : method, status: status.code)
        let handles = handles.withLock { cache in
            if let found = cache[key] { return found }
            let dimensions = [
                ("http.route", key.route), ("http.request.method", key.method.rawValue), ("http.response.status_code", String(key.status)),
            ]
            let made = Handles(
                requests: Counter(label: "hb.requests", dimensions: dimensions),
                duration: Metrics.Timer(label: "http.server.request.duration", dimensions: dimensions, preferredDisplayUnit: .seconds),
                errors: Counter(
                    label: "hb.request.errors",
                    dimensions: [("http.route", key.route), ("http.request.method", key.method.rawValue), ("error.type", String(key.status))]))
            cache[key] = made
            return made
        }
        handles.requests.increment()
        handles.duration.recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        if failed { handles.errors.increment() }
    }
}
