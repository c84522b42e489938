import Foundation
import Logging
import NIOCore
import Testing

@testable import ProductsService
import Shared

@Suite("Idempotency keys")
struct IdempotencyTests {
    let logger = Logger(label: "test")

    func request(_ key: String, body: String = #"{"name":"A"}"#, path: String = "/products") throws -> IdempotentRequest {
        try #require(try IdempotentRequest(
            tenant: defaultTenant, method: "POST", path: path, headers: [.idempotencyKey: key], body: ByteBuffer(string: body)))
    }

    func input(_ name: String) throws -> ProductInput {
        try ProductInput(json: .object(["name": .string(name)]))
    }

    @Test("a key is in flight until its write is durable, then replays through the catalog; another request with it is refused")
    func lifecycle() async throws {
        let held = HeldFlusher()
        let fixture = try CatalogFixture(beforeWrite: { held.wait() })
        defer { fixture.close(); fixture.remove() }
        let first = try request("k1")
        held.hold()
        let creation = Task { try await fixture.catalog.create(tenant: defaultTenant, try input("A"), idempotent: first) }
        try await held.waitUntilHolding()
        #expect(throws: APIError.idempotencyKeyInUse) { try fixture.idempotency.begin(first) }
        held.release()
        let created = try await creation.value.written
        guard case .replayed(let replay) = try await fixture.catalog.create(tenant: defaultTenant, try input("A"), idempotent: first) else {
            Issue.record("a retry with the same key and body replays")
            return
        }
        #expect(replay.status == 201)
        #expect(replay.body == String(buffer: created.json))
        #expect(replay.etag == created.etag)
        #expect(throws: APIError.idempotencyKeyReused) { try fixture.idempotency.begin(try request("k1", body: #"{"name":"B"}"#)) }
        #expect(throws: APIError.idempotencyKeyReused) { try fixture.idempotency.begin(try request("k1", path: "/products/x")) }
    }

    @Test("an abandoned key (the request failed) may be used again")
    func abandon() throws {
        let store = try IdempotencyStore(directory: nil)
        let first = try request("k")
        #expect(try store.begin(first) == nil)
        store.abandon(first)
        #expect(try store.begin(try request("k", body: #"{"name":"fixed"}"#)) == nil)
    }

    @Test("records survive a restart: from the journal while its segment lives, from idempotency.jsonl after")
    func survivesRestart() async throws {
        let fixture = try CatalogFixture(segmentSize: 1_000)
        defer { fixture.remove() }
        var created: [String: CachedProduct] = [:]
        for index in 0..<20 {
            let key = "key-\(index)"
            let idempotent = try request(key, body: "\(index)")
            created[key] = try await fixture.catalog.create(tenant: defaultTenant, try input("P\(index)"), idempotent: idempotent).written
        }
        // Confirm everything: the flusher drops the old segments, filing their records first.
        fixture.journal.confirm(through: fixture.journal.latestSequence)
        _ = try await fixture.catalog.create(tenant: defaultTenant, try input("after"))
        fixture.close()
        let segments = try FileManager.default.contentsOfDirectory(atPath: fixture.directory + "/journal")
        let filed = try String(contentsOfFile: fixture.directory + "/idempotency.jsonl", encoding: .utf8)
        #expect(segments.count < 20, "old segments were dropped: \(segments)")
        #expect(!filed.isEmpty)

        let reopened = try CatalogFixture.reopen(fixture)
        defer { reopened.close() }
        for index in 0..<20 {
            let key = "key-\(index)"
            let replay = try #require(try reopened.idempotency.begin(try request(key, body: "\(index)")), "\(key) is remembered")
            #expect(replay.body == String(buffer: created[key]!.json))
        }
        #expect(reopened.idempotency.count == 20)
    }

    @Test("records older than 24 hours are forgotten at start")
    func expiry() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let records = [
            IdempotencyRecord(tenant: "default", key: "old", fingerprint: "f", status: 201, body: "{}", etag: "\"x\"", createdAt: now - 25 * 3_600_000, sequence: 1),
            IdempotencyRecord(tenant: "default", key: "new", fingerprint: "f", status: 201, body: "{}", etag: "\"x\"", createdAt: now - 3_600_000, sequence: 2),
        ]
        let lines = try records.map { String(decoding: try JSONCoding.encoder.encode($0), as: UTF8.self) }.joined(separator: "\n") + "\n"
        try lines.write(toFile: directory + "/idempotency.jsonl", atomically: true, encoding: .utf8)
        let store = try IdempotencyStore(directory: directory)
        #expect(store.count == 1)
        let rewritten = try String(contentsOfFile: directory + "/idempotency.jsonl", encoding: .utf8)
        #expect(!rewritten.contains(#""key":"old""#) && rewritten.contains(#""key":"new""#), "the file was compacted")
    }
}
