import Foundation
import NIOHTTP1
import Shared
import TestSupport
import Testing

/// Several Products Service replicas, each with its own data directory, over one Database Service (SQLite) or
/// two Database Service processes over one PostgreSQL database.
///
/// Waits are generous: on PostgreSQL the feed shows a change once every older writing transaction on the server
/// has ended, and the tests create and drop databases on that server in parallel (the lag target is measured in
/// `bench/replicas`, not here).
final class Replicas: @unchecked Sendable {
    let stack: Stack
    /// Database Service URLs: the stack's, and on PostgreSQL a second process over the same database.
    var databaseURLs: [String]
    var secondDatabase: ServiceProcess?
    var processes: [ServiceProcess?]

    init(count: Int, backend: Backend, databaseArguments: [String] = []) async throws {
        stack = try Stack(backend)
        try await stack.startDatabase(databaseArguments)
        databaseURLs = [stack.databaseURL]
        if backend == .postgresql {
            let second = try await ServiceProcess.start(
                "database-service", ["--port", "0", "--database", stack.databaseLocation], in: stack.directory)
            secondDatabase = second
            databaseURLs.append(second.baseURL)
        }
        processes = Array(repeating: nil, count: count)
        for index in 0..<count { try await start(index) }
        for index in 0..<count {
            try await eventually("replica \(index) is healthy") {
                try await HTTP.get(self.url(index) + "/health").object["status"] as? String == "healthy"
            }
        }
    }

    func url(_ index: Int) -> String { processes[index]!.baseURL }

    func start(_ index: Int) async throws {
        processes[index] = try await ServiceProcess.start(
            "products-service",
            [
                "--port", "0", "--database-service-url", databaseURLs[index % databaseURLs.count],
                "--data-dir", stack.directory.path + "/replica-\(index)", "--retry-max-delay", "0.5",
            ],
            in: stack.directory)
    }

    func stop(_ index: Int) async throws {
        _ = try await processes[index]?.terminate()
        processes[index] = nil
    }

    func product(_ index: Int, _ id: String) async throws -> HTTPResult { try await HTTP.get(url(index) + "/products/\(id)") }

    func listedIDs(_ index: Int) async throws -> [String: Int64] {
        var all: [String: Int64] = [:]
        var cursor = ""
        while true {
            let response = try await HTTP.get(url(index) + "/products?limit=1000" + cursor)
            let page = try response.json([Product].self)
            for product in page { all[product.id] = product.version }
            guard response.headers.first(name: "Link") != nil, let last = page.last else { return all }
            cursor = "&starting_after=\(last.id)"
        }
    }

    func databaseIDs() async throws -> [String: Int64] {
        Dictionary(uniqueKeysWithValues: try await stack.databaseProducts().map { ($0.id, $0.version) })
    }

    deinit {
        for process in processes { process?.kill() }
        secondDatabase?.kill()
    }
}

@Suite("Replicas", .serialized)
struct ReplicaTests {
    private func create(_ url: String, _ name: String) async throws -> Product {
        let response = try await HTTP.post(url + "/products", json: #"{"name":"\#(name)"}"#)
        try #require(response.status == 201, "create answered \(response.status): \(response.text)")
        return try response.json(Product.self)
    }

    private func patch(_ url: String, _ id: String, _ json: String, headers: [(String, String)] = []) async throws -> HTTPResult {
        try await HTTP.send(.PATCH, url + "/products/\(id)", body: json, headers: headers)
    }

    @Test("a create, an update and a delete on one replica reach the others; /health reports the feed", arguments: Backend.available)
    func propagation(backend: Backend) async throws {
        let replicas = try await Replicas(count: 2, backend: backend)
        let lamp = try await create(replicas.url(0), "Lamp")
        try await eventually("the create reaches replica 1") {
            try await replicas.product(1, lamp.id).status == 200
        }
        #expect(try await replicas.listedIDs(1)[lamp.id] == 1)

        let updated = try await patch(replicas.url(1), lamp.id, #"{"name":"Desk lamp"}"#)
        #expect(updated.status == 200)
        let version = try updated.json(Product.self).version
        #expect(version > 1 && version & 1023 != 0, "a replica stamps its writer number on the versions it makes")
        try await eventually("the update reaches replica 0") {
            try await replicas.product(0, lamp.id).json(Product.self).name == "Desk lamp"
        }

        #expect(try await HTTP.delete(replicas.url(0) + "/products/\(lamp.id)").status == 200)
        try await eventually("the delete reaches replica 1") {
            try await replicas.product(1, lamp.id).status == 404
        }
        #expect(try await replicas.listedIDs(1)[lamp.id] == nil)
        #expect(try await patch(replicas.url(1), lamp.id, #"{"name":"Back?"}"#).status == 404, "an update of a deleted product is a 404")

        let health = try await HTTP.get(replicas.url(1) + "/health").object
        let feed = try #require(health["feed"] as? [String: Any])
        #expect(feed["cursor"] as? String != nil)
        #expect(feed["lag_seconds"] as? Double == 0)
        #expect((feed["applied"] as? Int ?? 0) >= 1, "the delete at least (the create may have been read through first)")
        let writers = try await [0, 1].asyncMap { try await HTTP.get(replicas.url($0) + "/health").object["feed"] as? [String: Any] }
        #expect(Set(writers.compactMap { $0?["writer"] as? Int }).count == 2, "each replica has its own writer number")
        let metrics = try await HTTP.get(replicas.url(1) + "/metrics").text
        #expect(metrics.contains("products_feed_lag_seconds"))
    }

    @Test("concurrent updates of one product on two replicas: distinct versions, and everyone ends at the higher", arguments: Backend.available)
    func lastWriterWins(backend: Backend) async throws {
        let replicas = try await Replicas(count: 2, backend: backend)
        let product = try await create(replicas.url(0), "Chair")
        try await eventually("replica 1 has it") { try await replicas.product(1, product.id).status == 200 }
        async let a = patch(replicas.url(0), product.id, #"{"name":"From A"}"#)
        async let b = patch(replicas.url(1), product.id, #"{"name":"From B"}"#)
        let (first, second) = try await (a.json(Product.self), b.json(Product.self))
        #expect(first.version != second.version, "two contents never share a version")
        let winner = first.version > second.version ? first : second
        try await eventually("both replicas and the database hold the winner") {
            let zero = try await replicas.product(0, product.id).json(Product.self)
            let one = try await replicas.product(1, product.id).json(Product.self)
            let stored = try await HTTP.get(replicas.stack.databaseURL + "/api/products/\(product.id)").json(Product.self)
            return [zero, one, stored].allSatisfy { $0.version == winner.version && $0.name == winner.name }
        }
    }

    @Test("an update on one replica racing a delete on another: refused (404), or it wins by version everywhere", arguments: Backend.available)
    func updateRacingDelete(backend: Backend) async throws {
        let replicas = try await Replicas(count: 2, backend: backend)
        for round in 0..<5 {
            let product = try await create(replicas.url(0), "Raced \(round)")
            try await eventually("replica 1 has it") { try await replicas.product(1, product.id).status == 200 }
            async let deleted = HTTP.delete(replicas.url(0) + "/products/\(product.id)")
            async let updated = patch(replicas.url(1), product.id, #"{"name":"Updated \#(round)"}"#)
            let (deletion, update) = try await (deleted, updated)
            #expect(deletion.status == 200)
            #expect([200, 404].contains(update.status), "round \(round): \(update.status) \(update.text)")
            // Whatever happened, every replica and the database end in the same state, and an acknowledged
            // update either is that state or lost to a later delete: never silently dropped behind an older one.
            try await eventually("round \(round): both replicas and the database agree") {
                let stored = try await HTTP.get(replicas.stack.databaseURL + "/api/products/\(product.id)")
                let zero = try await replicas.product(0, product.id)
                let one = try await replicas.product(1, product.id)
                guard zero.status == stored.status, one.status == stored.status else { return false }
                guard stored.status == 200 else { return true }
                let winner = try stored.json(Product.self)
                return try zero.json(Product.self) == winner && one.json(Product.self) == winner
            }
            let stored = try await HTTP.get(replicas.stack.databaseURL + "/api/products/\(product.id)")
            if update.status == 200, stored.status == 200 {
                #expect(try stored.json(Product.self) == update.json(Product.self), "the update won by version")
            }
            if stored.status == 404, update.status == 200 {
                // The delete won: its version must be above the update's (the update was first in the one order).
                // On PostgreSQL the log shows it once older transactions on the server have ended.
                var deleteVersion: Int64?
                try await eventually("the delete shows in the change log") {
                    let changes = try await HTTP.get(replicas.stack.databaseURL + "/api/changes?limit=1000").json(ChangePage.self)
                    deleteVersion = changes.changes.last { $0.id == product.id && $0.op == .delete }?.version
                    return deleteVersion != nil
                }
                #expect((deleteVersion ?? 0) > (try update.json(Product.self).version))
            }
        }
    }

    @Test("concurrent If-Match updates from one version on three replicas: exactly one wins, the others get 412", arguments: Backend.available)
    func ifMatchAcrossReplicas(backend: Backend) async throws {
        let replicas = try await Replicas(count: 3, backend: backend)
        for round in 0..<3 {
            let product = try await create(replicas.url(0), "Contested \(round)")
            // Until replica 0 has persisted it, the others cannot see it (it is a 404 there, as on a GET).
            try await eventually("every replica sees the product") {
                for index in 0..<3 where try await replicas.product(index, product.id).status != 200 { return false }
                return true
            }
            let etag = EntityTag.product(id: product.id, version: product.version)
            let answers = try await withThrowingTaskGroup(of: HTTPResult.self) { group in
                for index in 0..<3 {
                    group.addTask {
                        try await self.patch(replicas.url(index), product.id, #"{"name":"Winner \#(index)"}"#, headers: [("If-Match", etag)])
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(answers.filter { $0.status == 200 }.count == 1, "round \(round): \(answers.map(\.status))")
            #expect(answers.filter { $0.status == 412 }.count == 2, "round \(round): \(answers.map(\.status))")
            let winner = try #require(answers.first { $0.status == 200 }).json(Product.self)
            for loser in answers where loser.status == 412 {
                #expect(loser.error?.code == "precondition_failed" && loser.error?.currentVersion == winner.version)
            }
            try await eventually("every replica serves the winner") {
                for index in 0..<3 where try await replicas.product(index, product.id).json(Product.self) != winner { return false }
                return true
            }
        }
        // A DELETE with a stale If-Match, on another replica, is refused too.
        let product = try await create(replicas.url(0), "Kept")
        let stale = EntityTag.product(id: product.id, version: product.version)
        #expect(try await patch(replicas.url(0), product.id, #"{"name":"Changed"}"#).status == 200)
        try await eventually("replica 1 sees the change") {
            try await replicas.product(1, product.id).json(Product.self).name == "Changed"
        }
        #expect(try await HTTP.send(.DELETE, replicas.url(1) + "/products/\(product.id)", headers: [("If-Match", stale)]).status == 412)
    }

    @Test("an Idempotency-Key retried on another replica replays the first answer; another body there is 422", arguments: Backend.available)
    func idempotencyAcrossReplicas(backend: Backend) async throws {
        let replicas = try await Replicas(count: 2, backend: backend)
        let body = #"{"name":"Order 7"}"#
        let first = try await HTTP.send(.POST, replicas.url(0) + "/products", body: body, headers: [("Idempotency-Key", "order-7")])
        #expect(first.status == 201)
        let retry = try await HTTP.send(.POST, replicas.url(1) + "/products", body: body, headers: [("Idempotency-Key", "order-7")])
        #expect(retry.status == 201 && retry.headers.first(name: "Idempotent-Replayed") == "true")
        #expect(retry.body == first.body)
        let reused = try await HTTP.send(.POST, replicas.url(1) + "/products", body: #"{"name":"Other"}"#, headers: [("Idempotency-Key", "order-7")])
        #expect(reused.status == 422 && reused.error?.code == "idempotency_key_reused")
        // Both at once on two replicas: one product.
        let answers = try await withThrowingTaskGroup(of: HTTPResult.self) { group in
            for index in 0..<2 {
                group.addTask {
                    try await HTTP.send(.POST, replicas.url(index) + "/products", body: #"{"name":"Race"}"#, headers: [("Idempotency-Key", "race")])
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let created = answers.filter { $0.status == 201 }
        #expect(Set(created.map(\.body)).count == 1, "the same product for both: \(answers.map(\.status))")
        let names = try await replicas.stack.databaseProducts().map(\.name)
        #expect(names.filter { $0 == "Race" }.count == 1 && names.filter { $0 == "Order 7" }.count == 1)
    }

    @Test("a replica stopped while others write catches up on restart, deletes included", arguments: Backend.available)
    func catchUpAfterRestart(backend: Backend) async throws {
        let replicas = try await Replicas(count: 2, backend: backend)
        let kept = try await create(replicas.url(0), "Kept")
        let doomed = try await create(replicas.url(0), "Doomed")
        try await eventually("replica 1 has both") {
            let doomedStatus = try await replicas.product(1, doomed.id).status
            let keptStatus = try await replicas.product(1, kept.id).status
            return doomedStatus == 200 && keptStatus == 200
        }
        try await replicas.stop(1)
        #expect(try await patch(replicas.url(0), kept.id, #"{"name":"Kept, renamed"}"#).status == 200)
        #expect(try await HTTP.delete(replicas.url(0) + "/products/\(doomed.id)").status == 200)
        let added = try await create(replicas.url(0), "Added")
        try await replicas.start(1)
        try await eventually("replica 1 caught up") {
            guard try await replicas.product(1, doomed.id).status == 404 else { return false }
            guard try await replicas.product(1, added.id).status == 200 else { return false }
            return try await replicas.product(1, kept.id).json(Product.self).name == "Kept, renamed"
        }
    }

    @Test("a replica whose cursor is past the log's retention reloads in full, and misses nothing")
    func expiredCursor() async throws {
        let replicas = try await Replicas(
            count: 2, backend: .sqlite, databaseArguments: ["--change-retention", "1", "--change-purge-interval", "0.2"])
        let doomed = try await create(replicas.url(0), "Doomed")
        try await eventually("replica 1 has it") { try await replicas.product(1, doomed.id).status == 200 }
        try await replicas.stop(1)
        #expect(try await HTTP.delete(replicas.url(0) + "/products/\(doomed.id)").status == 200)
        let added = try await create(replicas.url(0), "Added")
        let token = replicas.stack.databaseURL + "/api/changes?after=0.0"
        try await eventually("the log has purged what replica 1 has not seen") {
            try await HTTP.get(token).status == 410
        }
        #expect(try await HTTP.get(token).error?.code == "cursor_expired")
        try await replicas.start(1)
        try await eventually("replica 1 reloaded") {
            let deleted = try await replicas.product(1, doomed.id).status == 404
            let present = try await replicas.product(1, added.id).status == 200
            return deleted && present
        }
        let later = try await create(replicas.url(0), "Later")
        try await eventually("and follows again") { try await replicas.product(1, later.id).status == 200 }
        #expect(try await replicas.listedIDs(1)[doomed.id] == nil)
    }

    @Test("a database restored from an older backup: the replicas reload what it holds (older versions included), If-Match works again, and they follow its log")
    func databaseRestoredFromBackup() async throws {
        let replicas = try await Replicas(count: 2, backend: .sqlite)
        let stack = replicas.stack
        func persisted() async throws {
            try await eventually("replica 0 has no pending writes") {
                try await HTTP.get(replicas.url(0) + "/cache/stats").object["pending_writes"] as? Int == 0
            }
        }
        let kept = try await create(replicas.url(0), "Kept")
        try await persisted()
        // Killed, not stopped: a graceful stop waits for the replicas' long polls; the files are as a crash left them.
        stack.database?.kill()
        let files = ["", "-wal", "-shm"].map { stack.sqlitePath + $0 }.filter { FileManager.default.fileExists(atPath: $0) }
        for file in files { try FileManager.default.copyItem(atPath: file, toPath: file + ".backup") }
        try await stack.startDatabase()
        let lost = try await create(replicas.url(0), "Lost with the restore")
        let url = replicas.url(0) + "/products/\(kept.id)"
        #expect(try await HTTP.send(.PATCH, url, body: #"{"description":"lost too"}"#).status == 200)
        try await persisted()
        // The replica has seen its writes come back on the feed: it knows the log reached this far.
        let head = try #require(try await HTTP.get(stack.databaseURL + "/api/changes/head").object["cursor"] as? String)
        try await eventually("replica 0's feed reached the log's head") {
            let feed = try await HTTP.get(replicas.url(0) + "/health").object["feed"] as? [String: Any]
            return feed?["cursor"] as? String == head
        }

        stack.database?.kill()
        for file in ["", "-wal", "-shm"].map({ stack.sqlitePath + $0 }) { try? FileManager.default.removeItem(atPath: file) }
        for file in files { try FileManager.default.moveItem(atPath: file + ".backup", toPath: file) }
        try await stack.startDatabase()
        try await eventually("the replica shows what the restored database holds, though older than what it held") {
            let gone = try await replicas.product(0, lost.id).status == 404
            let restored = try await replicas.listedIDs(0)[kept.id] == 1
            return gone && restored
        }
        let etag = try #require(try await HTTP.get(url).headers.first(name: "ETag"))
        let patched = try await HTTP.send(.PATCH, url, body: #"{"description":"after the restore"}"#, headers: [("If-Match", etag)])
        #expect(patched.status == 200, "If-Match builds on what the database holds: \(patched.text)")
        let later = try await create(replicas.url(1), "Later")
        try await eventually("and the replicas follow the log again") { try await replicas.product(0, later.id).status == 200 }
    }

    @Test("the feed resumes after the Database Service is killed and restarted")
    func feedSurvivesDatabaseRestart() async throws {
        let replicas = try await Replicas(count: 2, backend: .sqlite)
        replicas.stack.database?.kill()
        try await Task.sleep(for: .milliseconds(500))
        try await replicas.stack.startDatabase()
        let product = try await create(replicas.url(0), "After the restart")
        try await eventually("the create reaches replica 1") {
            try await replicas.product(1, product.id).status == 200
        }
    }

    @Test("after a concurrent mix of writes on three replicas, every listing equals the database's", arguments: Backend.available)
    func convergence(backend: Backend) async throws {
        let replicas = try await Replicas(count: 3, backend: backend)
        var ids: [String] = []
        for index in 0..<30 { ids.append(try await create(replicas.url(index % 3), "Item \(index)").id) }
        let snapshot = ids
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<6 {
                group.addTask {
                    var generator = SystemRandomNumberGenerator()
                    for step in 0..<40 {
                        let url = replicas.url(Int.random(in: 0..<3, using: &generator))
                        let id = snapshot.randomElement(using: &generator)!
                        switch Int.random(in: 0..<10, using: &generator) {
                        case 0: _ = try await HTTP.delete(url + "/products/\(id)")
                        case 1...3:
                            _ = try await HTTP.send(.PUT, url + "/products/\(id)", body: #"{"name":"Put \#(worker)-\#(step)"}"#)
                        default: _ = try await self.patch(url, id, #"{"metadata":{"w\#(worker)":"\#(step)"}}"#)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        var difference = ""
        do {
            try await eventually("every replica's listing equals the database's") {
                let stored = try await replicas.databaseIDs()
                for index in 0..<3 {
                    let listed = try await replicas.listedIDs(index)
                    guard listed == stored else {
                        let differing = Set(listed.keys).union(stored.keys).filter { listed[$0] != stored[$0] }.sorted().prefix(5)
                        difference = "replica \(index): " + differing.map { "\($0) listed \(listed[$0].map(String.init) ?? "-"), stored \(stored[$0].map(String.init) ?? "-")" }
                            .joined(separator: "; ")
                        return false
                    }
                }
                return true
            }
        } catch {
            Issue.record("still different: \(difference)")
            throw error
        }
    }

    @Test("a product created on one replica is found at once on another: GET, PATCH, If-Match, history and DELETE, 1,000 times, never a 404", arguments: Backend.available)
    func readYourCreateElsewhere(backend: Backend) async throws {
        let replicas = try await Replicas(count: 2, backend: backend)
        let deleted = try await withThrowingTaskGroup(of: [String].self) { group in
            for worker in 0..<4 {
                group.addTask {
                    var deleted: [String] = []
                    for step in 0..<250 {
                        let (from, to) = step % 2 == 0 ? (0, 1) : (1, 0)
                        let id = try await self.create(replicas.url(from), "Fresh \(worker)-\(step)").id
                        let other = replicas.url(to) + "/products/\(id)"
                        let answer: HTTPResult
                        switch step % 5 {
                        case 0: answer = try await HTTP.get(other)
                        case 1: answer = try await HTTP.send(.PATCH, other, body: #"{"name":"Patched"}"#)
                        case 2: answer = try await HTTP.send(.PATCH, other, body: #"{"name":"Matched"}"#, headers: [("If-Match", "*")])
                        case 3: answer = try await HTTP.get(other + "/versions")
                        default:
                            answer = try await HTTP.delete(other)
                            deleted.append(id)
                        }
                        let operation = ["GET", "PATCH", "PATCH If-Match", "GET versions", "DELETE"][step % 5]
                        #expect(answer.status == 200, "step \(step) (\(operation)): \(answer.status) \(answer.text)")
                    }
                    return deleted
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        // Every DELETE answered 200 really deleted: gone from the database and from both replicas.
        try await eventually("the deletes are everywhere") {
            let stored = try await replicas.databaseIDs()
            let listed = try await [0, 1].asyncMap { try await replicas.listedIDs($0) }
            return deleted.allSatisfy { stored[$0] == nil && listed[0][$0] == nil && listed[1][$0] == nil }
        }
        // An id that was never minted here, but looks fresh, is a 404 within about a second.
        let started = ContinuousClock.now
        let fresh = try await create(replicas.url(0), "Fresh").id
        let unknown = try await replicas.product(1, String(fresh.dropLast()) + (fresh.hasSuffix("0") ? "1" : "0"))
        #expect(unknown.status == 404 && ContinuousClock.now - started < .seconds(5))
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
