import Foundation
import Hummingbird
import Metrics
import NIOCore
import Prometheus

/// The process's metrics: swift-metrics, exported by swift-prometheus.
package enum MetricsSetup {
    /// The registry every metric of the process lands in; the first use bootstraps the metrics system.
    package static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .seconds(2), .seconds(5), .seconds(10),
        ]
        factory.defaultValueHistogramBuckets = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000]
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    /// Makes sure the metrics system is bootstrapped before any metric is created.
    package static func bootstrap() { _ = registry }
}

/// `GET /metrics`: every metric in the Prometheus text format; `refresh` first updates the gauges that are
/// read from state rather than counted (cache size, journal depth).
package struct MetricsController<Context: RequestContext> {
    let refresh: @Sendable () -> Void

    package init(refresh: @escaping @Sendable () -> Void = {}) {
        MetricsSetup.bootstrap()
        self.refresh = refresh
    }

    package var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self).get("metrics", use: metrics)
    }

    /// GET /metrics: Prometheus text exposition format 0.0.4.
    @Sendable func metrics(_ request: Request, context: Context) -> Response {
        refresh()
        var bytes: [UInt8] = []
        MetricsSetup.registry.emit(into: &bytes)
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

extension Metrics.Timer {
    /// Records the time elapsed since `start`.
    package func recordInterval(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
