import DequeModule
import Shared

/// API key verifications this replica remembers, by the key's hash: two pools bounded in bytes, one for keys
/// the Database Service granted and one for keys it refused, each dropping its least recently verified entry
/// when full (a key in use is verified again every few seconds). A flood of unknown keys only ever evicts other
/// unknown keys, never a working one; nothing is wiped whole.
struct KeyVerifications {
    struct Entry {
        var grant: KeyGrant?
        var verifiedAt: ContinuousClock.Instant
    }

    /// The most each pool may take, by `cost(hash:grant:)`.
    let grantedBytes: Int
    let refusedBytes: Int
    private var entries: [String: Entry] = [:]
    private var granted = Pool()
    private var refused = Pool()

    /// One pool's entries in the order they were verified; an entry verified again since is skipped.
    private struct Pool {
        var order = Deque<(hash: String, verifiedAt: ContinuousClock.Instant)>()
        var bytes = 0
    }

    /// `budget` is shared four to one between granted and refused keys (`--key-cache-budget`).
    init(budget: Int = KeyVerifications.defaultBudget) {
        grantedBytes = budget / 5 * 4
        refusedBytes = budget / 5
    }

    /// 5 MiB: about 16,000 working keys and 4,000 unknown ones.
    static let defaultBudget = 5 << 20

    /// What one verification costs: its hash (twice: the map and the order), its grant, and the entries around them.
    static func cost(hash: String, grant: KeyGrant?) -> Int {
        2 * hash.utf8.count + (grant.map { $0.id.utf8.count + $0.tenant.utf8.count } ?? 0) + 160
    }

    subscript(hash: String) -> Entry? { entries[hash] }

    var count: Int { entries.count }

    /// Both pools' bytes.
    var bytes: Int { granted.bytes + refused.bytes }

    mutating func record(_ hash: String, grant: KeyGrant?, at now: ContinuousClock.Instant) {
        remove(hash)
        entries[hash] = Entry(grant: grant, verifiedAt: now)
        let cost = Self.cost(hash: hash, grant: grant)
        if grant == nil {
            refused.order.append((hash, now))
            refused.bytes += cost
            Self.trim(&refused, to: refusedBytes, entries: &entries)
        } else {
            granted.order.append((hash, now))
            granted.bytes += cost
            Self.trim(&granted, to: grantedBytes, entries: &entries)
        }
    }

    private mutating func remove(_ hash: String) {
        guard let old = entries.removeValue(forKey: hash) else { return }
        let cost = Self.cost(hash: hash, grant: old.grant)
        if old.grant == nil { refused.bytes -= cost } else { granted.bytes -= cost }
    }

    /// Drops the pool's least recently verified entries while it is over `limit`.
    private static func trim(_ pool: inout Pool, to limit: Int, entries: inout [String: Entry]) {
        while pool.bytes > limit, let oldest = pool.order.popFirst() {
            guard let entry = entries[oldest.hash], entry.verifiedAt == oldest.verifiedAt else { continue }
            entries[oldest.hash] = nil
            pool.bytes -= cost(hash: oldest.hash, grant: entry.grant)
        }
        // Entries verified again leave stale places behind: drop those at the front.
        while let first = pool.order.first, entries[first.hash]?.verifiedAt != first.verifiedAt { pool.order.removeFirst() }
    }
}
