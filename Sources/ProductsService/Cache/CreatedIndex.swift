/// A tenant's products by `created_at`, so that a `created[...]` listing reads only the products in its range
/// instead of walking the catalog: (epoch milliseconds, id) pairs in order.
///
/// Built on the first such listing (outside the catalog's lock, a chunk at a time, with the products put
/// meanwhile logged and merged in), then kept up to date while products are only added in creation order, the
/// usual case: a product put earlier than the last one, or with its creation time changed, drops the index, to
/// be built again. Entries of products removed or changed since are left in place and skipped by the caller,
/// which checks every candidate; too many of them drop the index too.
struct CreatedIndex {
    /// The pairs in order; nil while there is no index.
    private(set) var entries: [(milliseconds: Int64, id: String)]?
    /// Products put while the index is being built, merged in when it is installed; nil when none is.
    private var buildLog: [(milliseconds: Int64, id: String)]?
    /// Entries whose product has gone or changed its creation time.
    private var stale = 0

    /// Whether an index is being built.
    var isBuilding: Bool { buildLog != nil }

    /// A product put, with its previous creation time if it was there.
    mutating func put(id: String, milliseconds: Int64?, previous: Int64??) {
        if case .some(let old) = previous, old == milliseconds { return }
        if case .some = previous { stale += 1 }
        guard let milliseconds else { return }
        buildLog?.append((milliseconds, id))
        guard let last = entries?.last else { return }
        if previous == nil, (milliseconds, id) > (last.milliseconds, last.id) {
            entries!.append((milliseconds, id))
        } else {
            entries = nil
        }
    }

    /// A product removed.
    mutating func remove(count products: Int) {
        guard entries != nil else { return }
        stale += 1
        if stale > max(1024, products / 4) { entries = nil }
    }

    /// Starts building: products put from now on are logged.
    mutating func beginBuild() {
        buildLog = []
    }

    /// Installs a built index (sorted pairs copied since `beginBuild`) with what was logged meanwhile.
    mutating func finishBuild(_ built: [(milliseconds: Int64, id: String)]) {
        guard let log = buildLog else { return }
        buildLog = nil
        entries = (built + log).sorted { ($0.milliseconds, $0.id) < ($1.milliseconds, $1.id) }
        stale = 0
    }

    /// Abandons a build.
    mutating func cancelBuild() {
        buildLog = nil
    }

    /// How many entries fall within the bounds (inclusive milliseconds), and where they start.
    func range(from lower: Int64, through upper: Int64) -> Range<Int>? {
        guard let entries, lower <= upper else { return nil }
        let start = Self.firstIndex(in: entries) { $0.milliseconds >= lower }
        let end = Self.firstIndex(in: entries) { $0.milliseconds > upper }
        return start..<max(start, end)
    }

    /// The first index whose entry satisfies `isAfter` (a predicate false then true along the entries).
    private static func firstIndex(in entries: [(milliseconds: Int64, id: String)], where isAfter: ((milliseconds: Int64, id: String)) -> Bool) -> Int {
        var low = 0
        var high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if isAfter(entries[middle]) { high = middle } else { low = middle + 1 }
        }
        return low
    }
}
