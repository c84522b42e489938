import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

@testable import ProductsService
import Shared
import TestSupport

@Suite("Cache budget")
struct CacheBudgetTests {
    let logger = Logger(label: "test")

    func input(_ name: String, type: String = "physical") throws -> ProductInput {
        try ProductInput(json: .object(["name": .string(name), "type": .string(type)]))
    }

    /// Products `prefix`-0 … in the fake Database Service, ids in creation order.
    func seed(_ database: FakeDatabaseService, tenant: String, count: Int, prefix: String) -> [Product] {
        (0..<count).map { index in
            let id = String(format: "prod_00%@%05d", prefix, index)  // before every id made now
            let product = Product(
                id: id, name: "\(prefix) item \(index)", type: index % 3 == 0 ? "digital" : "physical", metadata: ["n": "\(index)"],
                createdAt: Timestamp.format(epochMilliseconds: 1_700_000_000_000 + Int64(index) * 1000),
                updatedAt: Timestamp.format(epochMilliseconds: 1_700_000_000_000 + Int64(index) * 1000), version: 1)
            database.seed(product, tenant: tenant)
            return product
        }
    }

    @Test("shops that do not fit are evicted at load and read through; an evicted shop keeps its unconfirmed writes; recency brings one back")
    func evictionAndReadmission() async throws {
        let database = FakeDatabaseService()
        let shopA = seed(database, tenant: "a", count: 20, prefix: "a")
        let shopB = seed(database, tenant: "b", count: 20, prefix: "b")
        let oneShop = CatalogCache.approximateBytes(of: shopA)
        let fixture = try ReplicaFixture(database: database, cacheBudget: oneShop + oneShop / 4)
        defer { fixture.close(); fixture.remove() }
        let replica = fixture.replica
        try await replica.replication.load(logger: logger)

        // Loaded in name order while they fit: "a" is resident, "b" is not, and "default" (empty) fit after it.
        #expect(replica.isAuthoritative(tenant: "a"))
        #expect(!replica.isAuthoritative(tenant: "b"))
        #expect(replica.isAuthoritative(tenant: defaultTenant))
        #expect(fixture.cache.statistics(tenant: "b").totalProducts == 0)
        #expect(replica.totals.approximateBytes <= replica.replication.cacheBudget!)

        // Reads of the evicted shop come from the Database Service, complete and in order.
        #expect(try await replica.product(tenant: "b", id: shopB[3].id).product == shopB[3])
        await #expect { try await replica.product(tenant: "b", id: "prod_missing") } throws: { ($0 as? APIError)?.status == .notFound }
        var query = ProductQuery(limit: 7)
        query.type = "digital"
        #expect(try await replica.list(tenant: "b", query: query).products.map(\.product) == shopB.filter { $0.type == "digital" }.prefix(7).map { $0 })

        // A write to it stays in the cache until the Database Service confirms it, and shows in its listings.
        let created = try await replica.create(tenant: "b", try input("b new", type: "digital")).written.product
        replica.replication.enforceBudget(logger: logger)
        #expect(fixture.cache.get(tenant: "b", id: created.id)?.product == created, "kept: the Database Service does not have it yet")
        let listed = try await replica.list(tenant: "b", query: ProductQuery(limit: 100)).products.map(\.product)
        #expect(listed == shopB + [created])
        try await replica.delete(tenant: "b", id: shopB[0].id)
        #expect(try await replica.list(tenant: "b", query: ProductQuery(limit: 100)).products.map(\.product) == Array(shopB.dropFirst()) + [created])
        await #expect { try await replica.product(tenant: "b", id: shopB[0].id) } throws: { ($0 as? APIError)?.status == .notFound }

        // The feed keeps what an evicted shop holds current and does not fill it with the rest.
        var renamed = shopB[5]
        renamed.name = "renamed elsewhere"
        renamed.version = 2
        #expect(!fixture.cache.applyFeed(.upsert(tenant: "b", product: renamed)), "not held: left to the Database Service")
        #expect(fixture.cache.get(tenant: "b", id: shopB[5].id) == nil)

        // "b" was used since its eviction, more recently than "a": it comes back and "a" makes room.
        #expect(try await replica.replication.readmitRecentlyUsed(logger: logger) == "b")
        #expect(replica.isAuthoritative(tenant: "b"))
        #expect(!replica.isAuthoritative(tenant: "a"))
        #expect(try await replica.list(tenant: "b", query: ProductQuery(limit: 100)).products.map(\.product) == Array(shopB.dropFirst()) + [created])
        #expect(try await replica.list(tenant: "a", query: ProductQuery(limit: 100)).products.map(\.product) == shopA)
        #expect(replica.totals.approximateBytes <= replica.replication.cacheBudget!)
    }

    @Test("eviction keeps exactly the products with unconfirmed writes, including those only on disk")
    func evictionKeepsUnconfirmed() async throws {
        let database = FakeDatabaseService()
        let shop = seed(database, tenant: defaultTenant, count: 30, prefix: "d")
        // Two of these writes fit, not three.
        let each = try JournalEntry.costOfCreate(named: "pending 0")
        let fixture = try ReplicaFixture(database: database, journalMemoryLimit: 2 * each + each / 2, cacheBudget: 1)
        defer { fixture.close(); fixture.remove() }
        let replica = fixture.replica
        database.isDown = true
        var written: [Product] = []
        for index in 0..<5 {
            written.append(try await replica.create(tenant: defaultTenant, try input("pending \(index)")).written.product)
        }
        #expect(fixture.journal.backlog.inMemory == 2, "three of them are only on disk")
        database.isDown = false
        try await replica.replication.load(logger: logger)
        #expect(!replica.isAuthoritative(tenant: defaultTenant))
        let held = Set(written.map(\.id))
        for product in written { #expect(fixture.cache.get(tenant: defaultTenant, id: product.id)?.product == product) }
        #expect(fixture.cache.statistics(tenant: defaultTenant).totalProducts == held.count)
        let listed = try await replica.list(tenant: defaultTenant, query: ProductQuery(limit: 100)).products.map(\.product)
        #expect(listed == shop + written)
    }

    /// Runs a test against the app with `budget` and the given Database Service double.
    func withApp(
        database: FakeDatabaseService, budget: Int, _ test: @escaping @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var settings = ProductsServiceSettings(dataDirectory: directory)
        settings.persistence.retryBaseDelay = .milliseconds(10)
        settings.persistence.retryMaxDelay = .milliseconds(50)
        settings.cacheBudget = budget
        settings.cacheBudgetInterval = .milliseconds(20)
        let app = try buildApplication(settings: settings, database: database)
        try await app.test(.router, test)
    }

    @Test("under a budget too small for any shop, every route answers as without one")
    func tinyBudgetRoutes() async throws {
        let database = FakeDatabaseService()
        let shop = seed(database, tenant: defaultTenant, count: 30, prefix: "r")
        try await withApp(database: database, budget: 1) { client in
            try await eventually("loaded") {
                String(buffer: try await client.execute(uri: "/health", method: .get).body).contains(#""cache_ready":true"#)
            }
            func list(_ uri: String) async throws -> [Product] {
                let response = try await client.execute(uri: uri, method: .get)
                #expect(response.status == .ok, "\(uri): \(String(buffer: response.body))")
                return try JSONDecoder().decode([Product].self, from: response.body)
            }
            func all() async throws -> [Product] {
                var products: [Product] = []
                var uri = "/products?limit=7"
                while true {
                    let page = try await list(uri)
                    products += page
                    guard page.count == 7, let last = page.last else { return products }
                    uri = "/products?limit=7&starting_after=\(last.id)"
                }
            }
            #expect(try await all() == shop, "paged forwards")
            #expect(try await list("/products?limit=5&ending_before=\(shop[12].id)") == Array(shop[7..<12]), "paged backwards")
            #expect(try await list("/products?type=digital&limit=100") == shop.filter { $0.type == "digital" })
            #expect(try await list("/products?q=ITEM%2017&limit=100") == [shop[17]])
            #expect(try await list("/products?created%5Bgte%5D=1700000025&limit=100") == Array(shop[25...]))
            let fetched = try await client.execute(uri: "/products/\(shop[4].id)", method: .get)
            #expect(try JSONDecoder().decode(Product.self, from: fetched.body) == shop[4])
            #expect(try await client.execute(uri: "/products/prod_missing", method: .get).status == .notFound)

            let created = try await client.execute(
                uri: "/products", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: #"{"name":"Fresh","type":"digital"}"#))
            #expect(created.status == .created)
            let fresh = try JSONDecoder().decode(Product.self, from: created.body)
            let patched = try await client.execute(
                uri: "/products/\(shop[2].id)", method: .patch, headers: [.contentType: "application/json"], body: ByteBuffer(string: #"{"name":"Patched"}"#))
            #expect(patched.status == .ok)
            let renamed = try JSONDecoder().decode(Product.self, from: patched.body)
            #expect(try await client.execute(uri: "/products/\(shop[3].id)", method: .delete).status == .ok)
            var expected = shop
            expected[2] = renamed
            expected.remove(at: 3)
            expected.append(fresh)
            func differences(_ listed: [Product]) -> String {
                "listed \(listed.map { "\($0.id.suffix(6)):\($0.name):\($0.version)" }), expected \(expected.map { "\($0.id.suffix(6)):\($0.name):\($0.version)" })"
            }
            let afterWrites = try await all()
            #expect(afterWrites == expected, "right after the writes: \(differences(afterWrites))")
            try await eventually("persisted") { database.live(fresh.id) == fresh && database.live(shop[3].id) == nil }
            let afterPersisting = try await all()
            #expect(afterPersisting == expected, "once persisted: \(differences(afterPersisting))")
            #expect(try await client.execute(uri: "/products/\(shop[3].id)", method: .get).status == .notFound)
            try await eventually("the reads shed again") {
                let stats = try JSONSerialization.jsonObject(with: Data(buffer: try await client.execute(uri: "/cache/stats", method: .get).body)) as! [String: Any]
                return stats["total_products"] as? Int == 0
            }
        }
    }
}
