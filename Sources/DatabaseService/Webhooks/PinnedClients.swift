import AsyncHTTPClient
import Synchronization

/// HTTP clients that connect a webhook's host name to the one address its check vetted (`dnsOverride`), so the
/// connection never resolves the name again; the `Host` header and TLS SNI keep the name. One client per name
/// and address, the most recently used `capacity` of them kept; an evicted client is shut down.
final class PinnedClients: Sendable {
    private let configuration: HTTPClient.Configuration
    private let capacity: Int
    /// By "host address", with when each was last used.
    private let clients = Mutex<[String: (client: HTTPClient, used: UInt64)]>([:])
    private let clock = Atomic<UInt64>(0)

    init(configuration: HTTPClient.Configuration, capacity: Int = 64) {
        self.configuration = configuration
        self.capacity = capacity
    }

    /// The client that sends requests for `host` to `address`.
    func client(host: String, address: String) -> HTTPClient {
        let key = host + " " + address
        let now = clock.wrappingAdd(1, ordering: .relaxed).newValue
        let (client, evicted) = clients.withLock { clients -> (HTTPClient, HTTPClient?) in
            if let found = clients[key] {
                clients[key] = (found.client, now)
                return (found.client, nil)
            }
            var configuration = self.configuration
            configuration.dnsOverride = [host: address]
            let made = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            var evicted: HTTPClient?
            if clients.count >= capacity, let oldest = clients.min(by: { $0.value.used < $1.value.used }) {
                evicted = oldest.value.client
                clients[oldest.key] = nil
            }
            clients[key] = (made, now)
            return (made, evicted)
        }
        if let evicted { Task { try? await evicted.shutdown() } }
        return client
    }

    /// Shuts every client down.
    func shutdown() async {
        let all = clients.withLock { clients in
            defer { clients.removeAll() }
            return clients.values.map(\.client)
        }
        for client in all { try? await client.shutdown() }
    }
}
