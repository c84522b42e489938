import Shared
import Synchronization

/// Large products as a writer last built or decoded them, so that the next write on one (a variant's price in a
/// product of 10,000 variants) does not decode its megabytes of JSON again. An entry answers only for the very
/// cached value it was made with; at most `byteLimit` of JSON is held this way, the least recently used going first.
final class DecodedProducts: Sendable {
    /// Smaller products decode in well under a millisecond: they are not held.
    static let minimumJSONBytes = 64 << 10
    /// 16 MiB of JSON: about eight products of 10,000 variants, some 40 MiB decoded.
    static let defaultByteLimit = 16 << 20

    private struct Key: Hashable {
        let tenant: String
        let id: String
    }

    private struct Entry {
        let cached: CachedProduct
        let product: Product
        var lastUse: UInt64
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var bytes = 0
        var clock: UInt64 = 0
    }

    let byteLimit: Int
    private let state = Mutex(State())

    init(byteLimit: Int = DecodedProducts.defaultByteLimit) { self.byteLimit = byteLimit }

    /// The product `cached` holds: the one kept for this very value, or decoded (and kept, when large).
    func product(of cached: CachedProduct, tenant: String) -> Product {
        guard cached.jsonByteCount >= Self.minimumJSONBytes else { return cached.product }
        let key = Key(tenant: tenant, id: cached.id)
        let kept = state.withLock { state -> Product? in
            guard let entry = state.entries[key], entry.cached.isSameValue(as: cached) else { return nil }
            state.clock += 1
            state.entries[key]?.lastUse = state.clock
            return entry.product
        }
        if let kept { return kept }
        let product = cached.product
        remember(product, as: cached, tenant: tenant)
        return product
    }

    /// Keeps `product` as the decoded form of `cached` (a write's result), when it is large enough to be worth it.
    func remember(_ product: Product, as cached: CachedProduct, tenant: String) {
        let size = cached.jsonByteCount
        // A small product's older entry, if it was large once, never answers again and ages out.
        guard size >= Self.minimumJSONBytes else { return }
        let key = Key(tenant: tenant, id: cached.id)
        state.withLock { state in
            if let old = state.entries.removeValue(forKey: key) { state.bytes -= old.cached.jsonByteCount }
            guard size <= byteLimit else { return }
            state.clock += 1
            state.entries[key] = Entry(cached: cached, product: product, lastUse: state.clock)
            state.bytes += size
            while state.bytes > byteLimit, let oldest = state.entries.min(by: { $0.value.lastUse < $1.value.lastUse }) {
                state.entries[oldest.key] = nil
                state.bytes -= oldest.value.cached.jsonByteCount
            }
        }
    }

    /// Whether the decoded form of this very value is held (tests).
    func holds(_ cached: CachedProduct, tenant: String) -> Bool {
        state.withLock { $0.entries[Key(tenant: tenant, id: cached.id)]?.cached.isSameValue(as: cached) == true }
    }

    /// What is held, for tests.
    var snapshot: (products: Int, jsonBytes: Int) { state.withLock { ($0.entries.count, $0.bytes) } }
}
