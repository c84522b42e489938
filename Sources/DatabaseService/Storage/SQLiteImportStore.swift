import Foundation
import GRDB
import GRDBSQLite
import NIOCore
import Shared

/// Import jobs on SQLite.
struct SQLiteImportStore: ImportStore, SQLiteFeatureStore {
    let database: SQLiteStore

    func createImport(_ job: ImportJob) async throws -> ImportCreation {
        let text = try ImportSchema.encode(job)
        return try await write { db in
            if let key = job.idempotencyKey,
               let stored = try String.fetchOne(
                   db, sql: "SELECT job FROM import_jobs WHERE tenant = ? AND idempotency_key = ?", arguments: [job.tenant, key])
            {
                return .existing(try ImportSchema.decode(stored))
            }
            guard try Bool.fetchOne(
                db, sql: "SELECT EXISTS (SELECT 1 FROM import_jobs WHERE tenant = ? AND id = ?)", arguments: [job.tenant, job.id]) == false
            else { return .idTaken }
            try db.execute(
                sql: """
                    INSERT INTO import_jobs (tenant, id, job, status, replica_id, idempotency_key, updated_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [job.tenant, job.id, text, job.status.rawValue, job.replicaID, job.idempotencyKey, job.updatedMs])
            return .created(job)
        }
    }

    func importJob(tenant: String, id: String) async throws -> ImportJob? {
        try await read { db in
            try String.fetchOne(db, sql: "SELECT job FROM import_jobs WHERE tenant = ? AND id = ?", arguments: [tenant, id])
                .map(ImportSchema.decode)
        }
    }

    func updateImport(tenant: String, id: String, _ progress: ImportProgress) async throws -> ImportJob? {
        let nowMs = Timestamp.nowMilliseconds()
        return try await write { db in
            guard let stored = try String.fetchOne(db, sql: "SELECT job FROM import_jobs WHERE tenant = ? AND id = ?", arguments: [tenant, id])
                .map(ImportSchema.decode)
            else { return nil }
            guard !stored.status.isFinished else { return stored }
            let job = progress.applied(to: stored, nowMs: nowMs)
            try db.execute(
                sql: "UPDATE import_jobs SET job = ?, status = ?, updated_ms = ?, finished_ms = ? WHERE tenant = ? AND id = ?",
                arguments: [try ImportSchema.encode(job), job.status.rawValue, nowMs, job.status.isFinished ? nowMs : nil, tenant, id])
            return job
        }
    }

    func addImportErrors(tenant: String, id: String, _ errors: [ImportLineError]) async throws {
        guard !errors.isEmpty else { return }
        try await write { db in
            let kept = try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM import_errors WHERE tenant = ? AND job_id = ?", arguments: [tenant, id]) ?? 0
            for error in errors.prefix(max(0, ImportRules.maxStoredErrors - kept)) {
                try db.execute(
                    sql: "INSERT INTO import_errors (tenant, job_id, line, code, param, error) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    arguments: [tenant, id, error.line, error.code, error.param, error.error])
            }
        }
    }

    func importErrors(tenant: String, id: String, afterLine: Int64?, limit: Int) async throws -> (errors: [ImportLineError], hasMore: Bool) {
        try await read { db in
            let rows = try GRDB.Row.fetchAll(
                db,
                sql: "SELECT line, code, param, error FROM import_errors WHERE tenant = ? AND job_id = ? AND line > ? ORDER BY line LIMIT ?",
                arguments: [tenant, id, afterLine ?? 0, limit + 1])
            let errors = rows.prefix(limit).map { ImportLineError(line: $0["line"], code: $0["code"], param: $0["param"], error: $0["error"]) }
            return (errors, rows.count > limit)
        }
    }

    func unfinishedImports(replicaID: String) async throws -> [ImportJob] {
        try await read { db in
            try String.fetchAll(
                db, sql: "SELECT job FROM import_jobs WHERE replica_id = ? AND finished_ms IS NULL ORDER BY id", arguments: [replicaID]
            ).map(ImportSchema.decode)
        }
    }

    func failSilentImports(silentSinceMs: Int64, nowMs: Int64) async throws -> Int {
        try await write { db in
            let silent = try String.fetchAll(
                db, sql: "SELECT job FROM import_jobs WHERE finished_ms IS NULL AND updated_ms < ?", arguments: [silentSinceMs]
            ).map(ImportSchema.decode)
            for stored in silent {
                let job = ImportProgress(status: .failed, error: ImportSchema.silenceError(stored), finishedAt: Timestamp.now())
                    .applied(to: stored, nowMs: nowMs)
                try db.execute(
                    sql: "UPDATE import_jobs SET job = ?, status = ?, updated_ms = ?, finished_ms = ? WHERE tenant = ? AND id = ?",
                    arguments: [try ImportSchema.encode(job), job.status.rawValue, nowMs, nowMs, job.tenant, job.id])
            }
            return silent.count
        }
    }

    func purgeImports(finishedBefore cutoffMs: Int64) async throws -> Int {
        try await write { db in
            try db.execute(
                sql: """
                    DELETE FROM import_errors WHERE (tenant, job_id) IN (
                        SELECT tenant, id FROM import_jobs WHERE finished_ms IS NOT NULL AND finished_ms < ?)
                    """,
                arguments: [cutoffMs])
            try db.execute(sql: "DELETE FROM import_jobs WHERE finished_ms IS NOT NULL AND finished_ms < ?", arguments: [cutoffMs])
            return db.changesCount
        }
    }
}
