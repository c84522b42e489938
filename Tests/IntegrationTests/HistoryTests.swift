import Foundation
import Shared
import TestSupport
import Testing

/// A product's history and restoring a version, through the Products Service, over real HTTP.
@Suite("History and restore over HTTP")
struct HistoryTests {
    struct Version: Decodable, Equatable {
        var version: Int64
        var event: String
        var changedAt: String
        var product: Product?

        enum CodingKeys: String, CodingKey {
            case version, event, product
            case changedAt = "changed_at"
        }
    }

    @Test("versions are listed newest first; a restore after a delete and after an edit brings one back, with its event; bad input is a 400", arguments: Backend.available)
    func restore(backend: Backend) async throws {
        let stack = try await Stack.started(backend: backend)
        let base = stack.productsURL
        let created = try await stack.create("Lamp", type: "lighting", metadata: ["watts": "60"])
        let url = base + "/products/\(created.id)"
        // Each write reaches the Database Service before the next: a replica sends only the newest of a batch.
        try await stack.waitUntilPersisted()
        try #require(try await HTTP.send(.PATCH, url, body: #"{"name":"Desk lamp"}"#).status == 200)
        try await stack.waitUntilPersisted()
        try #require(try await HTTP.delete(url).status == 200)

        // Straight after the delete, still journaled: the restore sends it first.
        let restored = try await HTTP.post(url + "/restore", json: #"{"version":\#(created.version)}"#)
        #expect(restored.status == 201, "\(restored.text)")
        let back = try restored.json(Product.self)
        #expect(back.name == "Lamp" && back.type == "lighting" && back.metadata == ["watts": "60"] && back.createdAt == created.createdAt)
        #expect(restored.headers.first(name: "ETag") == EntityTag.product(id: created.id, version: back.version))
        #expect(try await HTTP.get(url).json(Product.self) == back, "served at once")
        #expect(try await stack.databaseProducts() == [back])

        let versions = try await HTTP.get(url + "/versions").json([Version].self)
        #expect(versions.map(\.event) == ["product.created", "product.deleted", "product.updated", "product.created"])
        #expect(versions.map(\.version) == versions.map(\.version).sorted(by: >), "newest first")
        #expect(versions[0].product == back && versions[1].product == nil && versions[2].product?.name == "Desk lamp")

        // After an edit: the desk lamp comes back over the live product.
        try #require(try await HTTP.send(.PATCH, url, body: #"{"name":"Floor lamp"}"#).status == 200)
        // Listed at once: the replica sends its pending writes before it reads the history.
        #expect(try await HTTP.get(url + "/versions?limit=1").json([Version].self).first?.product?.name == "Floor lamp")
        let again = try await HTTP.post(url + "/restore", json: #"{"version":\#(versions[2].version)}"#)
        #expect(again.status == 200, "\(again.text)")
        #expect(try again.json(Product.self).name == "Desk lamp")
        try await stack.waitUntilPersisted()
        #expect(try await stack.listedProducts().map(\.name) == ["Desk lamp"])

        let firstPage = try await HTTP.get(url + "/versions?limit=2")
        let newest = try firstPage.json([Version].self)
        #expect(newest.map(\.event) == ["product.updated", "product.updated"])
        let link = try #require(firstPage.headers.first(name: "Link"))
        #expect(link.contains("starting_after=\(newest[1].version)") && link.contains("rel=\"next\""))
        let next = try await HTTP.get(url + "/versions?limit=2&starting_after=\(newest[1].version)").json([Version].self)
        #expect(next == Array(versions.prefix(2)))

        // Bad input: a clear 400 naming the parameter, and nothing written.
        let count = try await HTTP.get(url + "/versions?limit=100").json([Version].self).count
        for (body, param) in [
            (#"{"version":0}"#, "version"), (#"{"version":1,"mode":"all"}"#, "mode"), (#"{"version":"1"}"#, "version"),
            (#"{"version":\#(versions[1].version)}"#, "version"), (#"{"version":999}"#, "version"), ("[]", nil),
        ] {
            let refused = try await HTTP.post(url + "/restore", json: body)
            #expect(refused.status == 400 && refused.error?.param == param, "\(body): \(refused.text)")
        }
        #expect(try await HTTP.get(url + "/versions?limit=100").json([Version].self).count == count)
        #expect(try await HTTP.post(base + "/products/prod_nobody/restore", json: #"{"version":1}"#).status == 404)
        #expect(try await HTTP.get(base + "/products/prod_nobody/versions").status == 404)
        #expect(try await HTTP.get(url + "/versions?limit=0").error?.param == "limit")
        #expect(try await HTTP.get(url + "/versions?starting_after=x").error?.param == "starting_after")
        await stack.stop()
    }
}
