import Shared

/// Storefront searches over a shop's `SearchIndex`: planned under the shop's lock, run outside it on the scan
/// threads, and the page's products read under the lock again.
struct CacheSearch {
    let cache: CatalogCache

    /// Products the index's build adds per lock hold.
    static let buildChunk = 256

    /// The search's answer and its page's products; `categories` are the ids `query.categories` name and their
    /// descendants'. The shop's first search starts building its index, and searches wait for the build.
    func search(tenant: String, query: SearchQuery, categories: [String]?) async throws(APIError) -> (SearchOutcome, [CachedProduct]) {
        let deadline = ContinuousClock.now + cache.searchIndexWait
        var plan: SearchIndex.Plan?
        while plan == nil {
            enum Step { case plan(Result<SearchIndex.Plan, APIError>), build, wait }
            let step = cache.withExistingShop(tenant) { shop -> Step in
                switch shop.search.coverage {
                case .none:
                    shop.search.beginBuild()
                    return .build
                case .through: return .wait
                case .all: return .plan(Result { () throws(APIError) in try shop.search.plan(query, categories: categories) })
                }
            } ?? .plan(Result { () throws(APIError) in try SearchIndex().plan(query, categories: categories) })
            switch step {
            case .plan(let result): plan = try result.get()
            case .build: Task.detached { await self.build(tenant: tenant) }
            case .wait:
                guard ContinuousClock.now < deadline, (try? await Task.sleep(for: .milliseconds(5))) != nil else {
                    throw APIError.serviceUnavailable("search_index_building", "This shop's search index is still being built; retry shortly")
                }
            }
        }
        guard let plan, let outcome = await ScanPool.run({ plan.run(query) }) else {
            throw APIError.serviceUnavailable("shutting_down", "The service is shutting down")
        }
        let products = cache.withExistingShop(tenant) { shop in outcome.ids.compactMap { shop.products[$0] } } ?? []
        return (outcome, products)
    }

    /// Builds the shop's search index, begun by `search`: `buildChunk` products per lock hold, in id order.
    func build(tenant: String) async {
        while cache.withExistingShop(tenant, { shop in
            shop.search.beginBuild()
            return shop.indexNextSearch(limit: Self.buildChunk)
        }) ?? false {
            await Task.yield()
        }
    }
}

extension CatalogCache {
    var searches: CacheSearch { CacheSearch(cache: self) }
}
