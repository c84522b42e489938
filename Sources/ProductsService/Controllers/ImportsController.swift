import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Shared
import SystemPackage

/// `/imports`: bulk imports of products from JSON Lines, run in the background as jobs.
struct ImportsController<Context: TenantRequestContext> {
    let imports: ImportWorker
    let auth: AuthMiddleware<Context>

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .add(middleware: auth)
            .post(use: create)
            .get("{id}", use: show)
            .get("{id}/errors", use: errors)
    }

    /// The media types an upload may declare.
    static var mediaTypes: Set<String> { ["application/x-ndjson", "application/jsonl", "application/x-jsonlines"] }

    /// POST /imports?mode=&error_policy=: takes a JSON Lines file (streamed to disk, never held whole) and answers 202
    /// with the job, which runs in the background; honours `Idempotency-Key`.
    @Sendable func create(_ request: Request, context: Context) async throws -> Response {
        let contentType = request.headers[.contentType] ?? ""
        let mediaType = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        guard Self.mediaTypes.contains(mediaType) else {
            throw APIError(
                .unsupportedMediaType, code: "unsupported_media_type",
                message: "Content-Type must be application/x-ndjson (one product a line), got '\(contentType)'")
        }
        var mode = ImportJob.Mode.create
        var policy = ImportJob.ErrorPolicy.rejectAll
        var seen = Set<String>()
        for (name, value) in try QueryString.parse(request.uri.query) {
            guard seen.insert(name).inserted else { throw APIError.invalidParameter(name, "'\(name)' may be given only once") }
            switch name {
            case "mode":
                guard let given = ImportJob.Mode(rawValue: value) else { throw APIError.invalidParameter(name, "mode must be create or upsert") }
                mode = given
            case "error_policy":
                guard let given = ImportJob.ErrorPolicy(rawValue: value) else {
                    throw APIError.invalidParameter(name, "error_policy must be reject_all or skip_invalid")
                }
                policy = given
            default:
                throw APIError.unknownParameter(name, in: "query")
            }
        }
        let key = request.headers[.idempotencyKey]
        if let key, key.isEmpty || key.count > IdempotentRequest.maxKeyLength {
            throw APIError.invalidParameter("Idempotency-Key", "Idempotency-Key must be 1 to \(IdempotentRequest.maxKeyLength) characters")
        }
        let tenant = context.tenant
        try imports.reserve(tenant: tenant)
        let id = imports.newJobID()
        imports.beginUpload(id)
        let spool = imports.spool(id)
        var kept = false
        defer {
            if !kept {
                spool.remove()
                imports.abandonUpload(id, tenant: tenant)
            }
        }
        let upload = try Self.spooling {
            try FileManager.default.createDirectory(atPath: spool.directory, withIntermediateDirectories: true)
            return try ImportUploadWriter(path: spool.input)
        }
        do {
            for try await chunk in request.body { try upload.write(chunk) }
            try upload.finish()
        } catch let error as Errno {
            throw Self.spoolUnavailable(error)
        } catch let error as ImportUploadError {
            switch error {
            case .tooLarge: throw APIError.bodyTooLarge(limit: Int(ImportRules.maxBodyBytes))
            case .tooManyLines: throw APIError.invalidBody("An import holds at most \(ImportRules.maxLines) product lines")
            case .lineTooLong(let line):
                throw APIError(
                    .contentTooLarge, code: "body_too_large", message: "Line \(line) is longer than \(ImportRules.maxLineBytes) bytes")
            }
        }
        guard upload.productLines > 0 else { throw APIError.invalidBody("The file holds no product lines") }
        let fingerprint = "\(mode.rawValue)/\(policy.rawValue)/\(upload.bytes)/\(upload.fingerprint)"
        let job = ImportJob(
            id: id, tenant: tenant, mode: mode, errorPolicy: policy, lines: upload.productLines, replicaID: imports.replicaID,
            idempotencyKey: key, fingerprint: key == nil ? nil : fingerprint)
        let answer = try await Forwarding.send(
            imports.replica.database, .post, .importJobs(replicaID: nil), tenant: tenant, body: try JSONCoding.encode(job))
        guard answer.status == 200 || answer.status == 201 else { return try Forwarding.response(answer) }
        let stored = try JSONCoding.decoder.decode(ImportJob.self, from: Data(buffer: answer.body))
        var headers: HTTPFields = [.location: "/imports/\(stored.id)"]
        if answer.status == 200 {
            // The key was used before: the same file gets its job back, another file is refused.
            guard stored.fingerprint == fingerprint else { throw APIError.idempotencyKeyReused }
            headers[.idempotentReplayed] = "true"
            return .json(stored.publicView, status: .accepted, headers: headers)
        }
        let file = ImportSpool.JobFile(id: id, tenant: tenant, mode: mode, errorPolicy: policy, lines: upload.productLines)
        try Self.spooling { try spool.saveJob(file) }
        kept = true
        imports.submit(file)
        context.logger.info("import job accepted", metadata: ["import_id": "\(id)", "lines": "\(upload.productLines)", "bytes": "\(upload.bytes)"])
        return .json(stored.publicView, status: .accepted, headers: headers)
    }

    /// Runs a file-system step of spooling an upload; a failure (a full or failing disk) is a 503 the client can retry.
    private static func spooling<T>(_ step: () throws -> T) throws -> T {
        do {
            return try step()
        } catch {
            throw spoolUnavailable(error)
        }
    }

    private static func spoolUnavailable(_ error: any Error) -> APIError {
        .serviceUnavailable("import_spool_unavailable", "This replica cannot store the import file now (\(error)); try again later")
    }

    /// GET /imports/{id}: the job's status, counts, progress and times.
    @Sendable func show(_ request: Request, context: Context) async throws -> Response {
        let id = try Self.id(context)
        let answer = try await Forwarding.send(imports.replica.database, .get, .importJob(id: id), tenant: context.tenant, body: nil)
        guard answer.status == 200 else { return try Forwarding.response(answer) }
        let job = try JSONCoding.decoder.decode(ImportJob.self, from: Data(buffer: answer.body))
        return .json(job.publicView)
    }

    /// GET /imports/{id}/errors: the rejected lines, `{"line","code","param","error"}` each, in line order; paged
    /// with `limit` and `starting_after` (a line number), `Link` pointing to the next page.
    @Sendable func errors(_ request: Request, context: Context) async throws -> Response {
        let id = try Self.id(context)
        let query = try ImportErrorQuery.parse(query: request.uri.query)
        let answer = try await Forwarding.send(
            imports.replica.database, .get, .importErrors(id: id, query: query.queryString(startingAfter: query.startingAfter)),
            tenant: context.tenant, body: nil)
        var response = try Forwarding.response(answer)
        if answer.status == 200, answer.header(EventPageHeaders.hasMore) == "true",
           let last = answer.header(ImportRules.lastLineHeader).flatMap(Int64.init)
        {
            response.headers[.link] = ProductsController<Context>.link(hasMore: true, backwards: false, request: request) { _ in
                query.queryString(startingAfter: last)
            }
        }
        return response
    }

    static func id(_ context: Context) throws(APIError) -> String {
        guard let id = context.parameters.get("id"), ImportJob.isValidID(id) else {
            throw APIError.notFound("Import job not found", param: "id")
        }
        return id
    }
}
