import Foundation
import Testing

@testable import DatabaseService
import Shared

@Suite("Import jobs, on SQLite and PostgreSQL")
struct ImportStoreTests {
    func job(_ id: String, tenant: String = "acme", replica: String = "replica-a", key: String? = nil, fingerprint: String? = nil) -> ImportJob {
        ImportJob(id: id, tenant: tenant, mode: .create, errorPolicy: .skipInvalid, lines: 10, replicaID: replica, idempotencyKey: key, fingerprint: fingerprint)
    }

    @Test("jobs are created once per id and per idempotency key, reported on until finished, then kept as they ended", arguments: StoreBackend.available)
    func lifecycle(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            let first = job("imp_1", key: "k", fingerprint: "f1")
            #expect(try await store.imports.createImport(first) == .created(first))
            #expect(try await store.imports.createImport(job("imp_2", key: "k", fingerprint: "f2")) == .existing(first), "the key's job, whatever the file")
            #expect(try await store.imports.createImport(job("imp_1")) == .idTaken)
            let other = job("imp_2", tenant: "globex", key: "k")
            #expect(try await store.imports.createImport(other) == .created(other), "keys are per tenant")
            #expect(try await store.imports.importJob(tenant: "globex", id: "imp_1") == nil, "jobs are per tenant")

            let running = try #require(try await store.imports.updateImport(
                tenant: "acme", id: "imp_1", ImportProgress(status: .running, phase: .validating, validated: 4, startedAt: "2026-01-01T00:00:00Z")))
            #expect(running.status == .running && running.phase == .validating && running.validated == 4 && running.startedAt == "2026-01-01T00:00:00Z")
            #expect(try await store.imports.unfinishedImports(replicaID: "replica-a").map(\.id) == ["imp_1", "imp_2"])
            let resumed = try await store.imports.updateImport(tenant: "acme", id: "imp_1", ImportProgress(phase: .writing, startedAt: "2026-01-02T00:00:00Z"))
            #expect(resumed?.startedAt == "2026-01-01T00:00:00Z" && resumed?.phase == .writing, "a resumed job keeps its first start")
            let done = try #require(try await store.imports.updateImport(
                tenant: "acme", id: "imp_1", ImportProgress(status: .partiallySucceeded, validated: 10, written: 7, rejected: 3, finishedAt: Timestamp.now())))
            #expect(done.status == .partiallySucceeded && done.phase == nil && done.progress == 1)
            let late = try await store.imports.updateImport(tenant: "acme", id: "imp_1", ImportProgress(status: .running, written: 9))
            #expect(late == done, "a finished job stays as it ended")
            #expect(try await store.imports.updateImport(tenant: "acme", id: "imp_9", ImportProgress(written: 1)) == nil)
            #expect(try await store.imports.unfinishedImports(replicaID: "replica-a").map(\.id) == ["imp_2"])
            #expect(try await store.imports.importJob(tenant: "acme", id: "imp_1") == done)
        }
    }

    @Test("rejected lines are kept once each, the first 10,000 of a job, and listed in line order by page", arguments: StoreBackend.available)
    func errors(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            _ = try await store.imports.createImport(job("imp_1"))
            let errors = (1...ImportRules.maxStoredErrors + 50).reversed().map { line in
                ImportLineError(line: Int64(line) * 2, code: "parameter_invalid", param: line % 2 == 0 ? "name" : nil, error: "bad \(line)")
            }
            try await store.imports.addImportErrors(tenant: "acme", id: "imp_1", Array(errors.prefix(6_000)))
            try await store.imports.addImportErrors(tenant: "acme", id: "imp_1", Array(errors.prefix(100)))  // resent after a restart
            try await store.imports.addImportErrors(tenant: "acme", id: "imp_1", Array(errors.dropFirst(6_000)))
            var all: [ImportLineError] = []
            var after: Int64?
            while true {
                let page = try await store.imports.importErrors(tenant: "acme", id: "imp_1", afterLine: after, limit: 1000)
                all += page.errors
                guard page.hasMore, let last = page.errors.last else { break }
                after = last.line
            }
            #expect(all.count == ImportRules.maxStoredErrors)
            #expect(all.map(\.line) == all.map(\.line).sorted() && Set(all.map(\.line)).count == all.count)
            #expect(Set(all.map(\.line)) == Set(errors.prefix(ImportRules.maxStoredErrors).map(\.line)), "the first ones reported are kept")
            #expect(all.contains { $0.param == nil } && all.contains { $0.param == "name" })
            #expect(try await store.imports.importErrors(tenant: "globex", id: "imp_1", afterLine: nil, limit: 10).errors.isEmpty)
        }
    }

    @Test("a job whose replica went silent is failed, saying how far it got; finished jobs go after the retention", arguments: StoreBackend.available)
    func silenceAndPurge(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            // Reported after `before`, however long a starved run takes over it.
            let before = Timestamp.nowMilliseconds()
            _ = try await store.imports.createImport(job("imp_1"))
            _ = try await store.imports.createImport(job("imp_2"))
            _ = try await store.imports.updateImport(tenant: "acme", id: "imp_1", ImportProgress(status: .running, written: 5))
            try await store.imports.addImportErrors(tenant: "acme", id: "imp_1", [ImportLineError(line: 3, code: "invalid_json", param: nil, error: "x")])
            let now = Timestamp.nowMilliseconds()
            #expect(try await store.imports.failSilentImports(silentSinceMs: before, nowMs: now) == 0, "both reported since")
            #expect(try await store.imports.failSilentImports(silentSinceMs: now + 1_000, nowMs: now) == 2)
            let failed = try #require(try await store.imports.importJob(tenant: "acme", id: "imp_1"))
            #expect(failed.status == .failed && failed.error?.contains("5 lines were written") == true && failed.finishedAt != nil)
            #expect(try await store.imports.unfinishedImports(replicaID: "replica-a").isEmpty)
            #expect(try await store.imports.purgeImports(finishedBefore: now - 60_000) == 0)
            #expect(try await store.imports.purgeImports(finishedBefore: Timestamp.nowMilliseconds() + 1_000) == 2)
            #expect(try await store.imports.importJob(tenant: "acme", id: "imp_1") == nil)
            #expect(try await store.imports.importErrors(tenant: "acme", id: "imp_1", afterLine: nil, limit: 10).errors.isEmpty)
        }
    }
}
