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
}

