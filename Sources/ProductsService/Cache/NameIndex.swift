import Shared

/// A tenant's trigram index of folded product names, so that `q` reads only the products whose names hold
/// every three-character run of it, instead of walking the catalog: the technique of PostgreSQL's `pg_trgm`
/// and SQLite's FTS5 trigram tokenizer, kept with the cache so that it sees every write as readers do.
///
/// Each product has a slot number; a trigram's posting list holds the slots of the names containing it, in no
/// particular order. A hit is only a candidate: the caller checks the name (and every other filter) itself.
///
/// A tenant's index is built only once a listing asks for `q` (it costs about a third of the catalog's memory),
/// in id order, a chunk at a time: `coverage` says how far. Puts and removes of products past it are left to the
/// build, which reads each product as it is when it gets there.
struct NameIndex {
    /// Posting lists by trigram (three Unicode scalars of the folded name, 21 bits each).
    private var postings: [UInt64: [UInt32]] = [:]
    /// The id in each slot; empty when the slot is free.
    private var slots: [String] = []
    private var slotOfID: [String: UInt32] = [:]
    private var freeSlots: [UInt32] = []

    /// Which products the index holds.
    private(set) var coverage = IndexCoverage.none

    /// Products indexed.
    var count: Int { slotOfID.count }

    /// An empty index that covers every product: what a build starts from for a tenant with none.
    static var complete: NameIndex {
        var index = NameIndex()
        index.coverage = .all
        return index
    }

    private func covers(_ id: String) -> Bool { coverage.covers(id) }

    /// Starts a build: `extend` then indexes the products in id order.
    mutating func beginBuild() { coverage.begin() }

    /// Indexes the next products of a build, ids in order, up to `last`; the build is over when `complete`.
    mutating func extend(with products: some Sequence<(id: String, name: String)>, through last: String?, complete: Bool) {
        guard case .through = coverage else { return }
        for (id, name) in products { insert(id: id, name: name) }
        coverage = complete ? .all : .through(last)
    }

    /// Indexes a product's name, or re-indexes it when `oldName` (its previous name) differs.
    mutating func put(id: String, name: String, oldName: String?) {
        guard covers(id) else { return }
        if let oldName {
            if oldName == name { return }
            remove(id: id, name: oldName)
        }
        insert(id: id, name: name)
    }

    private mutating func insert(id: String, name: String) {
        let slot: UInt32
        if let free = freeSlots.popLast() {
            slot = free
            slots[Int(free)] = id
        } else {
            slot = UInt32(slots.count)
            slots.append(id)
        }
        slotOfID[id] = slot
        for trigram in Self.trigrams(ofName: name) { postings[trigram, default: []].append(slot) }
    }

    /// Drops a product, given the name it was indexed under.
    mutating func remove(id: String, name: String) {
        guard covers(id), let slot = slotOfID.removeValue(forKey: id) else { return }
        for trigram in Self.trigrams(ofName: name) {
            postings[trigram]?.removeFirstOccurrence(of: slot)
            if postings[trigram]?.isEmpty == true { postings[trigram] = nil }
        }
        slots[Int(slot)] = ""
        freeSlots.append(slot)
    }

    /// Whether the index holds exactly the trigrams of these names (by id), each once: the tests' check.
    func holdsExactly(_ names: [String: String]) -> Bool {
        guard Set(slotOfID.keys) == Set(names.keys) else { return false }
        var expected: [UInt64: [UInt32]] = [:]
        for (id, name) in names {
            for trigram in Self.trigrams(ofName: name) { expected[trigram, default: []].append(slotOfID[id]!) }
        }
        return expected.mapValues { $0.sorted() } == postings.mapValues { $0.sorted() }
    }

    /// The slots of every name that may contain `needle` (already folded), as copies of the posting lists of its
    /// rarest trigram and of the next rarest ones not much longer: `intersection` of them gives the candidates.
    /// Nil when the index cannot narrow the search: a needle under three characters, or a rarest trigram held by
    /// more than `limit` names (then walking the catalog in order finds a page sooner).
    func candidateLists(forFolded needle: String, limit: Int) -> [[UInt32]]? {
        guard coverage == .all else { return nil }
        let trigrams = Self.trigrams(of: Array(needle.unicodeScalars))
        guard !trigrams.isEmpty else { return nil }
        var lists: [[UInt32]] = []
        for trigram in trigrams {
            guard let list = postings[trigram] else { return [[]] }
            lists.append(list)
        }
        lists.sort { $0.count < $1.count }
        guard lists[0].count <= limit else { return nil }
        // Intersecting costs a hash lookup per slot: worth it for lists up to 8 times the rarest.
        let longest = lists[0].count * 8
        return Array(lists.prefix(Self.listsIntersected).prefix { $0.count <= longest })
    }

    /// The posting lists `candidateLists` hands out at most.
    static let listsIntersected = 3

    /// The slots in every list: the candidates for a needle.
    static func intersection(_ lists: [[UInt32]]) -> [UInt32] {
        guard var result = lists.first else { return [] }
        for list in lists.dropFirst() where !result.isEmpty {
            let members = Set(list)
            result.removeAll { !members.contains($0) }
        }
        return result
    }

    /// `candidateLists` intersected; the tests' shorthand.
    func candidates(forFolded needle: String, limit: Int) -> [UInt32]? {
        candidateLists(forFolded: needle, limit: limit).map(Self.intersection)
    }

    /// The id in a slot; nil when the slot was freed since it was handed out.
    func id(inSlot slot: UInt32) -> String? {
        guard Int(slot) < slots.count else { return nil }
        let id = slots[Int(slot)]
        return id.isEmpty ? nil : id
    }

    /// The distinct trigrams of a name under `ProductQuery.fold`. ASCII names, the common case, are folded byte
    /// by byte without building a folded copy.
    static func trigrams(ofName name: String) -> [UInt64] {
        let ascii: [UInt64]? = name.utf8.withContiguousStorageIfAvailable { bytes -> [UInt64]? in
            guard bytes.allSatisfy({ $0 < 0x80 }) else { return nil }
            guard bytes.count >= 3 else { return [] }
            @inline(__always) func lower(_ byte: UInt8) -> UInt64 { UInt64(byte &- 0x41 < 26 ? byte | 0x20 : byte) }
            var result: [UInt64] = []
            result.reserveCapacity(bytes.count - 2)
            for start in 0...(bytes.count - 3) {
                result.append(lower(bytes[start]) << 42 | lower(bytes[start + 1]) << 21 | lower(bytes[start + 2]))
            }
            return Self.distinct(result)
        } ?? nil
        return ascii ?? trigrams(of: Array(ProductQuery.fold(name).unicodeScalars))
    }

    private static func trigrams(of scalars: [Unicode.Scalar]) -> [UInt64] {
        guard scalars.count >= 3 else { return [] }
        var result: [UInt64] = []
        result.reserveCapacity(scalars.count - 2)
        for start in 0...(scalars.count - 3) {
            result.append(
                UInt64(scalars[start].value) << 42 | UInt64(scalars[start + 1].value) << 21 | UInt64(scalars[start + 2].value))
        }
        return distinct(result)
    }

    private static func distinct(_ trigrams: [UInt64]) -> [UInt64] {
        guard trigrams.count > 1 else { return trigrams }
        var sorted = trigrams
        sorted.sort()
        var result: [UInt64] = []
        result.reserveCapacity(sorted.count)
        for trigram in sorted where trigram != result.last { result.append(trigram) }
        return result
    }
}

extension Array where Element == UInt32 {
    /// Removes one occurrence of `value` by moving the last element into its place (order does not matter).
    fileprivate mutating func removeFirstOccurrence(of value: UInt32) {
        guard let index = firstIndex(of: value) else { return }
        swapAt(index, count - 1)
        removeLast()
    }
}
