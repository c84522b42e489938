import Shared

/// A shop's storefront search index (`GET /products/search`): each product's words, type, tags, categories,
/// option values and prices as small integer codes, kept with the cache so that it sees every write as readers
/// do, and never rebuilt once built.
///
/// Documents sit in slots, in chunks (`SearchColumns`): a search copies the index out of the shop's lock in O(1) and
/// scans it outside, while a write that follows copies one chunk, not the shop. Words have posting lists of slots,
/// read under the lock to find a query's candidates; a list keeps the slots of removed documents until it is
/// compacted, as every candidate is checked against its document anyway.
///
/// Built once a search asks for it, in id order, a chunk at a time, as `NameIndex` is: `coverage` says how far.
struct SearchIndex {
    /// What search reads of a product besides its columns (`SearchColumns`): its id and words, for a match only.
    final class Document: Sendable {
        let id: String
        /// The folded name, for `sort=name`.
        let nameKey: String
        let type: UInt32
        let active: Bool
        let createdMs: Int64
        /// Word codes of the product's own language (name, description, tags, SKUs, option values), sorted.
        let words: [UInt32]
        /// Word codes of its name, sorted: a word found there ranks higher.
        let nameWords: [UInt32]
        /// `locale << 32 | word` of its translations' words, sorted.
        let localeWords: [UInt64]

        init(
            id: String, nameKey: String, type: UInt32, active: Bool, createdMs: Int64, words: [UInt32], nameWords: [UInt32], localeWords: [UInt64]
        ) {
            (self.id, self.nameKey, self.type, self.active, self.createdMs) = (id, nameKey, type, active, createdMs)
            (self.words, self.nameWords, self.localeWords) = (words, nameWords, localeWords)
        }

        /// What a free slot holds.
        static let free = Document(
            id: "", nameKey: "", type: 0, active: false, createdMs: 0, words: [], nameWords: [], localeWords: [])
    }

    static let amountBits: Int64 = 44
    static let amountMask: Int64 = (1 << 44) - 1
    /// ISO 4217 codes by their index in sorted order: a price's currency in its top bits.
    static let currencyCodes: [String: Int64] = Dictionary(
        uniqueKeysWithValues: VariantRules.currencies.sorted().enumerated().map { ($0.element, Int64($0.offset)) })

    /// What a facet's values belong to: a value code's group.
    enum Group {
        static let type: UInt32 = 0
        static let tag: UInt32 = 1
        static let category: UInt32 = 2
        /// Option names take 3 and up, in the order first seen.
        static let firstOption: UInt32 = 3
    }

    private(set) var documents = SearchColumns()
    private var slotOfID: [String: Int] = [:]
    private var freeSlots: [Int] = []

    /// Every value ever seen (types, tags, categories, option values), by group and text.
    private var valueCodes: [String: UInt32] = [:]
    private(set) var valueNames: [String] = []
    private(set) var valueGroups: [UInt32] = []
    /// Option names ever seen, with their group.
    private(set) var optionGroups: [String: UInt32] = [:]

    /// Every word ever seen, its posting list of slots (with stale entries), and how many documents hold it.
    private var wordCodes: [String: UInt32] = [:]
    private var wordTexts: [String] = []
    private var postings: [[UInt32]] = []
    private var liveCounts: [Int32] = []
    /// Word codes by their first two characters, for the last word's prefix.
    private var wordsByHead: [String: [UInt32]] = [:]
    private var localeCodes: [String: UInt32] = [:]

    /// Bytes the index holds, roughly: documents, codes, posting entries, and each value and word once.
    private(set) var approximateBytes = 0

    private(set) var coverage = IndexCoverage.none

    /// Products indexed.
    var count: Int { slotOfID.count }

    private func covers(_ id: String) -> Bool { coverage.covers(id) }

    mutating func beginBuild() { coverage.begin() }

    /// Indexes the next products of a build, in id order, through `last`; the build is over when `complete`.
    mutating func extend(with products: some Sequence<CachedProduct>, through last: String?, complete: Bool) {
        guard case .through = coverage else { return }
        for cached in products {
            remove(id: cached.id)
            insert(cached.product)
        }
        coverage = complete ? .all : .through(last)
    }

    /// A product readers now see, if the index covers it: in its slot, posting only the words it did not hold.
    mutating func put(_ cached: CachedProduct) {
        guard covers(cached.id) else { return }
        var slot: Int?
        var posted = Set<UInt32>()
        if let held = slotOfID[cached.id] {
            let document = documents[held]
            (slot, posted) = (held, document.distinctWords)
            unlist(document, slot: held)
        }
        insert(cached.product, slot: slot, posted: posted)
    }

    /// A product readers no longer see.
    mutating func remove(id: String) {
        guard let slot = slotOfID.removeValue(forKey: id) else { return }
        unlist(documents[slot], slot: slot)
        documents.free(slot)
        freeSlots.append(slot)
    }

    /// Takes a document's words out of the live counts (its posting entries go stale) and its bytes off the total.
    private mutating func unlist(_ document: Document, slot: Int) {
        let words = document.distinctWords
        for word in words { liveCounts[Int(word)] -= 1 }
        let (values, prices) = (documents.values(slot).count, documents.prices(slot).count)
        approximateBytes -= Self.bytes(of: document, values: values, prices: prices, distinctWords: words.count)
    }

    /// Indexes a product in `slot` (a free or new one when nil), whose posting lists already hold the words `posted`.
    private mutating func insert(_ product: Product, slot given: Int? = nil, posted: Set<UInt32> = []) {
        let slot = given ?? freeSlots.popLast() ?? documents.count
        var values = Set<UInt32>()
        for tag in product.tags { values.insert(value(tag, group: Group.tag)) }
        for category in product.categoryIDs { values.insert(value(category, group: Group.category)) }
        var prices = Set<Int64>()
        var words = Set<UInt32>(), nameWords = Set<UInt32>(), localeWords = Set<UInt64>()
        func add(_ text: String, to set: inout Set<UInt32>) {
            for word in SearchText.words(in: text) { set.insert(code(of: word)) }
        }
        for variant in product.variants {
            for (option, chosen) in variant.options { values.insert(value(chosen, group: optionGroup(option))) }
            for price in variant.prices {
                if let currency = Self.currencyCodes[price.currency] { prices.insert(currency << Self.amountBits | price.amount) }
            }
            if let sku = variant.sku { add(sku, to: &words) }
        }
        add(product.name, to: &nameWords)
        words.formUnion(nameWords)
        if let description = product.description { add(description, to: &words) }
        for tag in product.tags { add(tag, to: &words) }
        for option in product.options { for chosen in option.values { add(chosen, to: &words) } }
        for (locale, translation) in product.translations {
            var translated = Set<UInt32>()
            if let name = translation.name { add(name, to: &translated) }
            if let description = translation.description { add(description, to: &translated) }
            for option in translation.options.values { for chosen in option.values.values { add(chosen, to: &translated) } }
            let localeCode = UInt64(localeCode(locale))
            for word in translated { localeWords.insert(localeCode << 32 | UInt64(word)) }
        }
        let document = Document(
            id: product.id, nameKey: ProductQuery.fold(product.name), type: value(product.type, group: Group.type), active: product.active,
            createdMs: Timestamp.epochMilliseconds(product.createdAt) ?? .min, words: words.sorted(), nameWords: nameWords.sorted(),
            localeWords: localeWords.sorted())
        let distinct = document.distinctWords
        for word in distinct {
            liveCounts[Int(word)] += 1
            if !posted.contains(word) { post(word, slot: slot) }
        }
        documents.set(slot, document, values: values.sorted(), prices: prices.sorted())
        slotOfID[product.id] = slot
        approximateBytes += Self.bytes(of: document, values: values.count, prices: prices.count, distinctWords: distinct.count)
    }

    private static func bytes(of document: Document, values: Int, prices: Int, distinctWords: Int) -> Int {
        // The document's object and three array allocations, its columns, its id entry, and one posting entry per word.
        200 + document.id.utf8.count + document.nameKey.utf8.count + 4 * (values + document.words.count + document.nameWords.count)
            + 8 * (prices + document.localeWords.count) + 4 * distinctWords
    }

    /// Adds `slot` to the word's posting list, compacting the list first when most of it is stale: entries of
    /// documents that no longer hold the word go, and repeats of a slot reused by another holder.
    private mutating func post(_ word: UInt32, slot: Int) {
        let index = Int(word)
        if postings[index].count > 2 * Int(liveCounts[index]) + 16 {
            let documents = self.documents
            var kept = postings[index].filter { slot in documents[Int(slot)].holds(word: word) }
            kept.sort()
            var distinct: [UInt32] = []
            distinct.reserveCapacity(kept.count)
            for slot in kept where slot != distinct.last { distinct.append(slot) }
            postings[index] = distinct
        }
        postings[index].append(UInt32(slot))
    }

    private mutating func value(_ text: String, group: UInt32) -> UInt32 {
        let key = "\(group)\u{0}\(text)"
        if let code = valueCodes[key] { return code }
        let code = UInt32(valueNames.count)
        valueCodes[key] = code
        valueNames.append(text)
        valueGroups.append(group)
        approximateBytes += 64 + 2 * key.utf8.count
        return code
    }

    private mutating func optionGroup(_ name: String) -> UInt32 {
        if let group = optionGroups[name] { return group }
        let group = Group.firstOption + UInt32(optionGroups.count)
        optionGroups[name] = group
        return group
    }

    private mutating func code(of word: String) -> UInt32 {
        if let code = wordCodes[word] { return code }
        let code = UInt32(wordTexts.count)
        wordCodes[word] = code
        wordTexts.append(word)
        postings.append([])
        liveCounts.append(0)
        wordsByHead[String(word.prefix(2)), default: []].append(code)
        approximateBytes += 96 + 2 * word.utf8.count
        return code
    }

    private mutating func localeCode(_ locale: String) -> UInt32 {
        if let code = localeCodes[locale] { return code }
        let code = UInt32(localeCodes.count)
        localeCodes[locale] = code
        return code
    }

    // MARK: Planning a search, under the shop's lock

    /// What a search needs from the index, read under the lock: the documents (copied in O(1)), the codes its
    /// filters name, and its candidates by word.
    struct Plan: Sendable {
        var documents: SearchColumns
        var valueNames: [String]
        var valueGroups: [UInt32]
        /// Word codes every result holds, one set per word of `q` (the last word's set holds every word it begins).
        var wordSets: [CodeSet]
        /// Locale codes whose words count besides the product's own.
        var locales: [UInt32]
        /// Slots to check, sorted and distinct; nil to check every document.
        var candidates: [UInt32]?
        var types: CodeSet?
        var tags: CodeSet?
        var categories: CodeSet?
        var options: [(group: UInt32, values: CodeSet)]
        /// The groups of the option facets asked for, by name.
        var optionFacetGroups: [String: UInt32]
        var currency: Int64?
    }

    /// Plans `query`; `categories` holds the ids of its categories and their descendants. Throws 400 for an option
    /// name no product of the shop has ever had.
    func plan(_ query: SearchQuery, categories: [String]?) throws(APIError) -> Plan {
        func codes(_ texts: [String]?, group: UInt32) -> CodeSet? {
            texts.map { CodeSet($0.compactMap { valueCodes["\(group)\u{0}\($0)"] }) }
        }
        var options: [(group: UInt32, values: CodeSet)] = []
        for (name, values) in query.options {
            guard let group = optionGroups[name] else {
                throw APIError.invalidParameter("option.\(name)", "no product of this shop has an option named '\(name)'")
            }
            options.append((group, codes(values, group: group) ?? CodeSet([])))
        }
        var optionFacetGroups: [String: UInt32] = [:]
        for case .option(let name) in query.facets {
            guard let group = optionGroups[name] else {
                throw APIError.invalidParameter("facets", "no product of this shop has an option named '\(name)'")
            }
            optionFacetGroups[name] = group
        }
        var wordCodeLists: [[UInt32]] = []
        for (index, word) in query.words.enumerated() {
            if index == query.words.count - 1 {
                wordCodeLists.append(prefixed(word))
            } else {
                wordCodeLists.append(wordCodes[word].map { [$0] } ?? [])
            }
        }
        var locales: [UInt32] = []
        if let locale = query.locale {
            var parts = locale.split(separator: "-").map(String.init)
            while !parts.isEmpty {
                if let code = localeCodes[parts.joined(separator: "-")] { locales.append(code) }
                parts.removeLast()
            }
        }
        return Plan(
            documents: documents, valueNames: valueNames, valueGroups: valueGroups, wordSets: wordCodeLists.map(CodeSet.init),
            locales: locales, candidates: candidates(wordCodeLists), types: codes(query.types, group: Group.type), tags: codes(query.tags, group: Group.tag),
            categories: codes(categories, group: Group.category), options: options, optionFacetGroups: optionFacetGroups,
            currency: query.currency.flatMap { Self.currencyCodes[$0] })
    }

    /// Codes of every word beginning with `prefix`.
    private func prefixed(_ prefix: String) -> [UInt32] {
        if prefix.count >= 2 {
            return (wordsByHead[String(prefix.prefix(2))] ?? []).filter { wordTexts[Int($0)].hasPrefix(prefix) }
        }
        return wordsByHead.filter { $0.key.hasPrefix(prefix) }.flatMap(\.value)
    }

    /// The slots of the shortest union of posting lists among the words' sets; nil when it would hold more than a
    /// quarter of the documents (checking every document is then as quick).
    private func candidates(_ wordSets: [[UInt32]]) -> [UInt32]? {
        guard !wordSets.isEmpty else { return nil }
        var best: [UInt32]?
        var bestSize = Int.max
        for set in wordSets {
            let size = set.reduce(0) { $0 + postings[Int($1)].count }
            if size < bestSize { (best, bestSize) = (set, size) }
        }
        guard let best, bestSize <= max(1024, documents.count / 4) else { return nil }
        var slots: [UInt32] = []
        slots.reserveCapacity(bestSize)
        for word in best { slots += postings[Int(word)] }
        slots.sort()
        var distinct: [UInt32] = []
        distinct.reserveCapacity(slots.count)
        for slot in slots where slot != distinct.last { distinct.append(slot) }
        return distinct
    }
}

extension SearchIndex.Document {
    /// Its word codes in every language, each once.
    var distinctWords: Set<UInt32> {
        var words = Set(self.words)
        for pair in localeWords { words.insert(UInt32(truncatingIfNeeded: pair)) }
        return words
    }

    /// Whether the document holds `word`, in its own language or a translation.
    func holds(word: UInt32) -> Bool {
        if words.sortedContains(word) { return true }
        return localeWords.contains { UInt32(truncatingIfNeeded: $0) == word }
    }
}

extension Array where Element: Comparable {
    /// Whether this sorted array holds `value`.
    func sortedContains(_ value: Element) -> Bool {
        var low = 0, high = count
        while low < high {
            let mid = (low + high) / 2
            if self[mid] < value { low = mid + 1 } else { high = mid }
        }
        return low < count && self[low] == value
    }
}

/// A set of codes (values, words) as a bitmap: a lookup is a shift and a mask, not a hash.
struct CodeSet: Sendable {
    private var bits: [UInt64] = []
    let isEmpty: Bool

    init(_ codes: some Sequence<UInt32>) {
        var empty = true
        for code in codes {
            let word = Int(code >> 6)
            if word >= bits.count { bits += [UInt64](repeating: 0, count: word + 1 - bits.count) }
            bits[word] |= 1 << UInt64(code & 63)
            empty = false
        }
        isEmpty = empty
    }

    func contains(_ code: UInt32) -> Bool {
        let word = Int(code >> 6)
        return word < bits.count && bits[word] & (1 << UInt64(code & 63)) != 0
    }

    /// Whether any of `codes` is in the set.
    func containsAny(of codes: borrowing [UInt32]) -> Bool {
        codes.withUnsafeBufferPointer { codes in
            for code in codes where contains(code) { return true }
            return false
        }
    }
}
