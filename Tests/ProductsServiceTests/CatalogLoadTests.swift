import Logging
import Testing

@testable import ProductsService
import Shared
import TestSupport

@Suite("Catalog load")
struct CatalogLoadTests {
    let logger = Logger(label: "test")

    func product(_ index: Int, version: Int64 = 1) -> Product {
        TestSupport.product(
            String(format: "prod_%05d", index), version: version, name: "Product \(index)", type: index % 2 == 0 ? "even" : "odd",
            metadata: index % 3 == 0 ? ["id": "meta \(index)"] : [:], createdAt: "2026-01-01T00:00:00Z")
    }

    @Test("a load across pages (each fetched while the last is parsed) caches every product as stored, drops what is gone, keeps what is pending")
    func pagedLoad() async throws {
        let database = FakeDatabaseService()
        let count = Replication.pageSize * 3 + 417
        for index in 0..<count { database.seed(product(index, version: 2)) }
        let fixture = try ReplicaFixture(database: database)
        defer {
            fixture.close()
            fixture.remove()
        }
        // Cached before the load: an older version of a stored product, and some the Database Service no longer
        // has, before the first page, on page boundaries, inside a page and after the last one.
        fixture.cache.replay(.upsert(tenant: defaultTenant, product: product(5, version: 1)))
        var gone = [product(count + 50)]
        for id in ["prod_0", "prod_00999a", "prod_01999a", "prod_02500a", "prod_03416a"] {
            var stale = product(0)
            stale.id = id
            gone.append(stale)
        }
        for stale in gone { fixture.cache.replay(.upsert(tenant: defaultTenant, product: stale)) }
        // A write this replica has not sent yet, whose id sorts after every stored one: it stays.
        database.isDown = true
        let pending = try await fixture.replica.create(tenant: defaultTenant, try ProductInput(json: .object(["name": .string("New")])))
        database.isDown = false
        try await fixture.replica.replication.load(logger: logger)
        #expect(database.listCount == 4, "four pages")
        #expect(fixture.cache.totals.products == count + 1)
        for index in [0, 5, 999, 1000, 1001, 2999, count - 1] {
            #expect(fixture.cache.get(tenant: defaultTenant, id: product(index).id)?.product == product(index, version: 2))
        }
        for stale in gone { #expect(fixture.cache.get(tenant: defaultTenant, id: stale.id) == nil, "\(stale.id) is gone from the Database Service") }
        #expect(fixture.cache.get(tenant: defaultTenant, id: try pending.written.id) != nil, "pending")
        let listed = await fixture.cache.listing.list(tenant: defaultTenant, query: ProductQuery(limit: 100, cursor: .startingAfter(product(995).id)))
        #expect(listed.products.map(\.id) == (996..<1096).map { product($0).id })
    }
}
