import Foundation
import Testing

@testable import ProductsService
import Shared

/// The search index against a brute-force computation over the same products: results, order, paging, totals and
/// every facet count, over a random catalog, and again after random updates and deletes.
@Suite("Search index")
struct SearchIndexTests {
    static let words = ["crème", "lamp", "chair", "blue", "bluish", "oak", "steel", "table", "linen", "sofa", "red", "wool"]
    static let types = ["lighting", "seating", "tables", "textiles", "decor"]
    static let tags = ["new", "sale", "eco", "gift", "bestseller", "limited", "outdoor", "kids"]
    static let categories = ["cat_a", "cat_b", "cat_c", "cat_d", "cat_e", "cat_f"]
    static let colors = ["Red", "Blue", "Green", "Black"]
    static let sizes = ["S", "M", "L"]

    /// A random product; `rng` makes the catalog the same for a seed.
    static func randomProduct(_ id: String, version: Int64, _ rng: inout some RandomNumberGenerator) -> Product {
        func pick<T>(_ list: [T]) -> T { list[Int.random(in: 0..<list.count, using: &rng)] }
        func some<T: Hashable>(_ list: [T], _ range: ClosedRange<Int>) -> [T] {
            Array(Set((0..<Int.random(in: range, using: &rng)).map { _ in pick(list) }))
        }
        let name = (0..<Int.random(in: 1...3, using: &rng)).map { _ in pick(words).capitalized }.joined(separator: " ")
        var variants: [Variant] = []
        var chosenColors = Set<String>(), chosenSizes = Set<String>()
        for position in 1...Int.random(in: 1...3, using: &rng) {
            let (color, size) = (pick(colors), pick(sizes))
            chosenColors.insert(color)
            chosenSizes.insert(size)
            var prices = [Price(currency: "EUR", amount: Int64.random(in: 100...20_000, using: &rng))]
            if Bool.random(using: &rng) { prices.append(Price(currency: "USD", amount: Int64.random(in: 100...20_000, using: &rng))) }
            variants.append(Variant(
                id: "var_\(id)_\(position)", sku: "SKU-\(id)-\(position)", options: ["Color": color, "Size": size], prices: prices,
                position: Int64(position)))
        }
        var translations: [String: Translation] = [:]
        if Int.random(in: 0..<4, using: &rng) == 0 { translations["fr"] = Translation(name: "\(pick(["lampe", "chaise", "bleu"])) \(pick(words))") }
        let created = Timestamp.format(epochMilliseconds: 1_700_000_000_000 + Int64.random(in: 0..<1_000_000_000, using: &rng))
        return Product(
            id: id, name: name, type: pick(types), description: Bool.random(using: &rng) ? "\(pick(words)) and \(pick(words))" : nil,
            tags: some(tags, 0...3), active: Int.random(in: 0..<5, using: &rng) != 0,
            options: [ProductOption(name: "Color", values: chosenColors.sorted()), ProductOption(name: "Size", values: chosenSizes.sorted())],
            variants: variants, categoryIDs: some(categories, 1...2), translations: translations, metadata: [:], createdAt: created,
            updatedAt: created, version: version)
    }

    /// A random query over the same vocabulary.
    static func randomQuery(_ rng: inout some RandomNumberGenerator) -> SearchQuery {
        func pick<T>(_ list: [T]) -> T { list[Int.random(in: 0..<list.count, using: &rng)] }
        func chance(_ n: Int) -> Bool { Int.random(in: 0..<n, using: &rng) == 0 }
        var query = SearchQuery()
        if chance(2) {
            var words = (0..<Int.random(in: 1...2, using: &rng)).map { _ in SearchText.words(in: pick(Self.words))[0] }
            if chance(2) { words[words.count - 1] = String(words[words.count - 1].prefix(Int.random(in: 1...3, using: &rng))) }
            query.words = words
        }
        if chance(3) { query.types = [pick(types), pick(types)] }
        if chance(3) { query.tags = [pick(tags)] }
        if chance(3) { query.categories = [pick(categories)] }
        if chance(3) { query.options.append(("Color", [pick(colors), pick(colors)])) }
        if chance(4) { query.options.append(("Size", [pick(sizes)])) }
        query.currency = pick(["EUR", "USD"])
        if chance(3) {
            query.priceGTE = Int64.random(in: 0...10_000, using: &rng)
            query.priceLTE = query.priceGTE! + Int64.random(in: 0...10_000, using: &rng)
        }
        if chance(4) { query.active = true }
        if chance(5) { query.createdGTE = 1_700_000_000_000 + Int64.random(in: 0..<1_000_000_000, using: &rng) }
        if chance(3) { query.locale = "fr" }
        query.facets = [.type, .tag, .category, .option("Color"), .option("Size"), .price]
        query.sort = query.words.isEmpty ? pick(SearchQuery.Sort.allCases.filter { $0 != .relevance }) : pick(SearchQuery.Sort.allCases)
        query.limit = pick([7, 50, 100])
        return query
    }

    /// What the search must answer, computed the slow way from the products themselves.
    struct Expected: Equatable, CustomStringConvertible {
        var ids: [String]
        var facets: [String: [String: Int]]
        var price: [Int64]?
        var description: String { "\(ids.count) results \(ids.prefix(5)), facets \(facets), price \(price ?? [])" }
    }

    /// A product with what the brute force reads of it worked out once.
    struct Model {
        let product: Product
        let own: Set<String>
        let name: Set<String>
        /// Its French translation's words.
        let french: Set<String>

        init(_ product: Product) {
            self.product = product
            name = Set(SearchText.words(in: product.name))
            var own = name
            for text in [product.description ?? ""] + product.tags + product.variants.compactMap(\.sku) + product.options.flatMap(\.values) {
                own.formUnion(SearchText.words(in: text))
            }
            self.own = own
            var french = Set<String>()
            if let translation = product.translations["fr"] {
                for text in [translation.name ?? "", translation.description ?? ""] + translation.options.values.flatMap({ $0.values.values }) {
                    french.formUnion(SearchText.words(in: text))
                }
            }
            self.french = french
        }
    }

    static func bruteForce(_ models: [Model], _ query: SearchQuery) -> Expected {
        var scores: [String: Int64?] = [:]
        for model in models {
            var score: Int64? = 0
            for (index, word) in query.words.enumerated() {
                let matches = { (set: Set<String>) in index == query.words.count - 1 ? set.contains { $0.hasPrefix(word) } : set.contains(word) }
                if matches(model.name) { score! += 2 } else if matches(model.own) || (query.locale == "fr" && matches(model.french)) { score! += 1 } else {
                    score = nil
                    break
                }
            }
            scores[model.product.id] = score
        }
        func score(_ product: Product) -> Int64? { scores[product.id]! }
        let products = models.map(\.product)
        func amounts(_ product: Product) -> [Int64] {
            product.variants.flatMap { $0.prices.filter { $0.currency == query.currency }.map(\.amount) }
        }
        /// Whether the product passes every filter, but the one named `except`.
        /// The filters the product fails, by facet name ("" for those no facet leaves out: active, created, words).
        func failures(_ product: Product) -> Set<String> {
            var failed = Set<String>()
            if let active = query.active, product.active != active { failed.insert("") }
            let created = Timestamp.epochMilliseconds(product.createdAt)!
            if let bound = query.createdGTE, created < bound { failed.insert("") }
            if score(product) == nil { failed.insert("") }
            if let types = query.types, !types.contains(product.type) { failed.insert("type") }
            if let tags = query.tags, !product.tags.contains(where: tags.contains) { failed.insert("tag") }
            if let categories = query.categories, !product.categoryIDs.contains(where: categories.contains) { failed.insert("category") }
            if query.priceGTE != nil || query.priceLTE != nil,
               !amounts(product).contains(where: { $0 >= (query.priceGTE ?? 0) && $0 <= (query.priceLTE ?? .max) })
            {
                failed.insert("price")
            }
            for (name, values) in query.options where !product.variants.contains(where: { $0.options[name].map(values.contains) == true }) {
                failed.insert("option.\(name)")
            }
            return failed
        }
        let failed = Dictionary(uniqueKeysWithValues: products.map { ($0.id, failures($0)) })
        /// Whether the product passes every filter, but the one named `except`.
        func passes(_ product: Product, except: String?) -> Bool {
            let failed = failed[product.id]!
            return failed.isEmpty || (failed.count == 1 && failed.first == except)
        }
        let matched = products.filter { passes($0, except: nil) }
        func key(_ product: Product) -> SearchQuery.SortKey {
            switch query.sort {
            case .relevance: .number(score(product)!)
            case .price, .priceDescending: amounts(product).min().map { .number($0) } ?? .missing
            case .created, .createdDescending: .number(Timestamp.epochMilliseconds(product.createdAt)!)
            case .name, .nameDescending: .text(ProductQuery.fold(product.name))
            }
        }
        let ordered = matched.map { (key: key($0), id: $0.id) }.sorted { BestResults.precedes($0, $1, descending: query.sort.descending) }
        var facets: [String: [String: Int]] = [:]
        var price: [Int64]?
        for facet in query.facets {
            let counted = products.filter { passes($0, except: facet.name) }
            var counts: [String: Int] = [:]
            for product in counted {
                let values: Set<String> = switch facet {
                case .type: [product.type]
                case .tag: Set(product.tags)
                case .category: Set(product.categoryIDs)
                case .option(let name): Set(product.variants.compactMap { $0.options[name] })
                case .price: []
                }
                for value in values { counts[value, default: 0] += 1 }
            }
            if facet == .price {
                let all = counted.flatMap(amounts)
                if let low = all.min(), let high = all.max() { price = [low, high] }
            } else {
                facets[facet.name] = counts
            }
        }
        return Expected(ids: ordered.map(\.id), facets: facets, price: price)
    }

    /// The first `pages` pages of the search (each a scan of the shop), through its page tokens, with the first
    /// page's facets and total.
    static func search(_ cache: CatalogCache, _ query: SearchQuery, pages: Int) async throws -> (Expected, total: Int) {
        var query = query
        var ids: [String] = []
        var first: SearchOutcome?
        for _ in 0..<pages {
            let (outcome, products) = try await cache.searches.search(tenant: "t", query: query, categories: query.categories)
            #expect(products.map(\.id) == outcome.ids, "the page's products are the index's results")
            if first == nil { first = outcome }
            #expect(outcome.total == first!.total, "the total does not change from page to page")
            ids += outcome.ids
            guard let token = outcome.nextPageToken else { break }
            #expect(outcome.ids.count == query.limit)
            query.pageToken = token
        }
        let facets = Dictionary(uniqueKeysWithValues: first!.valueFacets.map { facet in
            (facet.name, Dictionary(uniqueKeysWithValues: facet.counts.map { ($0.value, $0.count) }))
        })
        return (Expected(ids: ids, facets: facets, price: first!.priceRange.map { [$0.min, $0.max] }), first!.total)
    }

    @Test("5,000 random products, 60 random searches (3 pages each), then 1,500 random writes and deletes: the same answers as brute force")
    func bruteForceAgreement() async throws {
        var rng = SeededGenerator(seed: 27)
        // Searches wait for the index however long a starved debug run takes to build it (once over the default 30 s).
        let cache = CatalogCache(searchIndexWait: .seconds(600))
        var products: [String: Product] = [:]
        // Every id's last version, deletes included: a write after a delete must be newer to bring the product back.
        var versions: [String: Int64] = [:]
        for index in 0..<5_000 {
            let product = Self.randomProduct(String(format: "prod_%05d", index), version: 1, &rng)
            products[product.id] = product
            cache.replay(.upsert(tenant: "t", product: product))
            if index % 500 == 0 { await Task.yield() }
        }
        for round in 0..<2 {
            let models = products.values.map(Model.init)
            for _ in 0..<30 {
                let query = Self.randomQuery(&rng)
                let expected = Self.bruteForce(models, query)
                var (found, total) = try await Self.search(cache, query, pages: 3)
                #expect(total == expected.ids.count, "round \(round): \(query.fingerprint)")
                #expect(found.ids.count == min(total, 3 * query.limit))
                found.ids += expected.ids.dropFirst(found.ids.count)
                #expect(found == expected, "round \(round), sort \(query.sort), words \(query.words)")
                // Seconds of work in a debug build: let the suite's other tasks and processes have the cores too.
                await Task.yield()
            }
            // Updates (prices, options, names) and deletes, as writes and the feed bring them.
            for step in 0..<1_500 {
                let id = String(format: "prod_%05d", Int.random(in: 0..<5_500, using: &rng))
                let version = (versions[id] ?? 1) + 1
                versions[id] = version
                if Int.random(in: 0..<4, using: &rng) == 0, let old = products.removeValue(forKey: id) {
                    cache.applyFeed(.delete(tenant: "t", id: id, version: version, deletedAt: old.createdAt))
                } else {
                    let product = Self.randomProduct(id, version: version, &rng)
                    products[id] = product
                    cache.applyFeed(.upsert(tenant: "t", product: product))
                }
                if step % 500 == 0 { await Task.yield() }
            }
        }
    }

    @Test("an unknown option name is a 400 naming it; a value no product has matches nothing and still counts the rest")
    func unknownNames() async throws {
        var rng = SeededGenerator(seed: 1)
        // Searches wait for the index however long a starved debug run takes to build it (once over the default 30 s).
        let cache = CatalogCache(searchIndexWait: .seconds(600))
        for index in 0..<100 { cache.replay(.upsert(tenant: "t", product: Self.randomProduct("prod_\(index)", version: 1, &rng))) }
        var query = SearchQuery()
        query.options = [("Material", ["Oak"])]
        await #expect(throws: APIError.self) { try await cache.searches.search(tenant: "t", query: query, categories: nil) }
        query.options = [("Color", ["Purple"])]
        query.facets = [.option("Color")]
        let (outcome, _) = try await cache.searches.search(tenant: "t", query: query, categories: nil)
        #expect(outcome.total == 0 && outcome.valueFacets[0].counts.map(\.count).reduce(0, +) >= 100)
    }
}

/// SplitMix64: the same random catalog for the same seed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
