import Foundation
import NIOCore
import NIOPosix
import Shared

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a webhook may be sent: never to loopback, private, link-local, metadata or other internal ranges,
/// judged on the addresses the host name resolves to (unless private targets are allowed, as in tests).
enum WebhookTarget {
    /// Why a target is refused.
    struct Refusal: Error, CustomStringConvertible {
        let description: String
    }

    /// A name's addresses; nil when the resolver did not answer in time. Injected in tests.
    typealias Resolver = @Sendable (_ host: String, _ timeout: Duration) async -> [SocketAddress]?

    static let systemResolver: Resolver = { host, timeout in await resolve(host, timeout: timeout) }

    /// A target found acceptable: its host, and the address to connect to (nil for a literal address).
    struct Vetted: Sendable, Equatable {
        let host: String
        let address: String?
    }

    /// Checks the URL's host: a literal address directly, a name by every address the resolver gives for it,
    /// asked once. The first address is the one to connect to, so that a second lookup (DNS rebinding) cannot
    /// send the try elsewhere. A name that does not resolve (within `timeout`) is nil: not refused when an endpoint
    /// is registered (it may resolve later), refused when a try is made.
    static func check(url: String, timeout: Duration = .seconds(3), resolver: Resolver = systemResolver) async -> Result<Vetted, Refusal>? {
        guard let components = URLComponents(string: url), var host = components.host?.lowercased(), !host.isEmpty else {
            return .failure(Refusal(description: "the URL has no host"))
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        // A fully qualified name ("localhost.") is the same name.
        while host.hasSuffix("."), host.count > 1 { host.removeLast() }
        if host == "localhost" || host.hasSuffix(".localhost") {
            return .failure(Refusal(description: "\(host) is a loopback name"))
        }
        let addresses: [SocketAddress]
        let isLiteral: Bool
        if let literal = try? SocketAddress(ipAddress: host, port: 0) {
            (addresses, isLiteral) = ([literal], true)
        } else {
            guard let resolved = await resolver(host, timeout), !resolved.isEmpty else { return nil }
            (addresses, isLiteral) = (resolved, false)
        }
        for address in addresses where isInternal(address) {
            return .failure(Refusal(description: "\(host) resolves to \(address.ipAddress ?? "?"), an internal address (loopback, private, link-local or metadata)"))
        }
        guard !isLiteral, let pinned = addresses.first?.ipAddress else { return .success(Vetted(host: host, address: nil)) }
        return .success(Vetted(host: host, address: pinned))
    }

    /// Whether an address is in a range webhooks must not reach.
    static func isInternal(_ address: SocketAddress) -> Bool {
        switch address {
        case .v4(let v4):
            return isInternal(v4: UInt32(bigEndian: v4.address.sin_addr.s_addr))
        case .v6(let v6):
            var storage = v6.address.sin6_addr
            let bytes = withUnsafeBytes(of: &storage) { Array($0) }
            return isInternal(v6: bytes)
        default:
            return true
        }
    }

    static func isInternal(v4 address: UInt32) -> Bool {
        let blocked: [(network: UInt32, prefix: UInt32)] = [
            (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
            (0x0A00_0000, 8),  // 10/8 private
            (0x6440_0000, 10),  // 100.64/10 carrier-grade NAT
            (0x7F00_0000, 8),  // 127/8 loopback
            (0xA9FE_0000, 16),  // 169.254/16 link-local, cloud metadata (169.254.169.254)
            (0xAC10_0000, 12),  // 172.16/12 private
            (0xC000_0000, 24),  // 192.0.0/24 IETF protocol assignments
            (0xC0A8_0000, 16),  // 192.168/16 private
            (0xC612_0000, 15),  // 198.18/15 benchmarking
            (0xE000_0000, 4),  // 224/4 multicast
            (0xF000_0000, 4),  // 240/4 reserved, broadcast
        ]
        return blocked.contains { address >> (32 - $0.prefix) == $0.network >> (32 - $0.prefix) }
    }

    static func isInternal(v6 bytes: [UInt8]) -> Bool {
        guard bytes.count == 16 else { return true }
        if bytes[0..<15].allSatisfy({ $0 == 0 }) { return true }  // :: and ::1
        // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d): judged by the IPv4 address inside.
        let embedded = UInt32(bytes[12]) << 24 | UInt32(bytes[13]) << 16 | UInt32(bytes[14]) << 8 | UInt32(bytes[15])
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF { return isInternal(v4: embedded) }
        if bytes[0] == 0x00, bytes[1] == 0x64, bytes[2] == 0xFF, bytes[3] == 0x9B, bytes[4..<12].allSatisfy({ $0 == 0 }) {
            return isInternal(v4: embedded)
        }
        if bytes[0] & 0xFE == 0xFC { return true }  // fc00::/7 unique local (includes AWS's fd00:ec2::254)
        if bytes[0] == 0xFE, bytes[1] & 0xC0 == 0x80 { return true }  // fe80::/10 link-local
        if bytes[0] == 0xFE, bytes[1] & 0xC0 == 0xC0 { return true }  // fec0::/10 site-local (deprecated)
        if bytes[0] == 0xFF { return true }  // multicast
        return false
    }

    /// The host's addresses by the system resolver, off the event loops; nil when it does not answer in time.
    static func resolve(_ host: String, timeout: Duration) async -> [SocketAddress]? {
        try? await withDeadline(timeout) { try await NIOThreadPool.singleton.runIfActive { lookup(host) } }
    }

    private static func lookup(_ host: String) -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Darwin)
        hints.ai_socktype = SOCK_STREAM
        #else
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #endif
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return [] }
        defer { freeaddrinfo(first) }
        var addresses: [SocketAddress] = []
        var current: UnsafeMutablePointer<addrinfo>? = first
        while let info = current {
            if let pointer = info.pointee.ai_addr {
                switch Int32(pointer.pointee.sa_family) {
                case AF_INET:
                    let v4 = UnsafeRawPointer(pointer).load(as: sockaddr_in.self)
                    addresses.append(SocketAddress(v4, host: host))
                case AF_INET6:
                    let v6 = UnsafeRawPointer(pointer).load(as: sockaddr_in6.self)
                    addresses.append(SocketAddress(v6, host: host))
                default: break
                }
            }
            current = info.pointee.ai_next
        }
        return addresses
    }
}
