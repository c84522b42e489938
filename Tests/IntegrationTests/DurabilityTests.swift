import Foundation
import Shared
import TestSupport
import Synchronization
import Testing

/// No sequence of crashes, restarts and outages loses an acknowledged write or resurrects a delete.
/// Real binaries, real `kill -9`.
@Suite("Durability with real processes")
struct DurabilityTests {
    /// The catalog both services must end with: every acknowledged create, minus every acknowledged delete.
    func expectConverged(_ stack: Stack, to expected: Set<String>, deleted: Set<String>) async throws {
        try await stack.waitUntilPersisted()
        let inDatabase = try await stack.databaseProducts().map(\.id)
        #expect(Set(inDatabase) == expected, "Database Service holds exactly the acknowledged catalog")
        #expect(inDatabase.count == Set(inDatabase).count, "no duplicates in the Database Service")
        let listed = try await stack.listedProducts().map(\.id)
        #expect(Set(listed) == expected, "Products Service lists exactly the acknowledged catalog")
        #expect(listed.count == Set(listed).count, "no duplicates in the listing")
        for id in deleted.prefix(20) {
            #expect(try await HTTP.get(stack.databaseURL + "/api/products/\(id)").status == 404, "\(id) stays deleted in the DB")
            #expect(try await HTTP.get(stack.productsURL + "/products/\(id)").status == 404, "\(id) stays deleted")
        }
    }

    /// Runs a command to its end; throws if it fails.
    static func run(_ path: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        try process.run()
        let status = process.waitForExit(timeout: .seconds(60))
        try #require(status == 0, "\(path) \(arguments) exited \(String(describing: status))")
    }

    @Test(
        "a full journal volume: writes are 503 while it is full, taken again once there is room, without a restart, and nothing acknowledged is lost",
        .enabled(if: getuid() == 0, "mounts a tmpfs, which needs root"))
    func fullDisk() async throws {
        let stack = try Stack()
        try FileManager.default.createDirectory(atPath: stack.dataDirectory, withIntermediateDirectories: true)
        try Self.run("/bin/mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", stack.dataDirectory])
        defer { try? Self.run("/bin/umount", ["-l", stack.dataDirectory]) }
        try await stack.startDatabase()
        try await stack.startProducts()
        try await stack.waitForStatus("healthy")
        var acknowledged: Set<String> = []
        for index in 0..<10 { acknowledged.insert(try await stack.create("Before \(index)").id) }

        // Fill the volume to the last byte.
        let filler = stack.dataDirectory + "/filler"
        FileManager.default.createFile(atPath: filler, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: filler))
        let chunk = Data(count: 64 << 10)
        do { while true { try handle.write(contentsOf: chunk) } } catch {}
        try? handle.close()
        // What fits in the journal file's last page is still taken (and acknowledged); then writes are refused.
        var refused: HTTPResult?
        for _ in 0..<500 {
            let answer = try await HTTP.post(stack.productsURL + "/products", json: #"{"name":"No room"}"#)
            if answer.status == 201 {
                acknowledged.insert(try answer.json(Product.self).id)
                continue
            }
            refused = answer
            break
        }
        #expect(refused?.status == 503 && refused?.error?.code == "journal_unavailable", "\(String(describing: refused?.text))")
        #expect(try await HTTP.get(stack.productsURL + "/readyz").status == 503)
        // An import's file cannot be stored either: a 503 to retry, not a 500.
        let upload = try await HTTP.send(
            .POST, stack.productsURL + "/imports", body: String(repeating: #"{"name":"Imported"}"# + "\n", count: 2000),
            contentType: "application/x-ndjson")
        #expect(upload.status == 503 && upload.error?.code == "import_spool_unavailable", "\(upload.text)")

        // Room again: writes are taken by themselves (how soon is measured on a quiet machine, not under the suite).
        try FileManager.default.removeItem(atPath: filler)
        let freed = ContinuousClock.now
        try await eventually("writes are taken again") {
            try await HTTP.post(stack.productsURL + "/products", json: #"{"name":"After 0"}"#).status == 201
        }
        print("durability: writes taken again \(ContinuousClock.now - freed) after the journal's volume had room")
        #expect(try await HTTP.get(stack.productsURL + "/readyz").status == 200)
        for index in 1..<10 { acknowledged.insert(try await stack.create("After \(index)").id) }

        try await stack.waitUntilPersisted()
        let stored = try await stack.databaseProducts()
        #expect(acknowledged.isSubset(of: Set(stored.map(\.id))), "every acknowledged write is in the database")
        #expect(stored.filter { $0.name == "No room" }.count == acknowledged.count - 19, "the refused write is nowhere")
        // The drained journal keeps one segment: the one before the failure is freed once confirmed.
        try await eventually("confirmed segments are reclaimed") {
            let files = try FileManager.default.contentsOfDirectory(atPath: stack.dataDirectory + "/journal")
            return files.filter { $0.hasPrefix("segment-") }.count == 1
        }
        await stack.stop()
    }

    @Test("Database Service down, writes acknowledged, Products Service killed -9: all of it lands after restart", arguments: Backend.available)
    func killDuringOutage(backend: Backend) async throws {
        let stack = try Stack(backend)
        try await stack.startProducts()
        var created: [String] = []
        for index in 0..<40 { created.append(try await stack.create("Acked \(index)").id) }
        var deleted: Set<String> = []
        for id in created.enumerated().filter({ $0.offset % 4 == 0 }).map(\.element) {
            #expect(try await HTTP.delete(stack.productsURL + "/products/\(id)").status == 200)
            deleted.insert(id)
        }
        stack.products!.kill()

        try await stack.startDatabase()
        try await stack.startProducts()
        #expect(try await stack.listedProducts().count == 30, "the journal's view is served at once, before the catalog loads")
        try await stack.waitForStatus("healthy")
        try await expectConverged(stack, to: Set(created).subtracting(deleted), deleted: deleted)
        await stack.stop()
    }

    @Test("the Database Service killed and restarted during a stream of writes: both end at the acknowledged history", arguments: Backend.available)
    func databaseRestartsDuringWrites(backend: Backend) async throws {
        let stack = try await Stack.started(backend: backend)
        let chaosFinished = Flag()
        let chaos = Task {
            defer { chaosFinished.set() }
            for _ in 0..<3 {
                try await Task.sleep(for: .milliseconds(400))
                stack.database!.kill()
                try await Task.sleep(for: .milliseconds(300))
                try await stack.startDatabase()
            }
        }
        var live: [String] = []
        var deleted: Set<String> = []
        var index = 0
        // Keep writing until the chaos is over and a fair number of writes were made, however fast the machine.
        while !chaosFinished.isSet || index < 150 {
            index += 1
            if index % 3 == 0, let victim = live.popLast() {
                let response = try await HTTP.delete(stack.productsURL + "/products/\(victim)")
                #expect(response.status == 200, "delete \(victim): \(response.text)")
                deleted.insert(victim)
            } else {
                live.append(try await stack.create("Stream \(index)").id)
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        try await chaos.value
        try await expectConverged(stack, to: Set(live), deleted: deleted)
        await stack.stop()
    }

    @Test("a delete made while the Database Service is down stays deleted through sync and restart", arguments: Backend.available)
    func deleteDuringOutage(backend: Backend) async throws {
        let stack = try await Stack.started(["--sync-timeout", "0.5"], backend: backend)
        let product = try await stack.create("Doomed")
        let survivor = try await stack.create("Survivor")
        try await stack.waitUntilPersisted()
        try await stack.database!.terminate()

        #expect(try await HTTP.delete(stack.productsURL + "/products/\(product.id)").status == 200)
        let failedSync = try await HTTP.send(.POST, stack.productsURL + "/cache/sync")
        #expect(failedSync.status == 503)
        #expect(failedSync.error?.code == "database_unavailable")
        #expect(try await HTTP.get(stack.productsURL + "/products/\(product.id)").status == 404)

        try await stack.startDatabase()
        try await eventually("sync succeeds once the Database Service is back") {
            try await HTTP.send(.POST, stack.productsURL + "/cache/sync").status == 200
        }
        #expect(try await HTTP.get(stack.productsURL + "/products/\(product.id)").status == 404)
        try await stack.products!.terminate()
        try await stack.startProducts()
        try await stack.waitForStatus("healthy")
        #expect(try await HTTP.send(.POST, stack.productsURL + "/cache/sync").status == 200)
        try await expectConverged(stack, to: [survivor.id], deleted: [product.id])
        await stack.stop()
    }

    @Test("updates delivered to the Database Service out of order: the newer survives", arguments: Backend.available)
    func outOfOrder(backend: Backend) async throws {
        let stack = try Stack(backend)
        try await stack.startDatabase()
        let api = stack.databaseURL + "/api/products"
        #expect(try await HTTP.post(api, json: #"{"id":"p1","name":"Version 2","version":2}"#).status == 201)
        #expect(try await HTTP.post(api, json: #"{"id":"p1","name":"Version 1","version":1}"#).status == 409)
        #expect(try await HTTP.get(api + "/p1").json(Product.self).name == "Version 2")

        let now = Timestamp.now()
        func upsert(_ version: Int64) -> String {
            #"{"op":"upsert","product":{"id":"p2","name":"V\#(version)","type":"t","description":null,"images":[],"active":true,"metadata":{},"created_at":"\#(now)","updated_at":"\#(now)","version":\#(version)}}"#
        }
        let batch = try await HTTP.post(api + "/batch", json: #"{"operations":[\#(upsert(4)),\#(upsert(3))]}"#)
        #expect(try batch.json(WriteBatchResult.self).results.map(\.outcome) == [.applied, .stale])
        #expect(try await HTTP.get(api + "/p2").json(Product.self).name == "V4")

        let delete = #"{"op":"delete","id":"p2","version":5,"deleted_at":"\#(now)"}"#
        _ = try await HTTP.post(api + "/batch", json: #"{"operations":[\#(delete),\#(upsert(4))]}"#)
        #expect(try await HTTP.get(api + "/p2").status == 404, "a replayed older write cannot resurrect a delete")
        await stack.stop()
    }

    @Test("SIGTERM with a backlog and the Database Service up: the backlog is flushed, nothing is lost", arguments: Backend.available)
    func sigtermFlushes(backend: Backend) async throws {
        let stack = try Stack(backend)
        // A long retry delay: after its first failure the worker sleeps, so only shutdown can flush. The shutdown
        // flush gets longer than AsyncHTTPClient's connection backoff, which after the many refused connections
        // of the outage can reach 60 s (100 ms × 1.25^(failures − 1)) before the pool dials the database again.
        try await stack.startProducts(["--retry-base-delay", "60", "--retry-max-delay", "60", "--shutdown-timeout", "75"])
        var created: [String] = []
        for index in 0..<25 { created.append(try await stack.create("Backlog \(index)").id) }
        try await eventually("the worker failed once and is backing off") {
            let persistence = try await HTTP.get(stack.productsURL + "/cache/stats").object["persistence"] as? [String: Any]
            return (persistence?["consecutive_failures"] as? Int ?? 0) >= 1
        }
        try await stack.startDatabase()
        #expect(try await HTTP.get(stack.productsURL + "/cache/stats").object["pending_writes"] as? Int == 25)

        let status = try await stack.products!.terminate(timeout: .seconds(90))
        #expect(status == 0)
        #expect(
            Set(try await stack.databaseProducts().map(\.id)) == Set(created),
            "the Products Service's log ends: \(stack.products!.log.suffix(4000))")

        // Restarted with the Database Service out of reach, the journal has nothing left to replay.
        try await stack.database!.terminate()
        try await stack.startProducts()
        let stats = try await HTTP.get(stack.productsURL + "/cache/stats").object
        #expect(stats["pending_writes"] as? Int == 0)
        await stack.stop()
    }

    @Test("a restart loads the catalog without POST /cache/sync", arguments: Backend.available)
    func warmRestart(backend: Backend) async throws {
        let stack = try await Stack.started(backend: backend)
        var created: [String] = []
        for index in 0..<12 { created.append(try await stack.create("Warm \(index)").id) }
        try await stack.waitUntilPersisted()
        try await stack.products!.terminate()
        // Lose the journal entirely: the catalog must come from the Database Service alone.
        try FileManager.default.removeItem(atPath: stack.dataDirectory)
        try await stack.startProducts()
        try await stack.waitForStatus("healthy")
        #expect(try await stack.listedProducts().map(\.id) == created)
        await stack.stop()
    }

    @Test("a journaled write the Database Service refuses is dead-lettered and the rest still land", arguments: Backend.available)
    func deadLetter(backend: Backend) async throws {
        let stack = try Stack(backend)
        let journal = stack.dataDirectory + "/journal"
        try FileManager.default.createDirectory(atPath: journal, withIntermediateDirectories: true)
        let now = Timestamp.now()
        func record(_ id: String, _ name: String) -> String {
            #"{"op":"upsert","tenant":"default","product":{"id":"\#(id)","name":"\#(name)","type":"t","description":null,"images":[],"active":true,"metadata":{},"created_at":"\#(now)","updated_at":"\#(now)","version":1},"recorded_at_ms":\#(Timestamp.nowMilliseconds())}"#
        }
        let lines = [record("prod_good1", "Good"), record("prod_bad", "   "), record("prod_good2", "Good too")]
        try (lines.joined(separator: "\n") + "\n").write(toFile: journal + "/segment-00000000000000000001.log", atomically: true, encoding: .utf8)

        try await stack.startDatabase()
        try await stack.startProducts()
        try await stack.waitUntilPersisted()
        #expect(Set(try await stack.databaseProducts().map(\.id)) == ["prod_good1", "prod_good2"])
        let persistence = try await HTTP.get(stack.productsURL + "/cache/stats").object["persistence"] as? [String: Any]
        let letters = persistence?["dead_letters"] as? [String: Any]
        #expect(letters?["count"] as? Int == 1)
        #expect(FileManager.default.fileExists(atPath: stack.dataDirectory + "/dead-letters.jsonl"))
        #expect(Set(try await stack.listedProducts().map(\.id)) == ["prod_good1", "prod_good2"])
        await stack.stop()
    }

    @Test("a journaled write older than a delete whose tombstone was purged is dead-lettered, not a resurrection", arguments: Backend.available)
    func purgedTombstone(backend: Backend) async throws {
        let stack = try Stack(backend)
        try await stack.startDatabase(["--change-retention", "1", "--change-purge-interval", "0.2"])
        let now = Timestamp.now()
        #expect(try await HTTP.post(stack.databaseURL + "/api/products", json: #"{"id":"prod_gone","name":"Gone"}"#).status == 201)
        #expect(try await HTTP.delete(stack.databaseURL + "/api/products/prod_gone").status == 200)
        let deadline = ContinuousClock.now + .seconds(30)
        while !stack.serviceLogs.contains("purged tombstones past retention") {
            guard ContinuousClock.now < deadline else { Issue.record("the tombstone was not purged"); return }
            try await Task.sleep(for: .milliseconds(100))
        }
        // Back at the default retention: the horizon stays where the purge left it, a moment ago.
        _ = try await stack.database!.terminate()
        try await stack.startDatabase()

        // This replica journaled an edit of the product an hour ago, before the delete, and a create just now.
        let journal = stack.dataDirectory + "/journal"
        try FileManager.default.createDirectory(atPath: journal, withIntermediateDirectories: true)
        func record(_ id: String, version: Int64, recordedAtMs: Int64) -> String {
            #"{"op":"upsert","tenant":"default","product":{"id":"\#(id)","name":"Back","type":"t","description":null,"images":[],"active":true,"metadata":{},"created_at":"\#(now)","updated_at":"\#(now)","version":\#(version)},"recorded_at_ms":\#(recordedAtMs)}"#
        }
        let lines = [record("prod_gone", version: 2, recordedAtMs: Timestamp.nowMilliseconds() - 3_600_000),
                     record("prod_new", version: 1, recordedAtMs: Timestamp.nowMilliseconds())]
        try (lines.joined(separator: "\n") + "\n").write(toFile: journal + "/segment-00000000000000000001.log", atomically: true, encoding: .utf8)
        try await stack.startProducts()
        try await stack.waitUntilPersisted()
        #expect(try await stack.databaseProducts().map(\.id) == ["prod_new"])
        #expect(try await HTTP.get(stack.productsURL + "/products/prod_gone").status == 404, "the delete stands")
        let persistence = try await HTTP.get(stack.productsURL + "/cache/stats").object["persistence"] as? [String: Any]
        #expect((persistence?["dead_letters"] as? [String: Any])?["count"] as? Int == 1, "the refused write is kept for an operator")
        #expect(try String(contentsOfFile: stack.dataDirectory + "/dead-letters.jsonl", encoding: .utf8).contains("tombstone horizon"))
        await stack.stop()
    }
}

/// A flag one task sets and another reads.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}
