import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Shared
import Synchronization

/// A real HTTP server on an ephemeral loopback port that records every webhook delivery it gets. It answers
/// each path with the statuses queued for it, in order, then 200.
final class WebhookReceiver: Sendable {
    struct Delivery: Sendable {
        var path: String
        var id: String
        var timestamp: Int64
        var signature: String
        var body: Data

        var event: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        var type: String { event["type"] as? String ?? "" }
        var object: [String: Any] { (event["data"] as? [String: Any])?["object"] as? [String: Any] ?? [:] }

        /// Whether any of the header's signatures verifies with `secret`, checked here as a receiver would, by the
        /// Standard Webhooks rules: `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`, keyed with the
        /// base64-decoded bytes after `whsec_`.
        func verifies(with secret: String) -> Bool {
            guard secret.hasPrefix("whsec_"), let key = Data(base64Encoded: String(secret.dropFirst(6))) else { return false }
            let payload = Data("\(id).\(timestamp).".utf8) + body
            let expected = Data(HMAC<SHA256>.authenticationCode(for: payload, using: SymmetricKey(data: key))).base64EncodedString()
            return signature.split(separator: " ").contains { $0 == "v1," + expected }
        }
    }

    private struct State {
        var deliveries: [Delivery] = []
        var statuses: [String: [Int]] = [:]
    }

    private let state = Mutex(State())

    /// Answers the next tries at `path` with these statuses, then 200 again.
    func answer(_ path: String, with statuses: [Int]) { state.withLock { $0.statuses[path, default: []] += statuses } }

    var deliveries: [Delivery] { state.withLock { $0.deliveries } }

    func deliveries(to path: String) -> [Delivery] { deliveries.filter { $0.path == path } }

    /// The events delivered to `path`, each once (its first delivery): delivery is at least once, and a try that
    /// outlasted its timeout on a loaded machine is made again with the same webhook-id.
    func events(to path: String) -> [Delivery] {
        var seen = Set<String>()
        return deliveries(to: path).filter { seen.insert($0.id).inserted }
    }

    /// Runs `body` with the receiver listening; its argument is the receiver's base URL.
    func run<T: Sendable>(_ body: @escaping @Sendable (String) async throws -> T) async throws -> T {
        let router = Router()
        router.post("{path}") { request, context -> Response in
            let path = "/" + (context.parameters.get("path") ?? "")
            let bytes = try await request.body.collect(upTo: 1 << 20)
            let delivery = Delivery(
                path: path, id: request.headers[HTTPField.Name("webhook-id")!] ?? "",
                timestamp: Int64(request.headers[HTTPField.Name("webhook-timestamp")!] ?? "") ?? 0,
                signature: request.headers[HTTPField.Name("webhook-signature")!] ?? "", body: Data(buffer: bytes))
            let status = self.state.withLock { state -> Int in
                state.deliveries.append(delivery)
                guard var queued = state.statuses[path], !queued.isEmpty else { return 200 }
                let status = queued.removeFirst()
                state.statuses[path] = queued
                return status
            }
            return Response(status: .init(code: status))
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        return try await app.test(.live) { client in
            try await body("http://127.0.0.1:\(client.port ?? 0)")
        }
    }
}
