import Foundation
import Shared
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A TCP connection driven byte by byte, as a slow or greedy client would.
final class RawConnection {
    let descriptor: Int32
    private(set) var received: [UInt8] = []

    init(port: Int) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(connected == 0, "connect: \(errno)")
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
    }

    deinit { close(descriptor) }

    /// Sends `text`; false once the server has closed the connection.
    @discardableResult
    func send(_ text: String) -> Bool {
        Array(text.utf8).withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } >= 0
    }

    /// Reads what has arrived; true once the server has closed the connection.
    func drain() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            if count > 0 {
                received += buffer[..<count]
            } else {
                return count == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)
            }
        }
    }

    var text: String { String(decoding: received, as: UTF8.self) }

    /// A whole request on a connection of its own (`Connection: close`), and the whole answer. The tests' own
    /// calls go this way: a pooled client's idle connection may be closed by the short deadlines under test.
    static func exchange(port: Int, _ path: String, method: String = "GET") async throws -> String {
        let connection = try RawConnection(port: port)
        connection.send("\(method) \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        _ = try await connection.closed(within: .seconds(20))
        return connection.text
    }

    /// Waits until the server closes the connection; how long that took, or nil if it stayed open past `limit`.
    func closed(within limit: Duration, trickling: String? = nil) async throws -> Duration? {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < limit {
            if drain() { return ContinuousClock.now - start }
            if let trickling { send(trickling) }
            try await Task.sleep(for: .milliseconds(50))
        }
        return nil
    }
}

/// Slow and greedy clients: each part of an exchange has a deadline, and connections past the cap are refused.
@Suite("Slow and greedy clients")
struct SlowClientTests {
    static let arguments = ["--header-timeout", "1", "--body-timeout", "1", "--idle-timeout", "2", "--max-connections", "40"]

    @Test("a head sent byte by byte, a stalled body and an idle connection are each closed at their deadline; normal requests go on")
    func deadlines() async throws {
        let stack = try await Stack.started(Self.arguments)
        let port = try #require(URLComponents(string: stack.productsURL)?.port)

        // Slowloris: twenty heads that never end, one byte every 50 ms.
        let slow = try (0..<20).map { _ in try RawConnection(port: port) }
        for connection in slow { connection.send("GET /products HTTP/1.1\r\nHost: x\r\n") }
        #expect(try await RawConnection.exchange(port: port, "/products").hasPrefix("HTTP/1.1 200"), "a normal client is served meanwhile")
        for connection in slow {
            let closedAfter = try await connection.closed(within: .seconds(120), trickling: "X")
            #expect(closedAfter != nil, "a head that never ends is closed")
        }

        // A body that stops: closed after a second without a byte.
        let stalled = try RawConnection(port: port)
        stalled.send("POST /products HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":")
        let stalledAfter = try await stalled.closed(within: .seconds(120))
        #expect(stalledAfter.map { $0 >= .milliseconds(900) } == true, "\(String(describing: stalledAfter))")

        // Kept alive after a full exchange: answered, then closed after two idle seconds.
        let idle = try RawConnection(port: port)
        idle.send("GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        let idleAfter = try await idle.closed(within: .seconds(120))
        #expect(idle.text.hasPrefix("HTTP/1.1 200"), "\(idle.text)")
        #expect(idleAfter.map { $0 >= .milliseconds(1900) } == true, "\(String(describing: idleAfter))")

        // A long request is not cut: the server's own time is not the client's.
        #expect(try await RawConnection.exchange(port: port, "/products?limit=100").hasPrefix("HTTP/1.1 200"))
        // Asked until answered: a starved server may close this exchange too at its 1 s header deadline.
        var metrics = ""
        try await eventually("/metrics answers") {
            metrics = try await RawConnection.exchange(port: port, "/metrics")
            return metrics.hasPrefix("HTTP/1.1 200")
        }
        for phase in ["header", "body", "idle"] {
            #expect(metrics.contains(#"http_connections_timed_out_total{phase="\#(phase)"}"#), "\(phase)")
        }
        await stack.stop()
    }

    @Test("past --max-connections a connection is answered 503 too_many_connections at once, and served again once others close")
    func cap() async throws {
        // Deadlines far off: the held connections must stay open however slow the machine is (with a 1 s header
        // deadline, a starved run closed the first ones before the last connected, and none was past the cap).
        let stack = try await Stack.started(["--header-timeout", "60", "--body-timeout", "60", "--idle-timeout", "60", "--max-connections", "40"])
        let port = try #require(URLComponents(string: stack.productsURL)?.port)
        var held = try (0..<45).map { _ in try RawConnection(port: port) }
        var refused: [RawConnection] = []
        try await eventually("the connections past the cap are refused") {
            refused = held.filter { _ = $0.drain(); return $0.text.hasPrefix("HTTP/1.1 503") }
            return refused.count >= 5
        }
        let body = try #require(refused.first?.text.components(separatedBy: "\r\n\r\n").last)
        let error = try JSONDecoder().decode(APIError.Body.self, from: Data(body.utf8))
        #expect(error.code == "too_many_connections")
        held.removeAll()
        // Once the held connections are gone, new clients are served again.
        refused.removeAll()
        try await eventually("served again") {
            try await RawConnection.exchange(port: port, "/livez").hasPrefix("HTTP/1.1 200")
        }
        try await eventually("/metrics counts the refused connections") {
            try await RawConnection.exchange(port: port, "/metrics").contains("http_connections_refused_total")
        }
        await stack.stop()
    }
}
