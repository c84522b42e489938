import Foundation

/// A bulk import of products from JSON Lines (`POST /imports`): run by the replica that received the file, its state
/// kept by the Database Service, so any replica answers for it.
package struct ImportJob: Codable, Sendable, Equatable {
    /// `create` makes new products (ids assigned); `upsert` writes each line's `id`, creating or replacing it.
    package enum Mode: String, Codable, Sendable, CaseIterable { case create, upsert }
    /// `reject_all` writes nothing when any line is invalid; `skip_invalid` writes the valid lines.
    package enum ErrorPolicy: String, Codable, Sendable, CaseIterable {
        case rejectAll = "reject_all"
        case skipInvalid = "skip_invalid"
    }
    package enum Status: String, Codable, Sendable {
        case queued, running, succeeded, failed
        case partiallySucceeded = "partially_succeeded"

        package var isFinished: Bool { self != .queued && self != .running }
    }
    /// What a running job is doing: checking every line, then writing the valid ones.
    package enum Phase: String, Codable, Sendable { case validating, writing }

    package var id: String
    package var tenant: String
    package var mode: Mode
    package var errorPolicy: ErrorPolicy
    package var status: Status
    package var phase: Phase?
    /// Product lines in the file (blank lines are not counted).
    package var lines: Int64
    /// Lines checked so far; lines written (or found already written, when a job resumes); lines rejected.
    package var validated: Int64 = 0
    package var written: Int64 = 0
    package var rejected: Int64 = 0
    /// Why a job failed, when not for its lines' errors.
    package var error: String?
    package var createdAt: String
    package var startedAt: String?
    package var finishedAt: String?
    /// The replica running the job (it holds the file), and when it last reported (Unix ms).
    package var replicaID: String
    package var updatedMs: Int64
    package var idempotencyKey: String?
    package var fingerprint: String?

    package init(
        id: String, tenant: String, mode: Mode, errorPolicy: ErrorPolicy, lines: Int64, replicaID: String,
        idempotencyKey: String? = nil, fingerprint: String? = nil, createdAt: String = Timestamp.now()
    ) {
        self.id = id
        self.tenant = tenant
        self.mode = mode
        self.errorPolicy = errorPolicy
        status = .queued
        self.lines = lines
        self.replicaID = replicaID
        self.idempotencyKey = idempotencyKey
        self.fingerprint = fingerprint
        self.createdAt = createdAt
        updatedMs = Timestamp.nowMilliseconds()
    }

    enum CodingKeys: String, CodingKey {
        case id, tenant, mode, status, phase, lines, validated, written, rejected, error, fingerprint
        case errorPolicy = "error_policy"
        case createdAt = "created_at"
        case startedAt = "started_at"
        case finishedAt = "finished_at"
        case replicaID = "replica_id"
        case updatedMs = "updated_ms"
        case idempotencyKey = "idempotency_key"
    }

    /// Done, from 0 to 1: checking counts for the first half, writing for the second.
    package var progress: Double {
        if status.isFinished { return 1 }
        guard lines > 0 else { return 0 }
        let toWrite = max(1, lines - rejected)
        let fraction = 0.5 * Double(validated) / Double(lines) + 0.5 * Double(written) / Double(toWrite)
        return (min(1, fraction) * 1000).rounded() / 1000
    }

    /// The job as clients see it: without the replica, the key's fingerprint or the tenant.
    package var publicView: PublicView { PublicView(self) }

    /// `GET /imports/{id}`'s body.
    package struct PublicView: Encodable, Sendable {
        let job: ImportJob

        init(_ job: ImportJob) { self.job = job }

        enum CodingKeys: String, CodingKey {
            case id, object, status, phase, mode, lines, validated, written, rejected, progress, error
            case errorPolicy = "error_policy"
            case createdAt = "created_at"
            case startedAt = "started_at"
            case finishedAt = "finished_at"
        }

        package func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(job.id, forKey: .id)
            try container.encode("import", forKey: .object)
            try container.encode(job.status, forKey: .status)
            try container.encode(job.phase, forKey: .phase)
            try container.encode(job.mode, forKey: .mode)
            try container.encode(job.errorPolicy, forKey: .errorPolicy)
            try container.encode(job.lines, forKey: .lines)
            try container.encode(job.validated, forKey: .validated)
            try container.encode(job.written, forKey: .written)
            try container.encode(job.rejected, forKey: .rejected)
            try container.encode(job.progress, forKey: .progress)
            try container.encode(job.error, forKey: .error)
            try container.encode(job.createdAt, forKey: .createdAt)
            try container.encode(job.startedAt, forKey: .startedAt)
            try container.encode(job.finishedAt, forKey: .finishedAt)
        }
    }

    package static let idPrefix = "imp_"

    /// Whether `id` could name a job (checked before asking the Database Service): `imp_` and letters or digits.
    package static func isValidID(_ id: String) -> Bool {
        id.hasPrefix(idPrefix) && id.utf8.count <= 64 && id.utf8.count > idPrefix.utf8.count
            && id.utf8.dropFirst(idPrefix.utf8.count).allSatisfy { (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }
    }
}

/// A line an import rejected, as `GET /imports/{id}/errors` lists it.
package struct ImportLineError: Codable, Sendable, Equatable {
    /// The line's number in the file, from 1.
    package var line: Int64
    package var code: String
    package var param: String?
    package var error: String

    /// U+0000 (which a rejected line's member name can hold, and PostgreSQL's text cannot) becomes U+FFFD.
    package init(line: Int64, code: String, param: String?, error: String) {
        self.line = line
        self.code = Self.storable(code)
        self.param = param.map(Self.storable)
        self.error = Self.storable(error)
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            line: try container.decode(Int64.self, forKey: .line), code: try container.decode(String.self, forKey: .code),
            param: try container.decodeIfPresent(String.self, forKey: .param), error: try container.decode(String.self, forKey: .error))
    }

    private static func storable(_ text: String) -> String {
        text.utf8.contains(0) ? text.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}") : text
    }
}

/// What a replica reports of a job it runs (`PATCH /api/imports/{id}`): only the fields given change.
package struct ImportProgress: Codable, Sendable, Equatable {
    package var status: ImportJob.Status?
    package var phase: ImportJob.Phase?
    package var validated: Int64?
    package var written: Int64?
    package var rejected: Int64?
    package var error: String?
    package var startedAt: String?
    package var finishedAt: String?

    package init(
        status: ImportJob.Status? = nil, phase: ImportJob.Phase? = nil, validated: Int64? = nil, written: Int64? = nil,
        rejected: Int64? = nil, error: String? = nil, startedAt: String? = nil, finishedAt: String? = nil
    ) {
        self.status = status
        self.phase = phase
        self.validated = validated
        self.written = written
        self.rejected = rejected
        self.error = error
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }

    enum CodingKeys: String, CodingKey {
        case status, phase, validated, written, rejected, error
        case startedAt = "started_at"
        case finishedAt = "finished_at"
    }

    /// The job with these fields applied.
    package func applied(to job: ImportJob, nowMs: Int64) -> ImportJob {
        var job = job
        if let status { job.status = status }
        if let phase { job.phase = phase }
        if let validated { job.validated = validated }
        if let written { job.written = written }
        if let rejected { job.rejected = rejected }
        if let error { job.error = error }
        // A job resumed after a restart keeps the time it first started.
        if let startedAt, job.startedAt == nil { job.startedAt = startedAt }
        if let finishedAt { job.finishedAt = finishedAt }
        if job.status.isFinished { job.phase = nil }
        job.updatedMs = nowMs
        return job
    }
}

/// The limits of imports, both services agree on.
package enum ImportRules {
    /// The most product lines one file may hold.
    package static let maxLines = 1_000_000
    /// The largest file: a million products of about a kilobyte each, with room to spare.
    package static let maxBodyBytes: Int64 = 2 * 1024 * 1024 * 1024
    /// The longest line: a product's body as `POST /products` takes it.
    package static let maxLineBytes = ProductRules.maxBodyBytes
    /// The rejected lines kept per job (the first ones); `rejected` counts them all.
    package static let maxStoredErrors = 10_000
    /// Errors listed per page: `limit` 1 to 1,000, 100 by default.
    package static let errorLimitRange = 1...1000
    package static let defaultErrorLimit = 100
    /// A job whose replica has not reported for this long is failed by the Database Service.
    package static let silenceBeforeFailingMs: Int64 = 15 * 60 * 1000
    /// The Database Service's error page header: the last line listed, when more follow.
    package static let lastLineHeader = "Page-Last-Line"
}

/// `GET /imports/{id}/errors`'s `limit` and `starting_after` (a line number).
package struct ImportErrorQuery: Sendable, Equatable {
    package var limit = ImportRules.defaultErrorLimit
    package var startingAfter: Int64?

    package init(limit: Int = ImportRules.defaultErrorLimit, startingAfter: Int64? = nil) {
        self.limit = limit
        self.startingAfter = startingAfter
    }

    /// Parses a raw query string; unknown, repeated or invalid parameters are 400s naming the parameter.
    package static func parse(query: String?) throws(APIError) -> ImportErrorQuery {
        let (limit, startingAfter) = try NumberedPage.parse(query: query, limits: ImportRules.errorLimitRange, cursor: "a line number")
        return ImportErrorQuery(limit: limit ?? ImportRules.defaultErrorLimit, startingAfter: startingAfter)
    }

    /// The query string of this listing with `startingAfter` in place of its own.
    package func queryString(startingAfter: Int64?) -> String {
        NumberedPage.queryString(limit: limit, startingAfter: startingAfter)
    }
}
