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
                for slot in candidates {
                    let document = documents[Int(slot)]
                    if document.isLive { scan.visit(document) }
                }
            } else {
                documents.withEachChunk { documents in
                    for document in documents where document.isLive { scan.visit(document) }
                }
            }
        }
        // Else a word no product holds: nothing matches, and every count is zero.
        var outcome = SearchOutcome(total: scan.total, pricesAsked: scan.pricesAsked)
        if scan.lowestPrice <= scan.highestPrice { outcome.priceRange = (scan.lowestPrice, scan.highestPrice) }
        return finish(outcome, query: query, counts: scan.counts, best: scan.best)
    }

    /// One pass over the documents, with its counts kept in stored properties (not captured variables) for speed.
    ///
    /// Filters are bits (`FilterSlot`): a table gives, for each value code (a type, tag, category or option value),
    /// the filters it satisfies and the facet it counts toward, so a document is judged in one pass over its values.
    private struct Scan {
        let plan: SearchIndex.Plan
        let query: SearchQuery
        var total = 0
        var counts: [Int32]
        /// By value code: the filters the value satisfies.
        let satisfies: [UInt64]
        /// By value code: `notCounted`, `countedAlways` (its facet has no filter of its own) or the filter slot its
        /// facet leaves out.
        let countsWith: [Int8]
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
            counts = [Int32](repeating: 0, count: values)
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
                let group: UInt32
                switch facet {
                case .type: group = SearchIndex.Group.type
                case .tag: group = SearchIndex.Group.tag
                case .category: group = SearchIndex.Group.category
                case .price: continue
                case .option(let name): group = plan.optionFacetGroups[name]!
                }
                let own = byGroup[group].flatMap { $0.set == nil ? nil : Int8($0.filter) } ?? Self.countedAlways
                for code in 0..<values where plan.valueGroups[code] == group { countsWith[code] = own }
            }
            (self.required, self.satisfies, self.countsWith) = (required, satisfies, countsWith)
            pricesAsked = query.facets.contains(.price)
            (low, high) = (query.priceGTE ?? 0, query.priceLTE ?? SearchIndex.amountMask)
            best = BestResults(limit: query.limit + 1, descending: query.sort.descending)
        }

        mutating func visit(_ document: SearchIndex.Document) {
            if let active = query.active, document.active != active { return }
            if !plan.admitsCreated(document.createdMs, query) { return }
            var score: Int64 = 0
            if !plan.wordSets.isEmpty {
                guard let matched = plan.matchWords(document) else { return }
                score = matched
            }
            var satisfied = satisfies[Int(document.type)]
            document.values.withUnsafeBufferPointer { values in
                satisfies.withUnsafeBufferPointer { satisfies in
                    for value in values { satisfied |= satisfies[Int(value)] }
                }
            }
            if required & (1 << UInt64(FilterSlot.price)) != 0, hasPrice(document, in: low...high) { satisfied |= 1 << UInt64(FilterSlot.price) }
            let missing = required & ~satisfied
            switch missing.nonzeroBitCount {
            case 0:
                total += 1
                count(document, only: nil)
                if pricesAsked { countPrices(document) }
                let key = plan.sortKey(document, sort: query.sort, score: score)
                if let token = query.pageToken,
                   !BestResults.precedes((token.key, token.id), (key, document.id), descending: query.sort.descending)
                {
                    return
                }
                best.offer(key: key, id: document.id)
            case 1:
                let failed = missing.trailingZeroBitCount
                if failed == FilterSlot.price {
                    if pricesAsked { countPrices(document) }
                } else {
                    count(document, only: Int8(failed))
                }
            default: return
            }
        }

        private func hasPrice(_ document: SearchIndex.Document, in range: ClosedRange<Int64>) -> Bool {
            guard let currency = plan.currency else { return false }
            for price in document.prices where price >> SearchIndex.amountBits == currency && range.contains(price & SearchIndex.amountMask) {
                return true
            }
            return false
        }

        private mutating func countPrices(_ document: SearchIndex.Document) {
            guard let currency = plan.currency else { return }
            for price in document.prices where price >> SearchIndex.amountBits == currency {
                let amount = price & SearchIndex.amountMask
                lowestPrice = min(lowestPrice, amount)
                highestPrice = max(highestPrice, amount)
            }
        }

        /// Counts the document's type and values toward their facets: every facet (`only` nil, it passed every
        /// filter), or only the facet whose own filter is `only` (the one filter it failed).
        private mutating func count(_ document: SearchIndex.Document, only: Int8?) {
            let countsWith = self.countsWith
            counts.withUnsafeMutableBufferPointer { counts in
                countsWith.withUnsafeBufferPointer { countsWith in
                    func add(_ value: UInt32) {
                        let rule = countsWith[Int(value)]
                        if let only { if rule == only { counts[Int(value)] += 1 } } else if rule != Self.notCounted { counts[Int(value)] += 1 }
                    }
                    add(document.type)
                    for value in document.values { add(value) }
                }
            }
        }
    }

    private func finish(_ outcome: SearchOutcome, query: SearchQuery, counts: [Int32], best: BestResults) -> SearchOutcome {
        var outcome = outcome
        for facet in query.facets {
            let group: UInt32
            switch facet {
            case .type: group = SearchIndex.Group.type
            case .tag: group = SearchIndex.Group.tag
            case .category: group = SearchIndex.Group.category
            case .price: continue
            case .option(let name): group = optionFacetGroups[name]!
            }
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

    fileprivate func sortKey(_ document: SearchIndex.Document, sort: SearchQuery.Sort, score: Int64) -> SearchQuery.SortKey {
        switch sort {
        case .relevance: .number(score)
        case .price, .priceDescending: document.lowestPrice(currency: currency ?? -1).map { .number($0) } ?? .missing
        case .created, .createdDescending: .number(document.createdMs)
        case .name, .nameDescending: .text(document.nameKey)
        }
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
