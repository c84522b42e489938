import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@testable import ProductsService
import Shared
import TestSupport

/// `GET /products/search` through the public routes: the answer's shape, read-your-writes, and bad input.
extension RoutesTests {
    func search(_ client: some TestClientProtocol, _ query: String) async throws -> (status: HTTPResponse.Status, body: [String: Any]) {
        let response = try await client.execute(uri: "/products/search?" + query, method: .get)
        return (response.status, try json(response))
    }

    @Test("search: words, an option filter, facets that leave out their own filter, price range, sort, paging and locale")
    func searchRoute() async throws {
        try await withApp { client async throws in
            #expect(try await create(client, Self.shirt).status == .created)
            #expect(try await create(client, #"""
                {"name":"Blue Lamp","type":"lighting","tags":["sale"],"options":[{"name":"Color","values":["Blue"]}],
                 "variants":[{"options":{"Color":"Blue"},"prices":[{"currency":"EUR","amount":4999}]}]}
                """#).status == .created)

            // Written on this replica, found by its next search: the last word matches as a prefix, accents aside.
            var (status, body) = try await search(client, "q=creme%20t-sh&facets=option.Color,price&currency=EUR")
            #expect(status == .ok)
            #expect((body["data"] as? [[String: Any]])?.map { $0["name"] as? String } == ["Crème T-Shirt"])
            #expect(body["total"] as? Int == 1 && body["next_page_token"] is NSNull)
            let facets = try #require(body["facets"] as? [String: Any])
            #expect((facets["option.Color"] as? [[String: Any]])?.first?["value"] as? String == "Red")
            #expect((facets["price"] as? [String: Int]) == ["min": 1999, "max": 2199])

            // Multi-select: the Color facet still counts Blue while Color=Red is the filter.
            (status, body) = try await search(client, "option.Color=Red&facets=option.Color,type&sort=-price&currency=EUR")
            #expect(status == .ok && body["total"] as? Int == 1)
            let colors = try #require((body["facets"] as? [String: Any])?["option.Color"] as? [[String: Any]])
            #expect(Set(colors.map { "\($0["value"]!)=\($0["count"]!)" }) == ["Red=1", "Blue=1"])

            // Paging by token, then the same token with another filter is refused.
            (status, body) = try await search(client, "limit=1&sort=name")
            #expect(body["total"] as? Int == 2 && (body["data"] as? [[String: Any]])?.first?["name"] as? String == "Blue Lamp")
            let token = try #require(body["next_page_token"] as? String)
            (status, body) = try await search(client, "limit=1&sort=name&page_token=\(token)")
            #expect((body["data"] as? [[String: Any]])?.first?["name"] as? String == "Crème T-Shirt" && body["next_page_token"] is NSNull)
            (status, body) = try await search(client, "limit=1&sort=-name&page_token=\(token)")
            #expect(status == .badRequest && body["param"] as? String == "page_token")

            // A translation's words match in its locale, and the product comes back localized.
            (status, body) = try await search(client, "q=crème&locale=fr")
            #expect((body["data"] as? [[String: Any]])?.first?["name"] as? String == "T-shirt crème")
            (status, body) = try await search(client, "q=rouge")
            #expect(body["total"] as? Int == 0, "a translation's words match only in its locale")
            (status, body) = try await search(client, "q=rouge&locale=fr")
            #expect(body["total"] as? Int == 1)
        }
    }

    @Test("search: unknown parameters, facets and option names, bad sorts, ranges and tokens are 400s naming the parameter")
    func searchBadInput() async throws {
        try await withApp { client async throws in
            #expect(try await create(client, Self.shirt).status == .created)
            for (query, param) in [
                ("colour=red", "colour"), ("facets=size", "facets"), ("option.Material=Oak", "option.Material"),
                ("facets=option.Material", "facets"), ("sort=cheapest", "sort"), ("sort=relevance", "sort"),
                ("price[gte]=ten&currency=EUR", "price[gte]"), ("price[gte]=500&price[lte]=100&currency=EUR", "price[gte]"),
                ("price[lte]=100", "currency"), ("currency=eur", "currency"), ("limit=0", "limit"), ("limit=101", "limit"),
                ("page_token=abc", "page_token"), ("created[gte]=yesterday", "created[gte]"), ("q=", "q"), ("type=a&type=b", "type"),
            ] {
                let (status, body) = try await search(client, query)
                #expect(status == .badRequest && body["param"] as? String == param, "\(query): \(status) \(body)")
                #expect(body["error"] is String && body["code"] is String)
            }
        }
    }
}
