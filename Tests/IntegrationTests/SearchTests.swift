import Foundation
import NIOHTTP1
import Shared
import TestSupport
import Testing

/// `GET /products/search` across two replicas over real HTTP: read-your-writes on the replica written to, the other
/// replica within the feed's lag, and exact counts against what was written, after updates and deletes.
@Suite("Search over HTTP")
struct SearchTests {
    /// What the search below must answer over `products`: total, ids by price, Color and tag counts, price range.
    static func expected(_ products: [Product], in categories: Set<String>) -> [String: String] {
        func eur(_ product: Product) -> [Int64] { product.variants.flatMap { $0.prices.filter { $0.currency == "EUR" }.map(\.amount) } }
        let inTree = products.filter { !Set($0.categoryIDs).isDisjoint(with: categories) }
        let red = inTree.filter { $0.variants.contains { $0.options["Color"] == "Red" } }
        var colors: [String: Int] = [:], tags: [String: Int] = [:]
        for product in inTree { for color in Set(product.variants.compactMap { $0.options["Color"] }) { colors[color, default: 0] += 1 } }
        for product in red { for tag in product.tags { tags[tag, default: 0] += 1 } }
        let amounts = red.flatMap(eur)
        let ordered = red.sorted { (eur($0).min()!, $0.id) < (eur($1).min()!, $1.id) }.map(\.id)
        return [
            "total": "\(red.count)", "ids": ordered.prefix(50).joined(separator: ","),
            "colors": colors.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","),
            "tags": tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","),
            "price": amounts.isEmpty ? "null" : "\(amounts.min()!)-\(amounts.max()!)",
        ]
    }

    /// The same figures, from a replica's answer.
    static func answered(_ base: String, category: String) async throws -> [String: String] {
        let response = try await HTTP.get(
            base + "/products/search?category=\(category)&option.Color=Red&facets=option.Color,tag,price&currency=EUR&sort=price&limit=50")
        #expect(response.status == 200, "\(response.text)")
        let body = response.object
        let facets = try #require(body["facets"] as? [String: Any])
        func counts(_ name: String) -> String {
            ((facets[name] as? [[String: Any]]) ?? []).map { "\($0["value"]!)=\($0["count"]!)" }.sorted().joined(separator: ",")
        }
        let price = (facets["price"] as? [String: Int]).map { "\($0["min"]!)-\($0["max"]!)" } ?? "null"
        let ids = ((body["data"] as? [[String: Any]]) ?? []).compactMap { $0["id"] as? String }
        return ["total": "\(body["total"] ?? "")", "ids": ids.joined(separator: ","), "colors": counts("option.Color"), "tags": counts("tag"), "price": price]
    }

    @Test("two replicas: each finds its own writes at once and the other's within the feed's lag; counts exact after updates and deletes",
          arguments: Backend.available)
    func acrossReplicas(backend: Backend) async throws {
        let replicas = try await Replicas(count: 2, backend: backend)
        let root = try await HTTP.post(replicas.url(0) + "/categories", json: #"{"name":"Home"}"#).json(Category.self).id
        let child = try await HTTP.post(replicas.url(0) + "/categories", json: #"{"name":"Lamps","parent_id":"\#(root)"}"#).json(Category.self).id
        let other = try await HTTP.post(replicas.url(0) + "/categories", json: #"{"name":"Garden"}"#).json(Category.self).id
        var rng = SystemRandomNumberGenerator()
        var products: [String: Product] = [:]
        for index in 0..<60 {
            let colors = ["Red", "Blue", "Green"].shuffled(using: &rng).prefix(Int.random(in: 1...2, using: &rng))
            let variants = colors.map { #"{"options":{"Color":"\#($0)"},"prices":[{"currency":"EUR","amount":\#(Int.random(in: 100...9_999, using: &rng))}]}"# }
            let category = [root, child, other][index % 3]
            let body = #"""
                {"name":"Item\#(index) zq\#(index)x","tags":["t\#(index % 4)"],"category_ids":["\#(category)"],
                 "options":[{"name":"Color","values":[\#(colors.map { "\"\($0)\"" }.joined(separator: ","))]}],"variants":[\#(variants.joined(separator: ","))]}
                """#
            let writer = index % 2
            let created = try await HTTP.post(replicas.url(writer) + "/products", json: body)
            #expect(created.status == 201, "\(created.text)")
            let product = try created.json(Product.self)
            products[product.id] = product
            // Read your writes: the replica that acknowledged it finds it in its very next search.
            let found = try await HTTP.get(replicas.url(writer) + "/products/search?q=zq\(index)x").object
            #expect(found["total"] as? Int == 1, "replica \(writer) finds product \(index) at once")
        }
        let tree: Set<String> = [root, child]
        for index in [0, 1] {
            try await eventually("replica \(index) answers as brute force") {
                try await Self.answered(replicas.url(index), category: root) == Self.expected(Array(products.values), in: tree)
            }
        }
        // Updates (colours, prices) and deletes on the second replica; the first follows.
        for (step, id) in products.keys.sorted().prefix(20).enumerated() {
            if step % 3 == 0 {
                #expect(try await HTTP.delete(replicas.url(1) + "/products/\(id)").status == 200)
                products[id] = nil
            } else {
                let patched = try await HTTP.send(.PATCH, replicas.url(1) + "/products/\(id)", body: #"""
                    {"options":[{"name":"Color","values":["Red"]}],"variants":[{"options":{"Color":"Red"},"prices":[{"currency":"EUR","amount":\#(50 + step)}]}]}
                    """#)
                #expect(patched.status == 200, "\(patched.text)")
                products[id] = try patched.json(Product.self)
            }
        }
        #expect(try await Self.answered(replicas.url(1), category: root) == Self.expected(Array(products.values), in: tree), "at once where written")
        try await eventually("replica 0 follows the updates and deletes") {
            try await Self.answered(replicas.url(0), category: root) == Self.expected(Array(products.values), in: tree)
        }

    }
}
