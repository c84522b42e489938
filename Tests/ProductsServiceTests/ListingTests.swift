import Foundation
import Logging
import Testing

@testable import ProductsService
import Shared
import TestSupport

@Suite("Listing: filters and cursors over the cache and the Database Service")
struct ListingTests {
    static func product(_ index: Int, type: String? = nil, name: String? = nil, version: Int64 = 1) -> Product {
        TestSupport.product(
            String(format: "prod_%05d", index), version: version, name: name ?? "Item \(index)",
            type: type ?? (index % 3 == 0 ? "digital" : "physical"),
            createdAt: Timestamp.format(epochMilliseconds: 1_700_000_000_000 + Int64(index) * 1000))
    }

    /// Every page of a listing, following the cursor the way a client follows `Link`, forwards or backwards.
    static func walk(
        _ query: ProductQuery, backwards: Bool = false, page: (ProductQuery) async throws -> (products: [CachedProduct], hasMore: Bool)
    ) async throws -> [String] {
        var query = query
        var pages: [[String]] = []
        while true {
            let result = try await page(query)
            let ids = result.products.map(\.product.id)
            pages.append(ids)
            guard result.hasMore, let first = ids.first, let last = ids.last else { break }
            query.cursor = backwards ? .endingBefore(first) : .startingAfter(last)
            if pages.count > 10_000 { Issue.record("paging does not end"); break }
        }
        return backwards ? pages.reversed().flatMap { $0 } : pages.flatMap { $0 }
    }

    @Test("the cache pages forwards and backwards with every filter, visiting each match once")
    func cachePaging() async throws {
        let cache = CatalogCache()
        // Several times the chunk a listing copies out of the lock at once, so pages cross chunk boundaries.
        let products = (0..<(CatalogCache.listChunk * 4 + 17)).map { Self.product($0, name: $0 % 5 == 0 ? "Red SHIRT \($0)" : nil) }
        for product in products.shuffled() { cache.replay(.upsert(tenant: "t", product: product)) }
        var queries: [ProductQuery] = []
        for limit in [1, 7, 100, 1000] {
            var query = ProductQuery(limit: limit)
            queries.append(query)
            query.type = "digital"
            queries.append(query)
            query.search = "red shirt"
            query.createdGTE = 1_700_000_010_000
            query.createdLT = 1_700_000_200_000
            queries.append(query)
            var byIDs = ProductQuery(limit: limit)
            byIDs.ids = ["prod_00003", "prod_00010", "prod_00200", "prod_99999"]
            byIDs.createdGT = 1_700_000_003_000
            queries.append(byIDs)
        }
        for query in queries {
            let expected = products.filter { query.matches($0, createdAt: Timestamp.epochMilliseconds($0.createdAt)) }.map(\.id)
            let forwards = try await Self.walk(query) { await cache.listing.list(tenant: "t", query: $0) }
            #expect(forwards == expected, "forwards, limit \(query.limit)")
            var fromEnd = query
            fromEnd.cursor = .endingBefore("prod_99999")
            let backwards = try await Self.walk(fromEnd, backwards: true) { await cache.listing.list(tenant: "t", query: $0) }
            #expect(backwards == expected, "backwards, limit \(query.limit)")
        }
    }

    @Test("before the catalog is loaded, pages merge the Database Service with the cache's pending writes and deletes")
    func mergedPaging() async throws {
        let database = FakeDatabaseService()
        let fixture = try ReplicaFixture(database: database)
        defer { fixture.close(); fixture.remove() }
        var expected: [String: Product] = [:]
        for index in 0..<300 {
            let product = Self.product(index)
            database.seed(product)
            expected[product.id] = product
        }
        // Changes the Database Service has not seen yet, as replayed from the journal at start.
        for index in stride(from: 0, to: 300, by: 7) {
            fixture.cache.replay(.delete(tenant: defaultTenant, id: Self.product(index).id, version: 2, deletedAt: Timestamp.now()))
            expected[Self.product(index).id] = nil
        }
        for index in stride(from: 1, to: 300, by: 11) where index % 7 != 0 {
            let changed = Self.product(index, type: "digital", name: "Changed \(index)", version: 2)
            fixture.cache.replay(.upsert(tenant: defaultTenant, product: changed))
            expected[changed.id] = changed
        }
        for index in 300..<320 {
            let created = Self.product(index)
            fixture.cache.replay(.upsert(tenant: defaultTenant, product: created))
            expected[created.id] = created
        }
        #expect(!fixture.replica.isLoaded)
        let all = expected.values.sorted { $0.id < $1.id }
        for limit in [1, 9, 100] {
            var queries = [ProductQuery(limit: limit)]
            var digital = ProductQuery(limit: limit)
            digital.type = "digital"
            queries.append(digital)
            var search = ProductQuery(limit: limit)
            search.search = "CHANGED"
            queries.append(search)
            for query in queries {
                let matching = all.filter { query.matches($0, createdAt: Timestamp.epochMilliseconds($0.createdAt)) }.map(\.id)
                let forwards = try await Self.walk(query) { try await fixture.replica.list(tenant: defaultTenant, query: $0) }
                #expect(forwards == matching, "forwards, limit \(limit)")
                var fromEnd = query
                fromEnd.cursor = .endingBefore("prod_99999")
                let backwards = try await Self.walk(fromEnd, backwards: true) {
                    try await fixture.replica.list(tenant: defaultTenant, query: $0)
                }
                #expect(backwards == matching, "backwards, limit \(limit)")
            }
        }
        #expect(database.listCount > 0, "the Database Service was asked")
        let page = try await fixture.replica.list(tenant: defaultTenant, query: ProductQuery(limit: 1000))
        #expect(page.products.first { $0.product.id == Self.product(1).id }?.product.name == "Changed 1", "the cache's newer version wins")
    }

    @Test("before the catalog is loaded and with the Database Service down, a listing is a 503")
    func unavailable() async throws {
        let database = FakeDatabaseService()
        database.isDown = true
        let fixture = try ReplicaFixture(database: database)
        defer { fixture.close(); fixture.remove() }
        await #expect { try await fixture.replica.list(tenant: defaultTenant, query: ProductQuery()) } throws: { error in
            (error as? APIError)?.code == "database_unavailable" && (error as? APIError)?.status == .serviceUnavailable
        }
    }
}
