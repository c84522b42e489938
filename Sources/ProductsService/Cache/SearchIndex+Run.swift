import Shared

/// A search's answer, before its products are read: the page's ids in order, the exact total, the facets and
/// where the next page starts.
struct SearchOutcome: Sendable {
    var ids: [String] = []
    var total = 0
    /// Each value facet asked for, in the order asked: its values by count (then value), at most 100.
    var valueFacets: [(name: String, counts: [(value: String, count: Int)])] = []
    /// The lowest and highest price in the currency among the products the price facet counts; nil when none has one.
    var priceRange: (min: Int64, max: Int64)?
    var pricesAsked = false
    var nextPageToken: SearchQuery.PageToken?
}

/// Which filter a facet's counts leave out: the facet's own.
private enum FilterSlot {
    static let type = 0, tag = 1, category = 2, price = 3, firstOption = 4
}

extension SearchIndex.Plan {
    /// Runs `query` over the documents, out of any lock: every filter, the facets (each counting the products
    /// that pass every filter but its own), the exact total, and the page after the query's token.
    func run(_ query: SearchQuery) -> SearchOutcome {
        var scan = Scan(plan: self, query: query)
        if !wordSets.contains(where: \.isEmpty) {
            if let candidates {
                var start = 0
                while start < candidates.count {
                    // The candidates are sorted: a run of them shares a chunk.
                    let chunkIndex = Int(candidates[start] >> 10)
                    var end = start + 1
                    while end < candidates.count, Int(candidates[end] >> 10) == chunkIndex { end += 1 }
                    scan.visit(documents.chunks[chunkIndex], candidates[start..<end].lazy.map { Int($0 & 1023) })
                    start = end
                }
            } else {
                for chunk in documents.chunks { scan.visit(chunk, chunk.flags.indices) }
            }
        }
        // Else a word no product holds: nothing matches, and every count is zero.
        var outcome = SearchOutcome(total: scan.total, pricesAsked: scan.pricesAsked)
        if scan.lowestPrice <= scan.highestPrice { outcome.priceRange = (scan.lowestPrice, scan.highestPrice) }
        let counts = Array(scan.counts)
        scan.deallocate()
        return finish(outcome, query: query, counts: counts, best: scan.best)
    }

    /// One pass over the documents, with its counts kept in stored properties (not captured variables) for speed.
    ///
    /// Filters are bits (`FilterSlot`): a table gives, for each value code (a type, tag, category or option value),
    /// the filters it satisfies and the facet it counts toward, so a document is judged in one pass over its values.
    private struct Scan {
        let plan: SearchIndex.Plan
        let query: SearchQuery
        var total = 0
        /// By value code: its count. The tables are buffers: the inner loop neither checks bounds nor counts references.
        let counts: UnsafeMutableBufferPointer<Int32>
        /// By value code: the filters the value satisfies.
        let satisfies: UnsafeMutableBufferPointer<UInt64>
        /// By value code: `notCounted`, `countedAlways` (its facet has no filter of its own) or the filter slot its
        /// facet leaves out.
        let countsWith: UnsafeMutableBufferPointer<Int8>
        /// The filters a document must pass.
        let required: UInt64
        let pricesAsked: Bool
        let low: Int64, high: Int64
        var lowestPrice = Int64.max, highestPrice = Int64.min
        var best: BestResults

        static let notCounted: Int8 = -2
        static let countedAlways: Int8 = -1

        init(plan: SearchIndex.Plan, query: SearchQuery) {
            self.plan = plan
            self.query = query
            let values = plan.valueNames.count
            counts = .allocate(capacity: values)
            counts.initialize(repeating: 0)
            var required: UInt64 = 0
            var satisfies = [UInt64](repeating: 0, count: values)
            var byGroup: [UInt32: (filter: Int, set: CodeSet?)] = [
                SearchIndex.Group.type: (FilterSlot.type, plan.types), SearchIndex.Group.tag: (FilterSlot.tag, plan.tags),
                SearchIndex.Group.category: (FilterSlot.category, plan.categories),
            ]
            for (index, option) in plan.options.enumerated() { byGroup[option.group] = (FilterSlot.firstOption + index, option.values) }
            for (group, filter) in byGroup {
                guard let set = filter.set else { continue }
                required |= 1 << UInt64(filter.filter)
                for code in 0..<values where plan.valueGroups[code] == group && set.contains(UInt32(code)) {
                    satisfies[code] |= 1 << UInt64(filter.filter)
                }
            }
            if query.priceGTE != nil || query.priceLTE != nil { required |= 1 << UInt64(FilterSlot.price) }
            var countsWith = [Int8](repeating: Self.notCounted, count: values)
            for facet in query.facets {
                guard let group = plan.group(of: facet) else { continue }
                let own = byGroup[group].flatMap { $0.set == nil ? nil : Int8($0.filter) } ?? Self.countedAlways
                for code in 0..<values where plan.valueGroups[code] == group { countsWith[code] = own }
            }
            self.required = required
            self.satisfies = .allocate(capacity: values)
            _ = self.satisfies.initialize(from: satisfies)
            self.countsWith = .allocate(capacity: values)
            _ = self.countsWith.initialize(from: countsWith)
            pricesAsked = query.facets.contains(.price)
            (low, high) = (query.priceGTE ?? 0, query.priceLTE ?? SearchIndex.amountMask)
            best = BestResults(limit: query.limit + 1, descending: query.sort.descending)
        }

        func deallocate() {
            counts.deallocate()
            satisfies.deallocate()
            countsWith.deallocate()
        }

        /// Judges the chunk's documents at `indices`, reading its columns in place.
        mutating func visit(_ chunk: SearchColumns.Chunk, _ indices: some Sequence<Int>) {
            chunk.withBuffers { columns in visit(columns, indices) }
        }

        private mutating func visit(_ chunk: SearchColumns.Chunk.Buffers, _ indices: some Sequence<Int>) {
            let checkWords = !plan.wordSets.isEmpty
            let pricesRequired = required & (1 << UInt64(FilterSlot.price)) != 0
            let activeFlag: UInt8? = query.active.map { $0 ? SearchColumns.Chunk.active : 0 }
            let checkCreated = query.createdGTE != nil || query.createdGT != nil || query.createdLTE != nil || query.createdLT != nil
            for index in indices {
                let flags = chunk.flags[index]
                guard flags & SearchColumns.Chunk.live != 0 else { continue }
                if let activeFlag, flags & SearchColumns.Chunk.active != activeFlag { continue }
                if checkCreated, !plan.admitsCreated(chunk.createdMs[index], query) { continue }
                var score: Int64 = 0
                if checkWords {
                    guard let matched = plan.matchWords(chunk.documents[index]) else { continue }
                    score = matched
                }
                let values = SearchColumns.Chunk.range(chunk.valueRuns[index])
                var satisfied = satisfies[Int(chunk.types[index])]
                for position in values { satisfied |= satisfies[Int(chunk.values[position])] }
                let prices = SearchColumns.Chunk.range(chunk.priceRuns[index])
                if pricesRequired, hasPrice(chunk.prices, prices) { satisfied |= 1 << UInt64(FilterSlot.price) }
                let missing = required & ~satisfied
                switch missing.nonzeroBitCount {
                case 0:
                    total += 1
                    count(chunk.types[index], chunk.values, values, only: nil)
                    if pricesAsked { countPrices(chunk.prices, prices) }
                    // The document itself (a reference to count) only for a result that may make the page.
                    let key: SearchQuery.SortKey
                    switch query.sort {
                    case .relevance: key = .number(score)
                    case .price, .priceDescending: key = lowest(chunk.prices, prices).map { .number($0) } ?? .missing
                    case .created, .createdDescending: key = .number(chunk.createdMs[index])
                    case .name, .nameDescending: key = .text(chunk.documents[index].nameKey)
                    }
                    if let token = query.pageToken, best.keyPrecedes(key, token.key) { continue }
                    if best.rejects(key) { continue }
                    let id = chunk.documents[index].id
                    if let token = query.pageToken, !BestResults.precedes((token.key, token.id), (key, id), descending: query.sort.descending) {
                        continue
                    }
                    best.offer(key: key, id: id)
                case 1:
                    let failed = missing.trailingZeroBitCount
                    if failed == FilterSlot.price {
                        if pricesAsked { countPrices(chunk.prices, prices) }
                    } else {
                        count(chunk.types[index], chunk.values, values, only: Int8(failed))
                    }
                default: continue
                }
            }
        }

        private func hasPrice(_ pool: UnsafeBufferPointer<Int64>, _ run: Range<Int>) -> Bool {
            guard let currency = plan.currency else { return false }
            for position in run {
                let price = pool[position]
                if price >> SearchIndex.amountBits == currency, (low...high).contains(price & SearchIndex.amountMask) { return true }
            }
            return false
        }

        /// The lowest price in the currency among a document's prices.
        private func lowest(_ pool: UnsafeBufferPointer<Int64>, _ run: Range<Int>) -> Int64? {
            guard let currency = plan.currency else { return nil }
            var lowest: Int64?
            for position in run where pool[position] >> SearchIndex.amountBits == currency {
                lowest = min(lowest ?? .max, pool[position] & SearchIndex.amountMask)
            }
            return lowest
        }

        private mutating func countPrices(_ pool: UnsafeBufferPointer<Int64>, _ run: Range<Int>) {
            guard let currency = plan.currency else { return }
            for position in run where pool[position] >> SearchIndex.amountBits == currency {
                let amount = pool[position] & SearchIndex.amountMask
                lowestPrice = min(lowestPrice, amount)
                highestPrice = max(highestPrice, amount)
            }
        }

        /// Counts a document's type and values toward their facets: every facet (`only` nil, it passed every
        /// filter), or only the facet whose own filter is `only` (the one filter it failed).
        private func count(_ type: UInt32, _ pool: UnsafeBufferPointer<UInt32>, _ run: Range<Int>, only: Int8?) {
            func add(_ value: UInt32) {
                let rule = countsWith[Int(value)]
                if let only { if rule == only { counts[Int(value)] += 1 } } else if rule != Self.notCounted { counts[Int(value)] += 1 }
            }
            add(type)
            for position in run { add(pool[position]) }
        }
    }

    /// The group of a value facet's values; nil for the price facet.
    func group(of facet: SearchQuery.Facet) -> UInt32? {
        switch facet {
        case .type: SearchIndex.Group.type
        case .tag: SearchIndex.Group.tag
        case .category: SearchIndex.Group.category
        case .price: nil
        case .option(let name): optionFacetGroups[name]
        }
    }

    private func finish(_ outcome: SearchOutcome, query: SearchQuery, counts: [Int32], best: BestResults) -> SearchOutcome {
        var outcome = outcome
        for facet in query.facets {
            guard let group = group(of: facet) else { continue }
            var values: [(value: String, count: Int)] = []
            for code in counts.indices where counts[code] > 0 && valueGroups[code] == group {
                values.append((valueNames[code], Int(counts[code])))
            }
            values.sort { $0.count != $1.count ? $0.count > $1.count : $0.value < $1.value }
            outcome.valueFacets.append((facet.name, Array(values.prefix(SearchQuery.maxFacetValues))))
        }
        let ordered = best.ordered()
        outcome.ids = ordered.prefix(query.limit).map(\.id)
        if ordered.count > query.limit, let last = ordered.prefix(query.limit).last {
            outcome.nextPageToken = SearchQuery.PageToken(key: last.key, id: last.id, fingerprint: query.fingerprint)
        }
        return outcome
    }

    fileprivate func admitsCreated(_ milliseconds: Int64, _ query: SearchQuery) -> Bool {
        if let bound = query.createdGTE, milliseconds < bound { return false }
        if let bound = query.createdGT, milliseconds <= bound { return false }
        if let bound = query.createdLTE, milliseconds > bound { return false }
        if let bound = query.createdLT, milliseconds >= bound { return false }
        return true
    }

    /// The relevance of a document holding every word of `q` (in its own language or the locale's): 2 for each
    /// word in its name, 1 for each elsewhere; nil when a word is missing.
    fileprivate func matchWords(_ document: SearchIndex.Document) -> Int64? {
        var score: Int64 = 0
        for set in wordSets {
            if set.containsAny(of: document.nameWords) {
                score += 2
            } else if set.containsAny(of: document.words)
                || (!locales.isEmpty && document.localeWords.contains { locales.contains(UInt32($0 >> 32)) && set.contains(UInt32(truncatingIfNeeded: $0)) })
            {
                score += 1
            } else {
                return nil
            }
        }
        return score
    }
}

/// The first `limit` results in sort order, kept in a heap whose top is the last of them.
struct BestResults {
    typealias Entry = (key: SearchQuery.SortKey, id: String)
    let limit: Int
    let descending: Bool
    private var heap: [Entry] = []

    init(limit: Int, descending: Bool) {
        self.limit = limit
        self.descending = descending
    }

    /// Whether `a` comes before `b`: by key (a missing key last, either way), then by id.
    static func precedes(_ a: Entry, _ b: Entry, descending: Bool) -> Bool {
        if a.key != b.key {
            if case .missing = a.key { return false }
            if case .missing = b.key { return true }
            return descending ? a.key > b.key : a.key < b.key
        }
        return a.id < b.id
    }

    /// Whether `a` comes before `b` by key alone (a missing key last).
    func keyPrecedes(_ a: SearchQuery.SortKey, _ b: SearchQuery.SortKey) -> Bool {
        if a == b { return false }
        if case .missing = a { return false }
        if case .missing = b { return true }
        return descending ? a > b : a < b
    }

    /// Whether a result with `key` cannot make the page, whatever its id: the heap is full of results before it.
    func rejects(_ key: SearchQuery.SortKey) -> Bool {
        guard heap.count == limit, let top = heap.first else { return false }
        return keyPrecedes(top.key, key)
    }

    mutating func offer(key: SearchQuery.SortKey, id: String) {
        let entry = (key: key, id: id)
        if heap.count < limit {
            heap.append(entry)
            var child = heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard Self.precedes(heap[parent], heap[child], descending: descending) else { break }
                heap.swapAt(parent, child)
                child = parent
            }
        } else if let top = heap.first, Self.precedes(entry, top, descending: descending) {
            heap[0] = entry
            var parent = 0
            while true {
                var last = parent
                for child in [2 * parent + 1, 2 * parent + 2] where child < heap.count {
                    if Self.precedes(heap[last], heap[child], descending: descending) { last = child }
                }
                if last == parent { break }
                heap.swapAt(parent, last)
                parent = last
            }
        }
    }

    func ordered() -> [Entry] {
        heap.sorted { Self.precedes($0, $1, descending: descending) }
    }
}
