import Foundation
import NIOHTTP1
import Shared
import TestSupport
import Testing

/// A create acknowledged by a replica that cannot reach the Database Service, asked for on another replica.
@Suite("Replicas: a product another replica holds unconfirmed")
struct UnconfirmedElsewhereTests {
    @Test("a replica cut off from the Database Service holds a create: another answers 503 product_unconfirmed for it (never 404), and finds it once it lands")
    func heldElsewhere() async throws {
        // Each replica needs a Database Service of its own over one database: PostgreSQL only.
        guard Backend.available.contains(.postgresql) else { return }
        let replicas = try await Replicas(count: 2, backend: .postgresql)
        let database = replicas.stack.databaseURL
        try await eventually("both replicas report their backlog") {
            (try await HTTP.get(database + "/api/writers/backlogs").object["data"] as? [Any])?.count == 2
        }
        // Replica 1's Database Service stops answering: its writes are acknowledged from its journal only.
        let cutOff = try #require(replicas.secondDatabase).process.processIdentifier
        kill(cutOff, SIGSTOP)
        var resumed = false
        defer { if !resumed { kill(cutOff, SIGCONT) } }
        let created = try await HTTP.post(replicas.url(1) + "/products", json: #"{"name":"Held lamp"}"#)
        #expect(created.status == 201)
        let product = try created.json(Product.self)

        let other = replicas.url(0)
        let started = ContinuousClock.now
        for (method, path, body, headers) in [
            (HTTPMethod.GET, "/products/\(product.id)", nil as String?, [(String, String)]()),
            (.PATCH, "/products/\(product.id)", #"{"description":"x"}"#, []),
            (.PATCH, "/products/\(product.id)", #"{"description":"x"}"#, [("If-Match", "\"\(product.version)\"")]),
            (.GET, "/products/\(product.id)/versions", nil, []),
            (.DELETE, "/products/\(product.id)", nil, []),
        ] {
            let answer = try await HTTP.send(method, other + path, body: body, headers: headers)
            #expect(answer.status == 503 && answer.error?.code == "product_unconfirmed", "\(method) \(path): \(answer.status) \(answer.text)")
        }
        #expect(ContinuousClock.now - started < .seconds(60), "each answers once the 6 s wait is over")

        kill(cutOff, SIGCONT)
        resumed = true
        try await eventually("the other replica finds it once it lands") { try await replicas.product(0, product.id).status == 200 }
        #expect(try await HTTP.delete(other + "/products/\(product.id)").status == 200)
        try await eventually("and the delete is everywhere") { try await replicas.product(1, product.id).status == 404 }
    }
}
