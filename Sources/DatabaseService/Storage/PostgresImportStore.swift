import PostgresNIO
import Shared

/// Import jobs on PostgreSQL: a job's row is locked while a report is applied, so reports from a replica and the
/// failing of silent jobs by any Database Service process do not overwrite each other.
struct PostgresImportStore: ImportStore, PostgresFeatureStore {
    let database: PostgresStore

    func createImport(_ job: ImportJob) async throws -> ImportCreation {
        let text = try ImportSchema.encode(job)
        return try await transaction(logger: logger) { connection in
            // A key already used (or being used by a concurrent request) is left alone; then its job is read.
            let inserted = try await connection.query(
                """
                INSERT INTO import_jobs (tenant, id, job, status, replica_id, idempotency_key, updated_ms)
                VALUES (\(job.tenant), \(job.id), \(text), \(job.status.rawValue), \(job.replicaID), \(job.idempotencyKey), \(job.updatedMs))
                ON CONFLICT DO NOTHING RETURNING id
                """, logger: self.logger)
            for try await _ in inserted.decode(String.self) { return .created(job) }
            guard let key = job.idempotencyKey else { return .idTaken }
            let rows = try await connection.query(
                "SELECT job FROM import_jobs WHERE tenant = \(job.tenant) AND idempotency_key = \(key)", logger: self.logger)
            for try await stored in rows.decode(String.self) { return .existing(try ImportSchema.decode(stored)) }
            return .idTaken
        }
    }

    func importJob(tenant: String, id: String) async throws -> ImportJob? {
        let rows = try await query("SELECT job FROM import_jobs WHERE tenant = \(tenant) AND id = \(id)", logger: logger)
        for try await text in rows.decode(String.self) { return try ImportSchema.decode(text) }
        return nil
    }

    func updateImport(tenant: String, id: String, _ progress: ImportProgress) async throws -> ImportJob? {
        try await transaction(logger: logger) { connection in
            var stored: ImportJob?
            for try await text in try await connection.query(
                "SELECT job FROM import_jobs WHERE tenant = \(tenant) AND id = \(id) FOR UPDATE", logger: self.logger
            ).decode(String.self) { stored = try ImportSchema.decode(text) }
            guard let stored else { return nil }
            guard !stored.status.isFinished else { return stored }
            let nowMs = Timestamp.nowMilliseconds()
            let job = progress.applied(to: stored, nowMs: nowMs)
            let finishedMs: Int64? = job.status.isFinished ? nowMs : nil
            try await connection.query(
                """
                UPDATE import_jobs SET job = \(try ImportSchema.encode(job)), status = \(job.status.rawValue), updated_ms = \(nowMs),
                    finished_ms = \(finishedMs)
                WHERE tenant = \(tenant) AND id = \(id)
                """, logger: self.logger)
            return job
        }
    }

    func addImportErrors(tenant: String, id: String, _ errors: [ImportLineError]) async throws {
        guard !errors.isEmpty else { return }
        try await transaction(logger: logger) { connection in
            // One report per job at a time, so the count holds.
            try await connection.query("SELECT pg_advisory_xact_lock(7206115, hashtext(\(tenant) || '/' || \(id)))", logger: self.logger)
            var kept: Int64 = 0
            for try await count in try await connection.query(
                "SELECT COUNT(*) FROM import_errors WHERE tenant = \(tenant) AND job_id = \(id)", logger: self.logger
            ).decode(Int64.self) { kept = count }
            let taken = Array(errors.prefix(max(0, ImportRules.maxStoredErrors - Int(kept))))
            guard !taken.isEmpty else { return }
            // Arrays bind no NULLs: a param is its text and whether there is one.
            try await connection.query(
                """
                INSERT INTO import_errors (tenant, job_id, line, code, param, error)
                SELECT \(tenant), \(id), line, code, CASE WHEN has_param THEN param END, error
                FROM unnest(\(taken.map(\.line))::bigint[], \(taken.map(\.code))::text[], \(taken.map { $0.param ?? "" })::text[],
                            \(taken.map { $0.param != nil })::boolean[], \(taken.map(\.error))::text[])
                    AS input (line, code, param, has_param, error)
                ON CONFLICT DO NOTHING
                """, logger: self.logger)
        }
    }

    func importErrors(tenant: String, id: String, afterLine: Int64?, limit: Int) async throws -> (errors: [ImportLineError], hasMore: Bool) {
        let rows = try await query(
            """
            SELECT line, code, param, error FROM import_errors
            WHERE tenant = \(tenant) AND job_id = \(id) AND line > \(afterLine ?? 0) ORDER BY line LIMIT \(limit + 1)
            """, logger: logger)
        var errors: [ImportLineError] = []
        for try await (line, code, param, error) in rows.decode((Int64, String, String?, String).self) {
            errors.append(ImportLineError(line: line, code: code, param: param, error: error))
        }
        let hasMore = errors.count > limit
        return (Array(errors.prefix(limit)), hasMore)
    }

    func unfinishedImports(replicaID: String) async throws -> [ImportJob] {
        let rows = try await query(
            "SELECT job FROM import_jobs WHERE replica_id = \(replicaID) AND finished_ms IS NULL ORDER BY id", logger: logger)
        var jobs: [ImportJob] = []
        for try await text in rows.decode(String.self) { jobs.append(try ImportSchema.decode(text)) }
        return jobs
    }

    func failSilentImports(silentSinceMs: Int64, nowMs: Int64) async throws -> Int {
        try await transaction(logger: logger) { connection in
            var silent: [ImportJob] = []
            for try await text in try await connection.query(
                "SELECT job FROM import_jobs WHERE finished_ms IS NULL AND updated_ms < \(silentSinceMs) FOR UPDATE SKIP LOCKED",
                logger: self.logger
            ).decode(String.self) { silent.append(try ImportSchema.decode(text)) }
            for stored in silent {
                let job = ImportProgress(status: .failed, error: ImportSchema.silenceError(stored), finishedAt: Timestamp.now())
                    .applied(to: stored, nowMs: nowMs)
                try await connection.query(
                    """
                    UPDATE import_jobs SET job = \(try ImportSchema.encode(job)), status = \(job.status.rawValue), updated_ms = \(nowMs),
                        finished_ms = \(nowMs)
                    WHERE tenant = \(job.tenant) AND id = \(job.id)
                    """, logger: self.logger)
            }
            return silent.count
        }
    }

    func purgeImports(finishedBefore cutoffMs: Int64) async throws -> Int {
        try await transaction(logger: logger) { connection in
            try await connection.query(
                """
                DELETE FROM import_errors USING import_jobs
                WHERE import_errors.tenant = import_jobs.tenant AND import_errors.job_id = import_jobs.id
                    AND import_jobs.finished_ms IS NOT NULL AND import_jobs.finished_ms < \(cutoffMs)
                """, logger: self.logger)
            var count = 0
            for try await _ in try await connection.query(
                "DELETE FROM import_jobs WHERE finished_ms IS NOT NULL AND finished_ms < \(cutoffMs) RETURNING id", logger: self.logger
            ).decode(String.self) { count += 1 }
            return count
        }
    }
}
