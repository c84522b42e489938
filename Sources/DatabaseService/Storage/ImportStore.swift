import Foundation
import Shared

/// Import jobs as the Database Service keeps them: each job's state, reported by the replica running it, and the
/// first `ImportRules.maxStoredErrors` lines it rejected. Finished jobs go after the change log's retention.
protocol ImportStore: Sendable {
    /// Stores a new job. When the tenant already used the job's idempotency key, the job stored under it instead,
    /// whatever its fingerprint: the caller compares.
    func createImport(_ job: ImportJob) async throws -> ImportCreation
    func importJob(tenant: String, id: String) async throws -> ImportJob?
    /// Applies a replica's report; a finished job stays as it is (returned unchanged). Nil when there is no such job.
    func updateImport(tenant: String, id: String, _ progress: ImportProgress) async throws -> ImportJob?
    /// Keeps rejected lines, up to `ImportRules.maxStoredErrors` per job; a line already kept is not kept twice.
    func addImportErrors(tenant: String, id: String, _ errors: [ImportLineError]) async throws
    /// A job's rejected lines after `afterLine`, in line order.
    func importErrors(tenant: String, id: String, afterLine: Int64?, limit: Int) async throws -> (errors: [ImportLineError], hasMore: Bool)
    /// The unfinished jobs a replica runs, so that it resumes them after a restart.
    func unfinishedImports(replicaID: String) async throws -> [ImportJob]
    /// Fails the unfinished jobs whose replica has not reported since `silentSinceMs`; returns how many.
    func failSilentImports(silentSinceMs: Int64, nowMs: Int64) async throws -> Int
    /// Drops jobs finished before `cutoffMs`, with their errors; returns how many jobs.
    func purgeImports(finishedBefore cutoffMs: Int64) async throws -> Int
}

/// What storing a new import job did.
enum ImportCreation: Sendable, Equatable {
    case created(ImportJob)
    /// The tenant's job with this idempotency key.
    case existing(ImportJob)
    /// Another job has this id.
    case idTaken
}

/// The tables of import jobs, the same on both backends.
enum ImportSchema {
    static let statements = [
        """
        CREATE TABLE import_jobs (
            tenant TEXT NOT NULL,
            id TEXT NOT NULL,
            job TEXT NOT NULL,
            status TEXT NOT NULL,
            replica_id TEXT NOT NULL,
            idempotency_key TEXT,
            updated_ms BIGINT NOT NULL,
            finished_ms BIGINT,
            PRIMARY KEY (tenant, id)
        )
        """,
        "CREATE UNIQUE INDEX import_jobs_key ON import_jobs (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL",
        "CREATE INDEX import_jobs_unfinished ON import_jobs (replica_id) WHERE finished_ms IS NULL",
        "CREATE INDEX import_jobs_finished ON import_jobs (finished_ms) WHERE finished_ms IS NOT NULL",
        """
        CREATE TABLE import_errors (
            tenant TEXT NOT NULL,
            job_id TEXT NOT NULL,
            line BIGINT NOT NULL,
            code TEXT NOT NULL,
            param TEXT,
            error TEXT NOT NULL,
            PRIMARY KEY (tenant, job_id, line)
        )
        """,
    ]

    static func encode(_ job: ImportJob) throws -> String { String(decoding: try JSONCoding.encoder.encode(job), as: UTF8.self) }
    static func decode(_ text: String) throws -> ImportJob { try JSONCoding.decoder.decode(ImportJob.self, from: Data(text.utf8)) }

    /// What a job's silence means, stated in the job.
    static func silenceError(_ job: ImportJob) -> String {
        "The replica running this import (\(job.replicaID)) stopped reporting; \(job.written) lines were written before it did. "
            + "Import the file again with mode=upsert to finish it."
    }
}
