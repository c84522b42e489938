import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

@testable import ProductsService
import Shared
import TestSupport

@Suite("Products another replica may hold unconfirmed")
struct UnconfirmedElsewhereTests {
    let logger = Logger(label: "test")

    @Test("the journal vouches for ids minted before its oldest unconfirmed record, less 2 s; a create minted over 2 s before its append is refused")
    func clearThrough() async throws {
        for directory in [try temporaryDirectory(), nil] {
            defer { if let directory { try? FileManager.default.removeItem(atPath: directory) } }
            let journal = try Journal(directory: directory, logger: logger)
            defer { journal.close() }
            let idle = Timestamp.nowMilliseconds() - Journal.maxMintAge - 1
            #expect((idle - 50...idle + 50).contains(journal.clearThroughMs), "nothing unconfirmed: now less 2 s")

            let recordedAt = Timestamp.nowMilliseconds() - 30_000
            let ticket = try journal.append(JournalRecord(upsert("old"), recordedAtMs: recordedAt))
            #expect(journal.clearThroughMs == recordedAt - Journal.maxMintAge - 1, "not yet durable: still unconfirmed")
            try await journal.waitUntilDurable(ticket)
            #expect(journal.clearThroughMs == recordedAt - Journal.maxMintAge - 1, "durable, not confirmed")
            journal.confirm(through: ticket)
            #expect(journal.clearThroughMs >= idle, "confirmed")

            let minted = ProductIDGenerator().next(now: Date().addingTimeInterval(-2.5))
            let mintedAt = try #require(ProductIDGenerator.mintMilliseconds(of: minted))
            #expect(throws: JournalError.self) { try journal.append(JournalRecord(upsert(minted)), mintedAtMs: mintedAt) }
            #expect(Replica.unavailable(.stalled("")).code == "write_stalled")
            let fresh = ProductIDGenerator().next()
            _ = try journal.append(JournalRecord(upsert(fresh)), mintedAtMs: ProductIDGenerator.mintMilliseconds(of: fresh))
        }
    }

    @Test("a miss is 503 product_unconfirmed while another replica has not vouched for the id's mint time, 404 once it has; never for its own writer number")
    func vouching() async throws {
        let database = FakeDatabaseService()
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let app = try buildApplication(settings: ProductsServiceSettings(dataDirectory: directory), database: database)
        try await app.test(.router) { client in
            // Minted 10 s ago: no wait for the feed, and past the 6 s a miss waits for the others to vouch.
            let id = ProductIDGenerator().next(now: Date().addingTimeInterval(-10))
            let minted = try #require(ProductIDGenerator.mintMilliseconds(of: id))
            func status(_ method: HTTPRequest.Method, _ uri: String, body: String? = nil) async throws -> (HTTPResponse.Status, String) {
                let response = try await client.execute(
                    uri: uri, method: method, headers: body == nil ? [:] : [.contentType: "application/json"], body: body.map { ByteBuffer(string: $0) })
                return (response.status, String(buffer: response.body))
            }
            /// Sets what the Database Service lists, and waits for the replica's copy of the last list to age out.
            func reports(_ listed: [Int64: Int64]) async throws {
                database.backlogReports.withLock { $0 = listed }
                try await Task.sleep(for: PeerBacklogs.freshFor + .milliseconds(50))
            }

            try await reports([900: minted - 1])
            for (method, uri, body) in [
                (HTTPRequest.Method.get, "/products/\(id)", nil), (.patch, "/products/\(id)", #"{"name":"x"}"#), (.delete, "/products/\(id)", nil),
            ] {
                let (code, text) = try await status(method, uri, body: body)
                #expect(code == .serviceUnavailable && text.contains(#""code":"product_unconfirmed""#) && text.contains("900"), "\(method) \(uri): \(code) \(text)")
            }

            try await reports([900: minted])
            #expect(try await status(.get, "/products/\(id)").0 == .notFound, "vouched for")
            #expect(try await status(.delete, "/products/\(id)").0 == .notFound)

            // Its own reports never hold a miss back, nor an id that is not a minted product id.
            try await eventually("this replica reports its own backlog") { database.backlogReports.withLock { $0.count } == 2 }
            let own = try #require(database.backlogReports.withLock { $0.keys.first { $0 != 900 } })
            #expect(Versions.writerRange.contains(own))
            try await reports([own: 0])
            #expect(try await status(.get, "/products/\(id)").0 == .notFound)
            try await reports([900: 0])
            #expect(try await status(.get, "/products/prod_unknown").0 == .notFound)
            // An id claiming a mint time an hour ahead waits no longer than one minted now.
            let ahead = ProductIDGenerator().next(now: Date().addingTimeInterval(3600))
            let asked = ContinuousClock.now
            #expect(try await status(.get, "/products/\(ahead)").0 == .serviceUnavailable)
            #expect(asked.duration(to: .now) < .seconds(60))
            #expect(try await status(.get, "/products/\(id)").0 == .serviceUnavailable)
        }
    }
}
