import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Shared

/// `/api/imports`: import jobs' state, reported by the replica running each and read by any replica.
struct ImportsController<Context: RequestContext> {
    let store: any ImportStore

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .post(use: create)
            .get(use: unfinished)
            .get("{id}", use: show)
            .patch("{id}", use: update)
            .post("{id}/errors", use: addErrors)
            .get("{id}/errors", use: errors)
    }

    /// A batch of rejected lines, as a replica reports them.
    struct ErrorBatch: Codable {
        var errors: [ImportLineError]
    }

    /// POST /api/imports: stores a new job (201), or answers the job already stored under its idempotency key (200).
    @Sendable func create(_ request: Request, context: Context) async throws -> Response {
        var job = try await request.decodeJSON(as: ImportJob.self)
        job.tenant = try request.tenant()
        guard ImportJob.isValidID(job.id) else { throw APIError.invalidParameter("id", "not an import job id") }
        guard (1...Int64(ImportRules.maxLines)).contains(job.lines) else {
            throw APIError.invalidParameter("lines", "an import holds 1 to \(ImportRules.maxLines) lines")
        }
        guard job.status == .queued else { throw APIError.invalidParameter("status", "a new job is queued") }
        guard !job.replicaID.isEmpty else { throw APIError.invalidParameter("replica_id", "replica_id is required") }
        // PostgreSQL's text cannot hold U+0000.
        for (name, value) in [("replica_id", job.replicaID), ("idempotency_key", job.idempotencyKey), ("fingerprint", job.fingerprint)] {
            if let value { try ProductRules.checkNoNUL(value, param: name) }
        }
        guard Timestamp.isValid(job.createdAt) else { throw APIError.invalidParameter("created_at", "created_at must be an RFC 3339 timestamp") }
        // A new job: nothing done yet, whatever the body says.
        (job.phase, job.validated, job.written, job.rejected, job.error, job.startedAt, job.finishedAt) = (nil, 0, 0, 0, nil, nil, nil)
        job.updatedMs = Timestamp.nowMilliseconds()
        switch try await store.createImport(job) {
        case .created(let stored): return .json(stored, status: .created)
        case .existing(let stored): return .json(stored, status: .ok)
        case .idTaken: throw APIError(.conflict, code: "resource_exists", message: "An import job with this id exists", param: "id")
        }
    }

    /// GET /api/imports?replica_id=: the unfinished jobs a replica runs, across tenants.
    @Sendable func unfinished(_ request: Request, context: Context) async throws -> [ImportJob] {
        var replicaID: String?
        for (name, value) in try QueryString.parse(request.uri.query) {
            guard name == "replica_id" else { throw APIError.unknownParameter(name, in: "query") }
            try ProductRules.checkNoNUL(value, param: name)
            replicaID = value
        }
        guard let replicaID, !replicaID.isEmpty else { throw APIError.missingParameter("replica_id", "replica_id is required") }
        return try await store.unfinishedImports(replicaID: replicaID)
    }

    /// GET /api/imports/{id}: the job as stored.
    @Sendable func show(_ request: Request, context: Context) async throws -> ImportJob {
        guard let job = try await store.importJob(tenant: try request.tenant(), id: try Self.id(context)) else { throw Self.notFound }
        return job
    }

    /// PATCH /api/imports/{id}: a replica's report of its job; a finished job is answered unchanged.
    @Sendable func update(_ request: Request, context: Context) async throws -> ImportJob {
        let progress = try await request.decodeJSON(as: ImportProgress.self)
        if let error = progress.error { try ProductRules.checkNoNUL(error, param: "error") }
        for (name, time) in [("started_at", progress.startedAt), ("finished_at", progress.finishedAt)] {
            if let time, !Timestamp.isValid(time) { throw APIError.invalidParameter(name, "\(name) must be an RFC 3339 timestamp") }
        }
        for (name, count) in [("validated", progress.validated), ("written", progress.written), ("rejected", progress.rejected)] {
            if let count, count < 0 { throw APIError.invalidParameter(name, "\(name) must not be negative") }
        }
        guard let job = try await store.updateImport(tenant: try request.tenant(), id: try Self.id(context), progress) else { throw Self.notFound }
        return job
    }

    /// POST /api/imports/{id}/errors: keeps rejected lines (the first `ImportRules.maxStoredErrors` of a job).
    @Sendable func addErrors(_ request: Request, context: Context) async throws -> HTTPResponse.Status {
        let batch = try await request.decodeJSON(as: ErrorBatch.self, maxSize: ServiceContract.maxBatchBodySize)
        for (index, error) in batch.errors.enumerated() {
            guard error.line >= 1 else { throw APIError.invalidParameter("errors[\(index)][line]", "line numbers start at 1") }
            for (name, value) in [("code", error.code), ("param", error.param), ("error", error.error)] {
                if let value { try ProductRules.checkNoNUL(value, param: "errors[\(index)][\(name)]") }
            }
        }
        let tenant = try request.tenant()
        let id = try Self.id(context)
        guard try await store.importJob(tenant: tenant, id: id) != nil else { throw Self.notFound }
        try await store.addImportErrors(tenant: tenant, id: id, batch.errors)
        return .noContent
    }

    /// GET /api/imports/{id}/errors?starting_after=&limit=: a bare JSON array in line order; `Page-Has-More` and
    /// `Page-Last-Line` say where the next page starts.
    @Sendable func errors(_ request: Request, context: Context) async throws -> Response {
        let query = try ImportErrorQuery.parse(query: request.uri.query)
        let tenant = try request.tenant()
        let id = try Self.id(context)
        guard try await store.importJob(tenant: tenant, id: id) != nil else { throw Self.notFound }
        let page = try await store.importErrors(tenant: tenant, id: id, afterLine: query.startingAfter, limit: query.limit)
        var headers = HTTPFields()
        headers[HTTPField.Name(EventPageHeaders.hasMore)!] = page.hasMore ? "true" : "false"
        if let last = page.errors.last { headers[HTTPField.Name(ImportRules.lastLineHeader)!] = String(last.line) }
        return .json(page.errors, headers: headers)
    }

    static var notFound: APIError { APIError.notFound("Import job not found", param: "id") }

    static func id(_ context: Context) throws(APIError) -> String {
        guard let id = context.parameters.get("id"), ImportJob.isValidID(id) else { throw notFound }
        return id
    }
}

extension ImportJob: ResponseEncodable {}
