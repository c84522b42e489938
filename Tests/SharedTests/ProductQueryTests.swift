import Foundation
import HTTPTypes
import Testing
import Logging
import Shared

@Suite("Listing query strings")
struct ProductQueryTests {
    @Test("every parameter parses, percent-encoded names included, and round-trips through queryString")
    func parses() throws {
        let query = try ProductQuery.parse(
            query: "limit=5&type=digital&ids=b,a,b&created%5Bgte%5D=2026-01-01T00:00:00Z&created[lt]=1767225600&q=Red+Shirt&starting_after=prod_x&tag=sale,%20summer%20,sale")
        #expect(query.limit == 5)
        #expect(query.type == "digital")
        #expect(query.ids == ["a", "b"])
        #expect(query.createdGTE == 1_767_225_600_000)
        #expect(query.createdLT == 1_767_225_600_000)
        #expect(query.search == "Red Shirt")
        #expect(query.foldedSearch == "red shirt")
        #expect(query.cursor == .startingAfter("prod_x"))
        #expect(query.anyOf.map(\.values) == [["sale", "summer"]] && query.anyOf.map(\.parameter) == ["tag"])
        let again = try ProductQuery.parse(query: query.queryString(cursor: query.cursor))
        #expect(again == query)
        #expect(try ProductQuery.parse(query: nil) == ProductQuery())
    }

    @Test("bad parameters are 400s naming the parameter", arguments: [
        ("bogus=1", "parameter_unknown", "bogus"),
        ("limit=1&limit=2", "parameter_invalid", "limit"),
        ("limit=0", "parameter_invalid", "limit"),
        ("starting_after=a&ending_before=b", "parameter_invalid", "ending_before"),
        ("starting_after=", "parameter_invalid", "starting_after"),
        ("ids=" + (0...100).map { "p\($0)" }.joined(separator: ","), "parameter_invalid", "ids"),
        ("ids=a,,b", "parameter_invalid", "ids"),
        ("created[gte]=yesterday", "parameter_invalid", "created[gte]"),
        ("created[gt]=2026-13-01T00:00:00Z", "parameter_invalid", "created[gt]"),
        ("q=", "parameter_invalid", "q"),
        ("type=", "parameter_invalid", "type"),
        ("q=%ZZ", "parameter_invalid", "q"),
        ("type=a%00b", "parameter_invalid", "type"),
        ("q=%00", "parameter_invalid", "q"),
        ("starting_after=p%00", "parameter_invalid", "starting_after"),
        ("ids=a,b%00", "parameter_invalid", "ids"),
    ])
    func rejects(query: String, code: String, param: String) {
        #expect {
            try ProductQuery.parse(query: query)
        } throws: { error in
            let error = error as? APIError
            return error?.code == code && error?.param == param && error?.status == .badRequest
        }
    }

    @Test("created bounds and q filter as documented")
    func matches() throws {
        let product = Product(
            id: "p", name: "Grüne JACKE", type: "physical", metadata: [:], createdAt: "2026-01-01T12:00:00.000Z",
            updatedAt: "2026-01-01T12:00:00.000Z", version: 1)
        let created = Timestamp.epochMilliseconds(product.createdAt)
        func check(_ raw: String) throws -> Bool { try ProductQuery.parse(query: raw).matches(product, createdAt: created) }
        #expect(try check("q=grüne%20jacke"))
        #expect(try check("q=JACK"))
        #expect(try check("q=GRUNE"), "accents are folded away")
        #expect(try !check("q=mantel"))
        #expect(try check("created[gte]=2026-01-01T12:00:00Z"))
        #expect(try !check("created[gt]=2026-01-01T12:00:00Z"))
        #expect(try check("created[lte]=2026-01-01T13:00:00%2B01:00"), "offsets apply: 13:00+01:00 is 12:00Z")
        #expect(try !check("created[lt]=1767268800"), "Unix seconds: 1767268800 is 12:00Z")
        #expect(try check("created[lt]=1767268801"))
    }

    @Test("q matches as folding the whole name would, ASCII fast path and Unicode names alike")
    func searchFolding() {
        let names = ["Red SHIRT 5", "red shirt", "Shirt", "", "AAAb", "Crème BRÛLÉE", "ÉCOLE", "İstanbul", "straße", "a\u{0301}b", "[x]"]
        let needles = ["red shirt", "shirt", "aab", "b", "crème", "brûlée", "école", "istanbul", "i̇stanbul", "strasse", "straße", "á", "[x]", "z"]
        for name in names {
            for needle in needles.map(ProductQuery.fold) {
                #expect(ProductQuery.name(name, containsFolded: needle) == ProductQuery.fold(name).contains(needle), "\(name) ~ \(needle)")
            }
        }
    }

    @Test("epoch milliseconds agree with Foundation, offsets and fractions included")
    func epochMilliseconds() {
        for text in ["1970-01-01T00:00:00Z", "2026-11-27T11:47:39.123Z", "2024-02-29T23:59:59.999+05:30", "1999-12-31T23:00:00-01:00",
                     "2026-03-01T00:00:00.5Z", "2100-01-01T00:00:00.123456Z"] {
            let expected = Timestamp.parse(text).map { Int64(($0.timeIntervalSince1970 * 1000).rounded(.down)) }
            #expect(Timestamp.epochMilliseconds(text) == expected, "\(text)")
        }
        #expect(Timestamp.epochMilliseconds("2026-11-27") == nil)
        let now = Timestamp.now()
        #expect(Timestamp.format(epochMilliseconds: Timestamp.epochMilliseconds(now)!) == now)
    }
}
