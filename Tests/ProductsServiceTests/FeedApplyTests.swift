import Foundation
import NIOCore
import Testing

@testable import ProductsService
import Shared
import TestSupport

@Suite("Applying the change feed")
struct FeedApplyTests {
    static func product(_ id: String, version: Int64, name: String = "Feed") -> Product {
        TestSupport.product(id, version: version, name: name, type: "t")
    }

    /// A change as the feed sends it: the product left as bytes.
    static func encoded(_ product: Product) throws -> Change {
        var change = Change(.upsert(tenant: defaultTenant, product: product))
        change.encodedProduct = ByteBuffer(data: try JSONCoding.encoder.encode(product))
        change.product = nil
        return change
    }

    @Test("products the cache already holds at that version with the same bytes, or newer, are not decoded; others are, and a bad one fails the page")
    func decodesOnlyWhatIsNew() async throws {
        let fixture = try ReplicaFixture()
        defer { fixture.close(); fixture.remove() }
        let own = Self.product("prod_a", version: 3)
        fixture.cache.replay(.upsert(tenant: defaultTenant, product: own))

        var held = Change(.upsert(tenant: defaultTenant, product: own))
        held.product = nil
        held.encodedProduct = own.json
        #expect(try await fixture.replica.replication.apply([held], deletesOnly: false) == 0, "its own write back, the same bytes: skipped")
        var older = held
        older.version = 2
        older.encodedProduct = ByteBuffer(string: "not JSON at all")
        #expect(try await fixture.replica.replication.apply([older], deletesOnly: false) == 0, "an older version: skipped undecoded")

        // The same version with other bytes is what the Database Service stored instead (a settled clash): read.
        var broken = held
        broken.encodedProduct = ByteBuffer(string: "not JSON at all")
        await #expect(throws: JSONSyntaxError.self) { try await fixture.replica.replication.apply([broken], deletesOnly: false) }
        broken.version = 4
        await #expect(throws: JSONSyntaxError.self) { try await fixture.replica.replication.apply([broken], deletesOnly: false) }
        #expect(fixture.cache.get(tenant: defaultTenant, id: "prod_a")?.product.version == 3, "nothing of the failed page applied")

        let newer = try Self.encoded(Self.product("prod_a", version: 4, name: "Renamed"))
        let other = try Self.encoded(Self.product("prod_b", version: 1))
        #expect(try await fixture.replica.replication.apply([newer, other], deletesOnly: false) == 2)
        #expect(fixture.cache.get(tenant: defaultTenant, id: "prod_a")?.product.name == "Renamed")
        #expect(fixture.cache.get(tenant: defaultTenant, id: "prod_b")?.product.version == 1)
    }
}
