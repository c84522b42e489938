import Foundation
import Testing

@testable import ProductsService
import Shared

@Suite("Product ids")
struct ProductIDTests {
    @Test("prod_ + 26 Crockford base32 characters, strictly increasing within a process")
    func format() {
        let generator = ProductIDGenerator()
        let now = Date()
        let ids = (0..<1000).map { _ in generator.next(now: now) }
        for id in ids { #expect(id.wholeMatch(of: /prod_[0-9A-HJKMNP-TV-Z]{26}/) != nil) }
        #expect(ids == ids.sorted())
        #expect(Set(ids).count == ids.count)
        let later = generator.next(now: now.addingTimeInterval(1))
        #expect(later > ids.last!)
        let earlierClock = generator.next(now: now.addingTimeInterval(-60))
        #expect(earlierClock > later, "a clock stepping back does not break the order")
    }

    @Test("an id tells when it was minted; only a product id minted within 5 s of now is recent")
    func mintTime() throws {
        let now = Date(timeIntervalSince1970: 1_780_000_000.123)
        let id = ProductIDGenerator().next(now: now)
        #expect(try #require(ProductIDGenerator.mintTime(of: id)).timeIntervalSince1970 == 1_780_000_000.123)
        #expect(Replica.isRecent(id, now: now.addingTimeInterval(4.9)) && Replica.isRecent(id, now: now.addingTimeInterval(-4.9)))
        #expect(!Replica.isRecent(id, now: now.addingTimeInterval(5.1)))
        for other in ["imp_" + id.dropFirst(5), "prod_x", "prod_" + String(repeating: "U", count: 26), "prod_01ARZ3NDEKTSV4RRFFQ69G5FA"] {
            #expect(ProductIDGenerator.mintTime(of: other) == nil, "\(other)")
        }
    }
}
