import Foundation
import HTTPTypes
import Logging
import NIOCore
import ServiceLifecycle
import Shared
import Synchronization
import SystemPackage

/// One run of a job: checking every line, then writing the valid ones.
struct ImportRun {
    let worker: ImportWorker
    let file: ImportSpool.JobFile
    let spool: ImportSpool
    let logger: Logger
    var counts = ImportSpool.WriteState()
    var errors: [ImportLineError] = []
    var errorsSent = 0
    var lastReport = ContinuousClock.now

    init(worker: ImportWorker, file: ImportSpool.JobFile, spool: ImportSpool, logger: Logger) {
        self.worker = worker
        self.file = file
        self.spool = spool
        self.logger = logger
    }

    /// Runs the job; returns whether it finished (else it was stopped by shutdown and resumes at the next start).
    mutating func execute(resumingAt state: ImportSpool.WriteState?) async throws -> Bool {
        let started = ContinuousClock.now
        if let state {
            counts = state
        } else {
            guard try await validate() else { return false }
            if counts.rejected > 0, file.errorPolicy == .rejectAll {
                return try await finish(
                    .failed, error: "\(counts.rejected) of \(file.lines) lines are invalid; nothing was written (error_policy=reject_all)")
            }
            try spool.saveState(counts)
            guard await report(ImportProgress(phase: .writing, validated: counts.validated, rejected: counts.rejected), force: true) else {
                return false
            }
        }
        guard try await write() else { return false }
        let status: ImportJob.Status = counts.rejected == 0 ? .succeeded : counts.written > 0 ? .partiallySucceeded : .failed
        let finished = try await finish(status, error: status == .failed ? "No line was valid" : nil)
        logger.info(
            "import job finished",
            metadata: [
                "status": "\(status.rawValue)", "lines": "\(file.lines)", "written": "\(counts.written)", "rejected": "\(counts.rejected)",
                "seconds": "\((ContinuousClock.now - started).seconds)",
            ])
        return finished
    }

    // MARK: Checking

    /// A line read and checked, before the write it makes is built.
    private enum CheckedLine {
        case blank
        case invalid(APIError)
        case create(ProductInput)
        case upsert(id: String, ProductInput, createdAt: String?)
    }

    /// Checks every line, writing the operations of the valid ones; false when stopped by shutdown.
    private mutating func validate() async throws -> Bool {
        let temporary = spool.operations + ".tmp"
        _ = unlink(temporary)
        // Each megabyte is synced as it is appended: the file is renamed into place, durable, when checking ends.
        let output = try AppendOnlyFile(path: temporary)
        defer { output.close() }
        var buffer = ByteBuffer()
        buffer.reserveCapacity(2 << 20)
        func emit(_ number: Int64, _ operation: WriteOperation) throws {
            buffer.writeString(String(number))
            buffer.writeInteger(UInt8(ascii: " "))
            operation.writeJSON(into: &buffer)
            buffer.writeInteger(UInt8(ascii: "\n"))
            if buffer.readableBytes >= 1 << 20 {
                try output.append(buffer)
                buffer.clear()
            }
        }
        // Upserted lines whose product only the Database Service can say exists (its shop is not held whole by
        // this replica): asked for 100 at a time, so their creation times are kept.
        var awaiting: [(number: Int64, product: Product)] = []
        let (replica, tenant) = (worker.replica, file.tenant)
        func resolveAwaiting() async throws -> Bool {
            guard !awaiting.isEmpty else { return true }
            let ids = awaiting.map(\.product.id)
            guard let stored = await worker.retrying("reading replaced products", { try await Self.storedCreatedAt(replica, tenant: tenant, ids: ids) })
            else { return false }
            for (number, product) in awaiting {
                var product = product
                if let createdAt = stored[product.id] { product.createdAt = createdAt }
                try emit(number, .upsert(tenant: tenant, product: product))
            }
            awaiting.removeAll(keepingCapacity: true)
            return true
        }

        counts = ImportSpool.WriteState()
        let reader = try LineFileReader(path: spool.input)
        let mode = file.mode
        while let checked = try reader.next({ _, line in Self.check(line, mode: mode) }) {
            if Task.isCancelled { return false }
            let number = reader.lineNumber
            let now = Timestamp.now()
            switch checked {
            case .blank:
                continue
            case .invalid(let error):
                reject(line: number, error)
            case .create(let input):
                var product = input.applied(to: Product(id: replica.ids.next(), createdAt: now, updatedAt: now, version: 1))
                do throws(APIError) { try replica.completeImported(&product, tenant: tenant) } catch {
                    reject(line: number, error)
                    break
                }
                try emit(number, .upsert(tenant: tenant, product: product))
            case .upsert(let id, let input, let createdAt):
                var product = input.applied(to: Product(
                    id: id, createdAt: createdAt ?? now, updatedAt: now, version: try await version()))
                do throws(APIError) { try replica.completeImported(&product, tenant: tenant) } catch {
                    reject(line: number, error)
                    break
                }
                if createdAt != nil {
                    try emit(number, .upsert(tenant: tenant, product: product))
                } else if let known = Self.cachedCreatedAt(replica, tenant: tenant, id: id) {
                    var product = product
                    if let known { product.createdAt = known }
                    try emit(number, .upsert(tenant: tenant, product: product))
                } else {
                    awaiting.append((number, product))
                    if awaiting.count == ProductQuery.maxIDs { guard try await resolveAwaiting() else { return false } }
                }
            }
            counts.validated += 1
            guard await report(ImportProgress(validated: counts.validated, rejected: counts.rejected)) else { return false }
        }
        guard try await resolveAwaiting() else { return false }
        try output.append(buffer)
        guard rename(temporary, spool.operations) == 0 else { throw Errno(rawValue: errno) }
        return await report(ImportProgress(validated: counts.validated, rejected: counts.rejected), force: true)
    }

    /// The version of an upserted line: the catalog's clock, once this replica has its writer number.
    private func version() async throws -> Int64 {
        while true {
            do {
                // Newer than every version made before now, by any replica.
                return try worker.replica.nextVersion(after: 0)
            } catch {
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    /// Reads one line as `POST /products` reads a body (with `id` and the read-only fields, which are ignored but
    /// for `created_at`, when `mode` is upsert).
    private static func check(_ line: UnsafeRawBufferPointer, mode: ImportJob.Mode) -> CheckedLine {
        if line.isBlankLine { return .blank }
        do throws(APIError) {
            let json: JSONValue
            do {
                var parser = JSONParser(bytes: line)
                json = try parser.document()
            } catch {
                throw APIError.invalidJSON(error.description)
            }
            switch mode {
            case .create:
                return .create(try ProductInput(json: json))
            case .upsert:
                guard case .object(let fields) = json else { throw APIError.invalidBody("Each line must be a JSON object") }
                guard let given = fields["id"] else { throw APIError.missingParameter("id", "Each line needs the product's id with mode=upsert") }
                guard case .string(let id) = given, !id.isEmpty, id.unicodeScalars.count <= ProductRules.maxIDLength else {
                    throw APIError.invalidParameter("id", "id must be a string of 1 to \(ProductRules.maxIDLength) characters")
                }
                try ProductRules.checkNoNUL(id, param: "id")
                let input = try ProductInput(json: json, replacing: id)
                var createdAt: String?
                if let value = fields["created_at"] {
                    guard case .string(let text) = value, Timestamp.isValid(text) else {
                        throw APIError.invalidParameter("created_at", "created_at must be an RFC 3339 timestamp")
                    }
                    createdAt = text
                }
                return .upsert(id: id, input, createdAt: createdAt)
            }
        } catch {
            return .invalid(error)
        }
    }

    private mutating func reject(line: Int64, _ error: APIError) {
        counts.rejected += 1
        if errorsSent + errors.count < ImportRules.maxStoredErrors {
            errors.append(ImportLineError(line: line, code: error.code, param: error.param, error: error.message))
        }
    }

    // MARK: Writing

    /// Batches sent before the first is answered: the round trips overlap, as the Database Service's writer and
    /// this replica's work on answers do. Order among them does not matter: a product's newer line has the higher
    /// version, which the Database Service keeps whichever batch lands first.
    static let batchesInFlight = 3

    /// One imported write as a batch carries it: its line, and the product as this replica caches it.
    private struct Imported {
        var line: Int64
        var tenant: String
        var product: CachedProduct
    }

    /// Sends the operations after the last confirmed one in batches; false when stopped by shutdown. Each
    /// operation's JSON goes into the batch as it was written while checking, and into the cache as it is.
    private mutating func write() async throws -> Bool {
        let reader = try LineFileReader(path: spool.operations)
        var skipped: Int64 = 0
        while skipped < counts.confirmed, try reader.next({ _, _ in () }) != nil { skipped += 1 }
        let (worker, database) = (worker, worker.replica.database)
        var window: [(writes: [Imported], sent: ContinuousClock.Instant, answer: Task<WriteBatchResult?, Never>)] = []
        defer { for batch in window { batch.answer.cancel() } }
        while true {
            while window.count < Self.batchesInFlight {
                var writes: [Imported] = []
                var body = ByteBuffer()
                body.reserveCapacity(1 << 20)
                body.writeStaticString("{\"operations\":[")
                while writes.count < ServiceContract.maxBatchOperations, body.readableBytes < ServiceContract.maxBatchBodySize / 4,
                      let imported = try reader.next({ _, text in try Self.operation(text, appendingTo: &body, first: writes.isEmpty) })
                {
                    writes.append(imported)
                }
                guard !writes.isEmpty else { break }
                body.writeStaticString("]}")
                let (batch, count) = (body, writes.count)
                let sent = ContinuousClock.now
                let answer = Task {
                    await worker.retrying("writing imported products") { try await database.apply(json: batch, count: count) }
                }
                window.append((writes, sent, answer))
            }
            guard !window.isEmpty else { return true }
            let (writes, sent, answer) = window.removeFirst()
            let result = await withTaskCancellationHandler { await answer.value } onCancel: { answer.cancel() }
            guard let result else {
                if Task.isCancelled { return false }
                throw ImportRunError.refused
            }
            var applied: [(tenant: String, product: CachedProduct)] = []
            for (index, outcome) in result.results.enumerated() where index < writes.count {
                switch outcome.outcome {
                case .applied:
                    counts.written += 1
                    applied.append((writes[index].tenant, writes[index].product))
                case .stale:
                    // Written before a restart, or replaced since by a newer write: either way the line is in.
                    counts.written += 1
                case .rejected:
                    reject(
                        line: writes[index].line,
                        APIError(.badRequest, code: "rejected", message: outcome.error ?? "rejected by the Database Service"))
                }
            }
            Self.applyImported(applied, sent: sent, to: worker.replica)
            counts.confirmed += Int64(writes.count)
            try spool.saveState(counts)
            guard await report(ImportProgress(written: counts.written, rejected: counts.rejected)) else { return false }
        }
    }

    /// Reads an operations line, `<line number> <operation JSON>`, appending the operation to a batch's body.
    private static func operation(_ text: UnsafeRawBufferPointer, appendingTo body: inout ByteBuffer, first: Bool) throws -> Imported {
        guard let space = text.firstIndex(of: UInt8(ascii: " ")),
              let line = Int64(String(decoding: UnsafeRawBufferPointer(rebasing: text[..<space]), as: UTF8.self))
        else { throw ImportRunError.corrupt }
        let json = UnsafeRawBufferPointer(rebasing: text[(space + 1)...])
        var parser = JSONParser(bytes: json)
        var tenant: String?
        var product: CachedProduct?
        try parser.members { parser, key throws(JSONSyntaxError) in
            switch key {
            case "tenant": tenant = try parser.string(param: "tenant")
            case "product": product = try CachedProduct(parsing: &parser, in: json, param: "product")
            default: _ = try parser.skipValue()
            }
        }
        guard let tenant, let product else { throw ImportRunError.corrupt }
        if !first { body.writeInteger(UInt8(ascii: ",")) }
        body.writeBytes(json)
        return Imported(line: line, tenant: tenant, product: product)
    }

    // MARK: Reports

    /// Reports progress (with the errors gathered) at most every `reportInterval` unless `force`; false at shutdown.
    private mutating func report(_ progress: ImportProgress, force: Bool = false) async -> Bool {
        guard force || ContinuousClock.now - lastReport >= ImportWorker.reportInterval else { return true }
        lastReport = .now
        if !errors.isEmpty {
            let batch = ImportsErrorBatch(errors: errors)
            let route = DatabaseRoute.importErrors(id: file.id, query: nil)
            let (worker, tenant) = (worker, file.tenant)
            let sent: Bool? = await worker.retrying("reporting an import's errors") {
                let _: ImportWorker.Empty? = try await worker.call(.post, route, tenant: tenant, body: batch)
                return true
            }
            guard sent != nil else { return false }
            errorsSent += errors.count
            errors.removeAll()
        }
        guard let job = await worker.report(file.id, tenant: file.tenant, progress) else { return false }
        // Failed meanwhile (its replica was silent too long): stop; the job says what was written.
        if job.status.isFinished, progress.status == nil {
            logger.warning("import job was finished elsewhere; stopping", metadata: ["status": "\(job.status.rawValue)"])
            spool.remove()
            return false
        }
        return true
    }

    /// Reports the end; true once the Database Service has it.
    private mutating func finish(_ status: ImportJob.Status, error: String?) async throws -> Bool {
        await report(
            ImportProgress(
                status: status, validated: counts.validated, written: counts.written, rejected: counts.rejected, error: error,
                finishedAt: Timestamp.now()),
            force: true)
    }
}

/// `POST /api/imports/{id}/errors`'s body.
struct ImportsErrorBatch: Encodable, Sendable {
    var errors: [ImportLineError]
}

enum ImportRunError: Error, CustomStringConvertible {
    case refused
    case corrupt

    var description: String {
        switch self {
        case .refused: "the Database Service refused a batch of imported products"
        case .corrupt: "the job's operations file is unreadable"
        }
    }
}

/// What an import reads of the replica and gives it, beyond its writes.
extension ImportRun {
    /// The creation time of a product an import replaces, as far as this replica knows: `.some(nil)` when the
    /// product does not exist, nil when only the Database Service can say (the shop is not held whole here).
    static func cachedCreatedAt(_ replica: Replica, tenant: String, id: String) -> String?? {
        if let cached = replica.cache.get(tenant: tenant, id: id) { return .some(cached.product.createdAt) }
        if replica.isAuthoritative(tenant: tenant) || replica.cache.isVisiblyDeleted(tenant: tenant, id: id) { return .some(nil) }
        return nil
    }

    /// The creation times of those of `ids` (at most `ProductQuery.maxIDs`) the Database Service holds, in one listing.
    static func storedCreatedAt(_ replica: Replica, tenant: String, ids: [String]) async throws -> [String: String] {
        var query = ProductQuery(limit: ProductQuery.maxIDs)
        query.ids = Array(Set(ids)).sorted()
        let page = try await replica.database.listProducts(tenant: tenant, query: query)
        return Dictionary(page.products.map { ($0.id, $0.createdAt) }, uniquingKeysWith: { first, _ in first })
    }

    /// Imported writes the Database Service stored, from a batch sent at `sent`: this replica's cache has them at
    /// once (others through the feed).
    static func applyImported(_ products: [(tenant: String, product: CachedProduct)], sent: ContinuousClock.Instant, to replica: Replica) {
        for (tenant, product) in products {
            replica.cache.apply(.fetched(id: product.id, .stored(product), since: sent), tenant: tenant)
        }
    }
}
