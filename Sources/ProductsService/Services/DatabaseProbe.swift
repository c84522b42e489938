import Shared

/// The Database Service as `/health` last saw it: probed at most once per `maxAge` however often `/health` is
/// asked, concurrent askers sharing the probe in flight.
actor DatabaseProbe {
    /// One probe's outcome.
    struct Outcome: Sendable {
        /// `connected`, `unreachable`, or `error: …`.
        var status: String
        var latencyMs: Double
        var version: String?
        var backend: String?
        var error: String?
        var isConnected: Bool { status == "connected" }
    }

    private let replica: Replica
    private let maxAge: Duration
    private var last: (taken: ContinuousClock.Instant, outcome: Outcome)?
    private var running: Task<Outcome, Never>?

    init(replica: Replica, maxAge: Duration = .seconds(1)) {
        self.replica = replica
        self.maxAge = maxAge
    }

    /// The latest outcome, probing first when it is older than `maxAge`.
    func outcome() async -> Outcome {
        if let last, ContinuousClock.now - last.taken < maxAge { return last.outcome }
        if let running { return await running.value }
        let probe = Task { [replica] in await Self.probe(replica) }
        running = probe
        let outcome = await probe.value
        last = (.now, outcome)
        running = nil
        return outcome
    }

    private static func probe(_ replica: Replica) async -> Outcome {
        let started = ContinuousClock.now
        func elapsed() -> Double { ((ContinuousClock.now - started).seconds * 1_000_000).rounded() / 1000 }
        do {
            let health = try await replica.checkDatabase()
            return Outcome(status: "connected", latencyMs: elapsed(), version: health.version, backend: health.backend)
        } catch {
            let status = if case .unreachable = error { "unreachable" } else { "error: \(error)" }
            return Outcome(status: status, latencyMs: elapsed(), error: "\(error)")
        }
    }
}
