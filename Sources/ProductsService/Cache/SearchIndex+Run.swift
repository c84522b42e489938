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
                for slot in candidates { if let document = documents[Int(slot)] { scan.visit(document) } }
            } else {
                documents.forEach { _, document in if let document { scan.visit(document) } }
            }
        }
        // Else a word no product holds: nothing matches, and every count is zero.
        var outcome = SearchOutcome(total: scan.total, pricesAsked: scan.pricesAsked)
        if scan.lowestPrice <= scan.highestPrice { outcome.priceRange = (scan.lowestPrice, scan.highestPrice) }
        return finish(outcome, query: query, counts: scan.counts, best: scan.best)
    }

    /// One pass over the documents, with its counts kept in stored properties (not captured variables) for speed.
    private struct Scan {
        let plan: SearchIndex.Plan
        let query: SearchQuery
        var total = 0
        var counts: [Int32]
        /// By group: whether its facet was asked for, and which filter its counts leave out (-1: none).
        var groupWanted: [Bool]
        var groupFilter: [Int]
        let typeWanted: Bool
        let pricesAsked: Bool
        let priced: Bool
        let low: Int64, high: Int64
        var lowestPrice = Int64.max, highestPrice = Int64.min
        var best: BestResults

        init(plan: SearchIndex.Plan, query: SearchQuery) {
            self.plan = plan
            self.query = query
            counts = [Int32](repeating: 0, count: plan.valueNames.count)
            let groups = Int(SearchIndex.Group.firstOption) + (plan.valueGroups.max().map { Int($0) + 1 } ?? 0)
            groupWanted = [Bool](repeating: false, count: groups)
            groupFilter = [Int](repeating: -1, count: groups)
            for facet in query.facets {
                let group: UInt32, filter: Int
                switch facet {
                case .type: (group, filter) = (SearchIndex.Group.type, FilterSlot.type)
                case .tag: (group, filter) = (SearchIndex.Group.tag, FilterSlot.tag)
                case .category: (group, filter) = (SearchIndex.Group.category, FilterSlot.category)
                case .price: continue
                case .option(let name):
                    group = plan.optionFacetGroups[name]!
                    filter = plan.options.firstIndex { $0.group == group }.map { FilterSlot.firstOption + $0 } ?? -1
                }
                guard Int(group) < groups else { continue }  // an option no value was ever seen for
                (groupWanted[Int(group)], groupFilter[Int(group)]) = (true, filter)
            }
            typeWanted = groupWanted[Int(SearchIndex.Group.type)]
            pricesAsked = query.facets.contains(.price)
            priced = query.priceGTE != nil || query.priceLTE != nil
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
            var failures = 0, failed = -1
            if let types = plan.types, !types.contains(document.type) { (failures, failed) = (failures + 1, FilterSlot.type) }
            if let tags = plan.tags, !document.values.contains(where: tags.contains) { (failures, failed) = (failures + 1, FilterSlot.tag) }
            if failures < 2, let categories = plan.categories, !document.values.contains(where: categories.contains) {
                (failures, failed) = (failures + 1, FilterSlot.category)
            }
            if failures < 2, priced, !hasPrice(document, in: low...high) { (failures, failed) = (failures + 1, FilterSlot.price) }
            if failures < 2 {
                for (index, option) in plan.options.enumerated() where !document.values.contains(where: option.values.contains) {
                    (failures, failed) = (failures + 1, FilterSlot.firstOption + index)
                    if failures >= 2 { break }
                }
            }
            switch failures {
            case 0:
                total += 1
                if typeWanted { counts[Int(document.type)] += 1 }
                countValues(document, onlyFilter: nil)
                if pricesAsked { countPrices(document) }
                let key = plan.sortKey(document, sort: query.sort, score: score)
                if let token = query.pageToken,
                   !BestResults.precedes((token.key, token.id), (key, document.id), descending: query.sort.descending)
                {
                    return
                }
                best.offer(key: key, id: document.id)
            case 1:
                switch failed {
                case FilterSlot.type: if typeWanted { counts[Int(document.type)] += 1 }
                case FilterSlot.price: if pricesAsked { countPrices(document) }
                default: countValues(document, onlyFilter: failed)
                }
            default: return
            }
        }

        private func hasPrice(_ document: SearchIndex.Document, in range: ClosedRange<Int64>) -> Bool {
            guard let currency = plan.currency else { return false }
            return document.prices.contains { $0 >> SearchIndex.amountBits == currency && range.contains($0 & SearchIndex.amountMask) }
        }

        private mutating func countPrices(_ document: SearchIndex.Document) {
            guard let currency = plan.currency else { return }
            for price in document.prices where price >> SearchIndex.amountBits == currency {
                let amount = price & SearchIndex.amountMask
                lowestPrice = min(lowestPrice, amount)
                highestPrice = max(highestPrice, amount)
            }
        }

        private mutating func countValues(_ document: SearchIndex.Document, onlyFilter: Int?) {
            for value in document.values {
                let group = Int(plan.valueGroups[Int(value)])
                guard group < groupWanted.count, groupWanted[group] else { continue }
                if let onlyFilter, groupFilter[group] != onlyFilter { continue }
                counts[Int(value)] += 1
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
            if document.nameWords.contains(where: set.contains) {
                score += 2
            } else if document.words.contains(where: set.contains)
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
