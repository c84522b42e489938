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

    @Test("products the cache already holds at that version are not decoded; newer ones are, and a bad one fails the page")
    func decodesOnlyWhatIsNew() async throws {
        let fixture = try ReplicaFixture()
        defer { fixture.close(); fixture.remove() }
        fixture.cache.replay(.upsert(tenant: defaultTenant, product: Self.product("prod_a", version: 3)))

        var held = Change(.upsert(tenant: defaultTenant, product: Self.product("prod_a", version: 3)))
        held.product = nil
        held.encodedProduct = ByteBuffer(string: "not JSON at all")
        #expect(try await fixture.replica.replication.apply([held], deletesOnly: false) == 0, "its own write back: skipped undecoded")

        var broken = held
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
