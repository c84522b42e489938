import ArgumentParser
import HummingbirdCore
import Logging
import Metrics
import NIOCore
import NIOHTTPTypes
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How long a client may take over each part of an exchange, and how many connections may be open at once.
package struct ConnectionLimits: Sendable, Equatable {
    /// From a connection's opening, or the first byte of its next request, to the end of the request's head.
    package var headerTimeout: Duration = .seconds(10)
    /// The longest wait for the next piece of a request's body.
    package var bodyTimeout: Duration = .seconds(60)
    /// The longest a kept-alive connection may sit between requests (above clients' pools, which close theirs at 60 s).
    package var idleTimeout: Duration = .seconds(75)
    /// Open connections at most; beyond it a connection is answered 503 and closed at once.
    package var maxConnections = 16_384

    package init() {}
}

/// The flags of `ConnectionLimits`, the same on both services.
package struct ConnectionOptions: ParsableArguments {
    @Option(help: "Seconds a client has to send a request's head, from connecting or from its next request's first byte (env HEADER_TIMEOUT).")
    package var headerTimeout: Double = Settings.env("HEADER_TIMEOUT", default: 10)

    @Option(help: "Seconds a request's body may pause between pieces (env BODY_TIMEOUT).")
    package var bodyTimeout: Double = Settings.env("BODY_TIMEOUT", default: 60)

    @Option(help: "Seconds a kept-alive connection may sit between requests (env IDLE_TIMEOUT).")
    package var idleTimeout: Double = Settings.env("IDLE_TIMEOUT", default: 75)

    @Option(help: "Open connections at most, and at most the file descriptor limit less 256; more are answered 503 and closed (env MAX_CONNECTIONS).")
    package var maxConnections: Int = Settings.env("MAX_CONNECTIONS", default: 16_384)

    package init() {}

    /// The limits these flags give, the cap lowered to what the process's file descriptor limit allows.
    package func limits() throws -> ConnectionLimits {
        for (flag, seconds) in [("header-timeout", headerTimeout), ("body-timeout", bodyTimeout), ("idle-timeout", idleTimeout)]
        where !(seconds > 0 && seconds <= 86_400) {
            throw ValidationError("--\(flag): '\(seconds)' is not a number of seconds from more than 0 to 86400")
        }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections: '\(maxConnections)' is not at least 1") }
        var limits = ConnectionLimits()
        limits.headerTimeout = .milliseconds(Int64(headerTimeout * 1000))
        limits.bodyTimeout = .milliseconds(Int64(bodyTimeout * 1000))
        limits.idleTimeout = .milliseconds(Int64(idleTimeout * 1000))
        limits.maxConnections = min(maxConnections, max(1, Self.descriptorLimit - 256))
        return limits
    }

    /// The process's soft limit on open file descriptors.
    static var descriptorLimit: Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return Int.max }
        return Int(clamping: limit.rlim_cur)
    }
}

/// Keeps slow and greedy clients from holding a server's file descriptors: each connection has a deadline for
/// each part of an exchange (`ConnectionLimits`), and connections past the cap are refused at once. One per
/// server; its figures are metrics (`http_connections_open`, `http_connections_refused_total`,
/// `http_connections_timed_out_total{phase}`).
package final class ConnectionGuard: Sendable {
    package let limits: ConnectionLimits
    private let open = Atomic<Int>(0)
    private let openGauge = Gauge(label: "http_connections_open")
    private let refused = Counter(label: "http_connections_refused_total")
    private let timedOut: [ConnectionPhase: Counter] = [
        .header: Counter(label: "http_connections_timed_out_total", dimensions: [("phase", "header")]),
        .body: Counter(label: "http_connections_timed_out_total", dimensions: [("phase", "body")]),
        .idle: Counter(label: "http_connections_timed_out_total", dimensions: [("phase", "idle")]),
    ]

    package init(limits: ConnectionLimits) { self.limits = limits }

    /// Connections open now.
    package var openConnections: Int { open.load(ordering: .relaxed) }

    /// An HTTP/1.1 server whose connections this guard watches.
    package var http1: HTTPServerBuilder {
        HTTPServerBuilder { responder in
            GuardedHTTP1Channel(
                inner: HTTP1Channel(responder: responder, configuration: .init(additionalChannelHandlers: [ExchangeWatcher()])), guard: self)
        }
    }

    /// Counts a new connection; false when it is over the cap (it is counted still, until it closes).
    fileprivate func opened() -> Bool {
        let count = open.wrappingAdd(1, ordering: .relaxed).newValue
        openGauge.record(count)
        guard count <= limits.maxConnections else {
            refused.increment()
            return false
        }
        return true
    }

    fileprivate func closed() { openGauge.record(open.wrappingSubtract(1, ordering: .relaxed).newValue) }

    fileprivate func expired(_ phase: ConnectionPhase) { timedOut[phase]?.increment() }

    fileprivate func timeout(_ phase: ConnectionPhase) -> TimeAmount? {
        switch phase {
        case .header: Self.amount(limits.headerTimeout)
        case .body: Self.amount(limits.bodyTimeout)
        case .idle: Self.amount(limits.idleTimeout)
        case .processing: nil
        }
    }

    /// The longest a connection's deadline check waits: half the shortest deadline, so that a deadline set while a
    /// later check is pending (the head of a kept-alive connection's next request) is enforced at most that late.
    fileprivate var checkInterval: TimeAmount {
        .nanoseconds(Self.amount(min(limits.headerTimeout, limits.bodyTimeout, limits.idleTimeout)).nanoseconds / 2)
    }

    private static func amount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// Where a connection is in its exchange, and so which deadline it has.
enum ConnectionPhase: Sendable, Hashable {
    /// Waiting for a request's head to be complete.
    case header
    /// Reading a request's body.
    case body
    /// The server has the request: no deadline (a long poll may wait).
    case processing
    /// Between requests.
    case idle
}

/// An HTTP/1.1 channel with a `ConnectionWatcher` ahead of the HTTP decoder.
struct GuardedHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let inner: HTTP1Channel
    let `guard`: ConnectionGuard

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let watcher = ConnectionWatcher(guard: `guard`)
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(watcher, position: .first)
        }.flatMap { inner.setup(channel: channel, logger: logger) }
    }

    func handle(value: Value, logger: Logger) async { await inner.handle(value: value, logger: logger) }
}

/// Sees a connection's bytes before the HTTP decoder: counts it, refuses it over the cap, and closes it when the
/// deadline of its phase passes. `ExchangeWatcher`, after the decoder, tells it where requests and responses end.
final class ConnectionWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let `guard`: ConnectionGuard
    private var context: ChannelHandlerContext?
    private var phase = ConnectionPhase.header
    /// When the current phase's time is up; nil while the server works on a request.
    private var deadline: NIODeadline?
    /// Whether a deadline check is scheduled. Changing phase only sets `deadline`: a check is scheduled when none
    /// is, and one that finds the deadline moved schedules the next. No timer is cancelled (NIO finds a cancelled
    /// task by a linear search of the loop's timers) and a request schedules none of its own.
    private var checkPending = false
    private var counted = false
    private var refusing = false
    /// Requests whose head arrived and whose response has not ended (more than one when a client pipelines).
    private var unanswered = 0

    init(guard: ConnectionGuard) { self.guard = `guard` }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { opened(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline = nil
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        opened(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline = nil
        if counted {
            counted = false
            self.guard.closed()
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refusing else { return }
        // The first byte of the next request starts its head's deadline.
        if phase == .idle && unanswered == 0 { arm(.header) }
        context.fireChannelRead(data)
    }

    private func opened(_ context: ChannelHandlerContext) {
        guard !counted else { return }
        counted = true
        guard self.guard.opened() else {
            refusing = true
            let body = #"{"error":"Too many connections; retry shortly","code":"too_many_connections","param":null}"#
            var response = context.channel.allocator.buffer(capacity: 256)
            response.writeString(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n"
                    + "Retry-After: 1\r\nConnection: close\r\n\r\n" + body)
            context.writeAndFlush(NIOAny(response)).assumeIsolatedUnsafeUnchecked().whenComplete { _ in context.close(promise: nil) }
            return
        }
        arm(.header)
    }

    /// A request's head is complete.
    func headReceived() {
        unanswered += 1
        arm(.body)
    }

    /// A piece of a request's body arrived: its deadline starts again.
    func bodyReceived() { if phase == .body { arm(.body) } }

    /// The request is complete: the server has it (unless it already answered, before reading it all).
    func requestReceived() { arm(unanswered == 0 ? .idle : .processing) }

    /// A response ended: the connection waits for the next request.
    func responseSent() {
        unanswered = max(0, unanswered - 1)
        if unanswered == 0 && phase == .processing { arm(.idle) }
    }

    private func arm(_ next: ConnectionPhase) {
        phase = next
        deadline = self.guard.timeout(next).map { .now() + $0 }
        if !checkPending, let deadline { scheduleCheck(at: deadline) }
    }

    private func scheduleCheck(at time: NIODeadline) {
        guard let context else { return }
        checkPending = true
        let at = min(time, .now() + self.guard.checkInterval)
        context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: at) { [weak self] in self?.check() }
    }

    /// Closes the connection if its phase's time is up, else looks again at its deadline.
    private func check() {
        checkPending = false
        guard let deadline, let context else { return }
        guard deadline <= .now() else { return scheduleCheck(at: deadline) }
        self.guard.expired(phase)
        context.close(promise: nil)
    }
}

/// After the HTTP decoder: tells the connection's `ConnectionWatcher` where requests and responses begin and end.
final class ExchangeWatcher: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private var watcher: ConnectionWatcher?

    func handlerAdded(context: ChannelHandlerContext) {
        watcher = try? context.pipeline.syncOperations.handler(type: ConnectionWatcher.self)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: watcher?.headReceived()
        case .body: watcher?.bodyReceived()
        case .end: watcher?.requestReceived()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { watcher?.responseSent() }
        context.write(data, promise: promise)
    }
}
