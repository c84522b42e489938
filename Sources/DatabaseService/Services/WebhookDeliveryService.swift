import AsyncHTTPClient
import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Shared
import Synchronization

/// How webhooks are delivered.
struct WebhookSettings: Sendable {
    var retrySchedule = WebhookRetrySchedule.standard
    /// A try with no full answer in this time failed.
    var timeout: Duration = .seconds(10)
    /// Whether targets may be loopback, private or link-local (tests and local development).
    var allowPrivateTargets = false
    /// Tries in flight to one endpoint from this process.
    var concurrencyPerEndpoint = 16
    /// Endpoints served at once by this process: a slow one holds one of these, never another's.
    var maxEndpointsInFlight = 32
    /// An endpoint whose every try failed for this long is disabled.
    var disableAfter: Duration = .seconds(5 * 24 * 3600)
    /// How often due deliveries are looked for without a wake-up (retries, other processes' fan-out).
    var pollInterval: Duration = .milliseconds(250)
    /// Whether this process fans out and delivers at all (endpoints and events are served either way).
    var enabled = true
}

/// Fans the change log out to webhook endpoints and delivers each event, at least once, with Standard Webhooks
/// signatures; retries on the schedule; disables endpoints that fail for days.
///
/// Fan-out and each try are claimed in the database (see `WebhookStore`), so several processes over one
/// PostgreSQL share the work and make each try once. Tries run beside the write path on their own HTTP client,
/// at most `concurrencyPerEndpoint` per endpoint and `maxEndpointsInFlight` endpoints at once.
final class WebhookDeliveryService: Service {
    let store: any DataStore
    let settings: WebhookSettings
    let http: HTTPClient
    /// Clients that connect a name to the address its check vetted.
    let pinned: PinnedClients
    let resolver: WebhookTarget.Resolver
    let logger: Logger
    /// Rung when fan-out made deliveries, so they go out without waiting for the next poll.
    private let fannedOut = ChangeSignal()
    private let busyEndpoints = Mutex<Set<String>>([])
    private let oldestPending = Gauge(label: "webhook_oldest_pending_seconds")

    init(store: any DataStore, settings: WebhookSettings, logger: Logger, resolver: @escaping WebhookTarget.Resolver = WebhookTarget.systemResolver) {
        self.store = store
        self.settings = settings
        self.logger = logger
        self.resolver = resolver
        let configuration = Self.clientConfiguration(settings)
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        pinned = PinnedClients(configuration: configuration)
    }

    /// How every try's client is set up.
    static func clientConfiguration(_ settings: WebhookSettings) -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration()
        // A redirect could lead anywhere, an internal address included: an answer of 3xx is a failed try.
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(Int64(settings.timeout.components.seconds)))
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: settings.concurrencyPerEndpoint)
        return configuration
    }

    func run() async throws {
        guard settings.enabled else {
            logger.notice("webhook delivery is off in this process (--no-webhook-delivery)")
            // A service that returns would stop the whole group: idle until shutdown.
            try? await gracefulShutdown()
            await pinned.shutdown()
            try await http.shutdown()
            return
        }
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.fanOutUntilCancelled() }
                group.addTask { await self.deliverUntilCancelled() }
                group.addTask { await self.measureUntilCancelled() }
            }
        }
        // Tries cut short by shutdown are leased, not lost: another try follows when the lease ends.
        await pinned.shutdown()
        try await http.shutdown()
    }

    /// The lease on a claimed try: long enough for every try of its batch, and of the batch before it (the next
    /// batch is claimed while one is sent), to time out. A try cut short (the process killed) is made again once
    /// it ends: 45 s with the default 10 s timeout.
    private var leaseMs: Int64 { 2 * Int64(Self.claimRounds) * Int64(settings.timeout.components.seconds * 1000) + 5000 }

    /// Tries claimed at once per endpoint, in multiples of `concurrencyPerEndpoint`.
    private static let claimRounds = 2

    // MARK: Fan-out

    private func fanOutUntilCancelled() async {
        let changes = store.changes.changeSignal
        while !Task.isCancelled {
            let generation = changes.generation
            do {
                let read = try await store.webhooks.dispatchEvents(limit: 1000, nowMs: Timestamp.nowMilliseconds())
                if let read, read > 0 { fannedOut.signal() }
                if read == 1000 { continue }
            } catch {
                if Task.isCancelled { return }
                logger.warning("fanning events out to webhook endpoints failed; will retry", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
            // Another process may hold the dispatcher's row; the poll picks up what it leaves.
            await changes.wait(after: generation, timeout: .milliseconds(500))
        }
    }

    // MARK: Delivery

    private func deliverUntilCancelled() async {
        await withDiscardingTaskGroup { lanes in
            while !Task.isCancelled {
                let generation = fannedOut.generation
                let free = settings.maxEndpointsInFlight - busyEndpoints.withLock { $0.count }
                if free > 0 {
                    do {
                        let due = try await store.webhooks.dueEndpoints(nowMs: Timestamp.nowMilliseconds(), limit: settings.maxEndpointsInFlight * 2)
                        for endpointID in due {
                            let started = busyEndpoints.withLock { busy -> Bool? in
                                guard busy.count < settings.maxEndpointsInFlight else { return nil }
                                return busy.insert(endpointID).inserted
                            }
                            guard let started else { break }
                            guard started else { continue }
                            lanes.addTask {
                                await self.serve(endpointID)
                                self.busyEndpoints.withLock { _ = $0.remove(endpointID) }
                                self.fannedOut.signal()
                            }
                        }
                    } catch {
                        if Task.isCancelled { return }
                        logger.warning("looking for due webhook deliveries failed; will retry", metadata: ["error": "\(error)"])
                        try? await Task.sleep(for: .seconds(1))
                    }
                }
                await fannedOut.wait(after: generation, timeout: settings.pollInterval)
            }
        }
    }

    /// Delivers an endpoint's due deliveries until none is left: at most `concurrencyPerEndpoint` tries in
    /// flight (a sliding window), while the next batch is claimed, so the database's round trips overlap the tries.
    private func serve(_ endpointID: String) async {
        var claimed = await claim(endpointID)
        while let current = claimed, !current.deliveries.isEmpty, !Task.isCancelled {
            async let next = claim(endpointID)
            let results = await send(current)
            do {
                let disabled = try await store.webhooks.recordAttempts(
                    results, endpointID: endpointID, nowMs: Timestamp.nowMilliseconds(),
                    disableAfterMs: Int64(settings.disableAfter.components.seconds * 1000))
                if disabled {
                    logger.warning(
                        "webhook endpoint disabled: every delivery failed for the disable period",
                        metadata: [
                            "endpoint_id": "\(endpointID)", "tenant": "\(current.endpoint.tenant)",
                            "disable_after_seconds": "\(settings.disableAfter.components.seconds)",
                        ])
                    _ = await next  // claimed for a disabled endpoint: they wait, leased, until it is enabled again
                    return
                }
            } catch {
                // The tries stay leased and are made again when the lease ends: at least once, never lost.
                logger.error("recording webhook tries failed", metadata: ["endpoint_id": "\(endpointID)", "error": "\(error)"])
                _ = await next
                return
            }
            claimed = await next
        }
    }

    /// Claims the endpoint's next due deliveries; nil when there are none, it is gone or disabled, or the claim failed.
    private func claim(_ endpointID: String) async -> ClaimedDeliveries? {
        do {
            return try await store.webhooks.claimDeliveries(
                endpointID: endpointID, nowMs: Timestamp.nowMilliseconds(), leaseMs: leaseMs,
                limit: settings.concurrencyPerEndpoint * Self.claimRounds)
        } catch {
            if !Task.isCancelled {
                logger.warning("claiming webhook deliveries failed", metadata: ["endpoint_id": "\(endpointID)", "error": "\(error)"])
            }
            return nil
        }
    }

    /// Tries every claimed delivery, `concurrencyPerEndpoint` at a time.
    private func send(_ claimed: ClaimedDeliveries) async -> [AttemptRecord] {
        await withTaskGroup(of: AttemptRecord.self) { group in
            var pending = claimed.deliveries[...]
            var results: [AttemptRecord] = []
            results.reserveCapacity(pending.count)
            for _ in 0..<settings.concurrencyPerEndpoint {
                guard let delivery = pending.popFirst() else { break }
                group.addTask { await self.attempt(delivery, to: claimed.endpoint) }
            }
            for await result in group {
                results.append(result)
                if let delivery = pending.popFirst() { group.addTask { await self.attempt(delivery, to: claimed.endpoint) } }
            }
            return results
        }
    }

    /// One try: POST the event, signed; any 2xx succeeds, anything else (or no answer in time) fails.
    private func attempt(_ delivery: ClaimedDelivery, to endpoint: StoredEndpoint) async -> AttemptRecord {
        let started = ContinuousClock.now
        let attemptedMs = Timestamp.nowMilliseconds()
        var code: Int?
        var failure: String?
        var client = http
        if !settings.allowPrivateTargets {
            switch await checkTarget(endpoint.url) {
            case .failure(let refusal): failure = "refused target: \(refusal)"
            case nil: failure = "refused target: its name did not resolve in time"
            case .success(let vetted): if let address = vetted.address { client = pinned.client(host: vetted.host, address: address) }
            }
        }
        if failure == nil {
            let timestamp = attemptedMs / 1000
            let body = ByteBuffer(string: delivery.body)
            var request = HTTPClientRequest(url: endpoint.url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "User-Agent", value: "products-platform-webhooks/\(ServiceVersion.current)")
            request.headers.add(name: "webhook-id", value: delivery.eventID)
            request.headers.add(name: "webhook-timestamp", value: String(timestamp))
            request.headers.add(
                name: "webhook-signature",
                value: WebhookSignature.header(
                    id: delivery.eventID, timestamp: timestamp, body: body.readableBytesView, secrets: endpoint.signingSecrets(nowMs: attemptedMs)))
            request.body = .bytes(body)
            do {
                let response = try await client.execute(request, timeout: .nanoseconds(Int64(settings.timeout.components.seconds) * 1_000_000_000))
                code = Int(response.status.code)
                // Read (and drop) at most 64 KiB of the answer, so the connection can be reused.
                _ = try? await response.body.collect(upTo: 64 * 1024)
                if !(200..<300).contains(response.status.code) { failure = "HTTP \(response.status.code)" }
            } catch {
                failure = Self.describe(error)
            }
        }
        let latency = started.duration(to: .now)
        let latencyMs = Int(latency.components.seconds * 1000 + latency.components.attoseconds / 1_000_000_000_000_000)
        let succeeded = failure == nil
        let next = succeeded ? nil : settings.retrySchedule.delay(afterAttempt: delivery.attempt).map { attemptedMs + Int64($0 * 1000) }
        (succeeded ? Self.succeeded : next == nil ? Self.failed : Self.retrying).increment()
        (succeeded ? Self.succeededDuration : Self.failedDuration).recordInterval(since: started)
        if !succeeded {
            logger.info(
                "webhook try failed",
                metadata: [
                    "endpoint_id": "\(endpoint.id)", "event_id": "\(delivery.eventID)", "attempt": "\(delivery.attempt)",
                    "error": "\(failure ?? "")", "next_attempt_ms": "\(next.map(String.init) ?? "none")",
                ])
        }
        return AttemptRecord(
            deliveryID: delivery.id, eventID: delivery.eventID, eventType: delivery.eventType, attempt: delivery.attempt, succeeded: succeeded,
            responseCode: code, latencyMs: latencyMs, error: failure, nextAttemptMs: next,
            attemptedAt: Timestamp.format(epochMilliseconds: attemptedMs), attemptedMs: attemptedMs)
    }

    // Made once: looking a metric up by its label and dimensions costs more than recording to it.
    private static let succeeded = Counter(label: "webhook_deliveries", dimensions: [("outcome", "succeeded")])
    private static let retrying = Counter(label: "webhook_deliveries", dimensions: [("outcome", "retrying")])
    private static let failed = Counter(label: "webhook_deliveries", dimensions: [("outcome", "failed")])
    private static let succeededDuration = Metrics.Timer(label: "webhook_delivery_duration", dimensions: [("outcome", "succeeded")])
    private static let failedDuration = Metrics.Timer(label: "webhook_delivery_duration", dimensions: [("outcome", "failed")])

    /// Target checks by URL, kept for 30 s: a delivery at 1,000 events/s should not ask DNS for each, and tries
    /// meanwhile go to the address vetted.
    private let targetChecks = Mutex<[String: (result: Result<WebhookTarget.Vetted, WebhookTarget.Refusal>?, until: ContinuousClock.Instant)]>([:])

    /// The URL's target as checked now or in the last 30 s; nil when its name does not resolve.
    func checkTarget(_ url: String) async -> Result<WebhookTarget.Vetted, WebhookTarget.Refusal>? {
        let now = ContinuousClock.now
        if let cached = targetChecks.withLock({ $0[url] }), cached.until > now { return cached.result }
        let result = await WebhookTarget.check(url: url, resolver: resolver)
        targetChecks.withLock { checks in
            if checks.count > 10_000 { checks.removeAll() }
            checks[url] = (result, now + .seconds(30))
        }
        return result
    }

    /// A short reason for a try that got no answer.
    private static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .connectTimeout: return "timeout"
            case .remoteConnectionClosed: return "connection closed by the endpoint"
            default: return "\(error)"
            }
        }
        let text = "\(error)"
        if text.localizedCaseInsensitiveContains("refused") { return "connection refused" }
        return String(text.prefix(300))
    }

    // MARK: Metrics

    private func measureUntilCancelled() async {
        while !Task.isCancelled {
            if let oldest = try? await store.webhooks.oldestPendingDeliveryMs() {
                oldestPending.record(Double(max(0, Timestamp.nowMilliseconds() - oldest)) / 1000)
            } else {
                oldestPending.record(0)
            }
            try? await Task.sleep(for: .seconds(5))
        }
    }
}
