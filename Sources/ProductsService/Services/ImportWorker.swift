import Foundation
import HTTPTypes
import Logging
import NIOCore
import ServiceLifecycle
import Shared
import Synchronization
import SystemPackage

/// Runs the import jobs uploaded to this replica, from their files in the data directory.
///
/// A job is checked in full first (every line, its errors reported to the Database Service), then its valid
/// lines are written in batches through the Database Service's batch endpoint, like the persistence worker's, so
/// they reach the change log (and so every replica's cache, the feed, events and webhooks) in its transactions;
/// this replica's cache takes each confirmed batch at once. Where writing stands is kept beside the file, so a
/// job resumes after a restart from its last confirmed batch; resent operations carry the same ids and versions,
/// so the Database Service finds them stale and nothing is written twice.
///
/// Bounds: at most `maxRunning` jobs run at once, one per tenant, so a large import cannot hold up another
/// shop's; at most `maxUnfinished` jobs (`maxUnfinishedPerTenant` per tenant) wait or run on a replica, each file
/// at most `ImportRules.maxBodyBytes`.
final class ImportWorker: Service, Sendable {
    let replica: Replica
    /// Where the jobs' files are: `<data>/imports`.
    let directory: String
    let replicaID: String
    let retryMaxDelay: Duration
    let logger: Logger
    private let queue = Mutex(Queue())
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation

    static let maxRunning = 2
    static let maxUnfinished = 8
    static let maxUnfinishedPerTenant = 2
    /// How often a running job reports its progress.
    static let reportInterval: Duration = .milliseconds(500)

    /// The jobs of this replica: reserved at upload, waiting, running.
    private struct Queue {
        var unfinished: [String: Int] = [:]
        var pending: [ImportSpool.JobFile] = []
        var runningTenants: Set<String> = []
        /// Jobs queued or running, so that none is queued twice.
        var known: Set<String> = []
        /// Uploads under way: their directories are not yet jobs, and not leftovers either.
        var uploading: Set<String> = []

        var unfinishedCount: Int { unfinished.values.reduce(0, +) }
    }

    init(replica: Replica, directory: String, replicaID: String, retryMaxDelay: Duration = .seconds(30), logger: Logger) {
        self.replica = replica
        self.directory = directory
        self.replicaID = replicaID
        self.retryMaxDelay = retryMaxDelay
        self.logger = logger
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    func spool(_ id: String) -> ImportSpool { ImportSpool(directory: directory + "/" + id) }

    private let ids = ProductIDGenerator(prefix: ImportJob.idPrefix)

    /// A new job's id.
    func newJobID() -> String { ids.next() }

    // MARK: Submission

    /// Holds a place for a tenant's new job, or refuses it (429) when this replica has too many unfinished.
    func reserve(tenant: String) throws(APIError) {
        try queue.withLock { queue throws(APIError) in
            guard queue.unfinishedCount < Self.maxUnfinished, queue.unfinished[tenant, default: 0] < Self.maxUnfinishedPerTenant else {
                throw APIError(
                    .tooManyRequests, code: "too_many_imports",
                    message: "Too many imports are waiting or running (at most \(Self.maxUnfinishedPerTenant) per shop and \(Self.maxUnfinished) per replica); retry when one has finished",
                    headers: [.retryAfter: "10"])
            }
            queue.unfinished[tenant, default: 0] += 1
        }
    }

    /// Gives back a place `reserve` held, for an upload that did not become a job.
    func release(tenant: String) {
        queue.withLock { queue in
            queue.unfinished[tenant, default: 1] -= 1
            if queue.unfinished[tenant] == 0 { queue.unfinished[tenant] = nil }
        }
    }

    /// Marks an upload under way (its directory is left alone at start) until `submit` or `release`.
    func beginUpload(_ id: String) {
        queue.withLock { _ = $0.uploading.insert(id) }
    }

    /// Gives back the place of an upload that did not become a job.
    func abandonUpload(_ id: String, tenant: String) {
        queue.withLock { _ = $0.uploading.remove(id) }
        release(tenant: tenant)
    }

    /// Queues a job whose place is reserved and whose files are durable.
    func submit(_ job: ImportSpool.JobFile) {
        queue.withLock { queue in
            queue.uploading.remove(job.id)
            guard queue.known.insert(job.id).inserted else { return }
            queue.pending.append(job)
        }
        wake.yield()
    }

    // MARK: Running

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.recover() }
                for await _ in self.wakeups {
                    while let job = self.nextEligible() {
                        group.addTask {
                            await self.runJob(job)
                            self.queue.withLock { queue in
                                queue.runningTenants.remove(job.tenant)
                                queue.known.remove(job.id)
                                queue.unfinished[job.tenant, default: 1] -= 1
                                if queue.unfinished[job.tenant] == 0 { queue.unfinished[job.tenant] = nil }
                            }
                            self.wake.yield()
                        }
                    }
                }
            }
        }
    }

    private func nextEligible() -> ImportSpool.JobFile? {
        queue.withLock { queue in
            guard queue.runningTenants.count < Self.maxRunning,
                  let index = queue.pending.firstIndex(where: { !queue.runningTenants.contains($0.tenant) })
            else { return nil }
            let job = queue.pending.remove(at: index)
            queue.runningTenants.insert(job.tenant)
            return job
        }
    }

    /// At start: queues the jobs whose files are here, removes uploads never answered, and fails the jobs the
    /// Database Service says this replica runs but whose files are gone.
    private func recover() async {
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var local = Set<String>()
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory).sorted()) ?? [] {
            let spool = spool(name)
            let job = spool.loadJob()
            let queued = queue.withLock { queue -> Bool in
                if queue.uploading.contains(name) { return true }
                guard let job, !queue.known.contains(job.id) else { return job != nil }
                queue.unfinished[job.tenant, default: 0] += 1
                return false
            }
            if let job { local.insert(job.id) }
            if queued { continue }
            guard let job else {
                spool.remove()
                continue
            }
            submit(job)
        }
        if !local.isEmpty { logger.notice("resuming import jobs", metadata: ["jobs": "\(local.count)"]) }
        let unfinished = await retrying("listing this replica's unfinished imports") { () async throws -> [ImportJob] in
            let jobs: [ImportJob]? = try await self.call(
                .get, .importJobs(replicaID: self.replicaID), tenant: defaultTenant)
            return jobs ?? []
        }
        for job in unfinished ?? [] where !local.contains(job.id) {
            logger.error("an import job's file is gone from this replica; failing it", metadata: ["import_id": "\(job.id)", "tenant": "\(job.tenant)"])
            _ = await report(
                job.id, tenant: job.tenant,
                ImportProgress(
                    status: .failed, error: "This replica lost the import's file (its data directory was replaced); "
                        + "\(job.written) lines had been written. Import the file again with mode=upsert to finish it.",
                    finishedAt: Timestamp.now()))
        }
    }

    /// Runs one job to its end, or until shutdown (it resumes at the next start).
    private func runJob(_ file: ImportSpool.JobFile) async {
        let spool = spool(file.id)
        var logger = logger
        logger[metadataKey: "import_id"] = "\(file.id)"
        logger[metadataKey: "tenant"] = "\(file.tenant)"
        let state = spool.loadState()
        let started = await report(
            file.id, tenant: file.tenant, ImportProgress(status: .running, phase: state == nil ? .validating : .writing, startedAt: Timestamp.now()))
        guard let started else {
            // Shutdown, or the Database Service no longer has the job: nothing to run it for.
            if !Task.isCancelled {
                logger.error("the Database Service has no record of this import; removing its files")
                spool.remove()
            }
            return
        }
        guard !started.status.isFinished else {
            logger.notice("import job already finished; removing its files", metadata: ["status": "\(started.status.rawValue)"])
            spool.remove()
            return
        }
        do {
            var resumeAt = state
            var failures = 0
            while true {
                do {
                    var run = ImportRun(worker: self, file: file, spool: spool, logger: logger)
                    // Not finished and not shutting down: the job was finished elsewhere, or is gone.
                    if try await run.execute(resumingAt: resumeAt) || !Task.isCancelled { spool.remove() }
                    break
                } catch where Self.isFileSystemFault(error) && !Task.isCancelled {
                    // A full or failing disk lasts as long as it lasts: the job waits and goes on from its last
                    // saved state (a batch sent again is found stale), rather than failing.
                    failures += 1
                    if failures == 1 || failures % 20 == 0 {
                        logger.warning("import job cannot use its files; retrying", metadata: ["error": "\(error)", "attempt": "\(failures)"])
                    }
                    await RetryPolicy(base: .milliseconds(500), cap: .seconds(10)).wait(afterFailures: failures)
                    resumeAt = spool.loadState()
                }
            }
        } catch {
            if Task.isCancelled { return }
            logger.error("import job failed", metadata: ["error": "\(error)"])
            let failed = await report(
                file.id, tenant: file.tenant, ImportProgress(status: .failed, error: "The import stopped: \(error)", finishedAt: Timestamp.now()))
            if failed != nil { spool.remove() }
        }
    }

    /// Whether `error` came from the file system (no space, an I/O error) rather than from the job's content.
    static func isFileSystemFault(_ error: any Error) -> Bool {
        if error is Errno { return true }
        if let error = error as? CocoaError { return error.isFileError }
        return error is POSIXError
    }

    // MARK: The Database Service

    /// Sends a report of a job; retried until the Database Service takes it (nil only at shutdown or if the job is gone).
    func report(_ id: String, tenant: String, _ progress: ImportProgress) async -> ImportJob? {
        await retrying("reporting an import's progress") { () async throws -> ImportJob? in
            try await self.call(.patch, .importJob(id: id), tenant: tenant, body: progress)
        } ?? nil
    }

    /// Calls the Database Service's import routes: the decoded answer, nil for a 404; other errors throw.
    func call<Answer: Decodable>(
        _ method: HTTPRequest.Method, _ route: DatabaseRoute, tenant: String, body: (some Encodable)? = nil as Int?
    ) async throws -> Answer? {
        let bytes = try body.map { try JSONCoding.encode($0) }
        let answer = try await replica.database.forward(method, route, tenant: tenant, body: bytes)
        if answer.status == 404 { return nil }
        guard (200..<300).contains(answer.status) else {
            throw DatabaseClientError.rejected(status: answer.status, body: try? JSONCoding.decoder.decode(APIError.Body.self, from: Data(buffer: answer.body)))
        }
        if Answer.self == Empty.self { return Empty() as? Answer }
        return try JSONCoding.decoder.decode(Answer.self, from: Data(buffer: answer.body))
    }

    /// An answer with nothing to read.
    struct Empty: Decodable {}

    /// Runs `body` until it succeeds, backing off between tries; nil when cancelled (shutdown), or on a 4xx.
    func retrying<T: Sendable>(_ what: String, _ body: () async throws -> T) async -> T? {
        var failures = 0
        while !Task.isCancelled {
            do {
                return try await body()
            } catch let error as DatabaseClientError where error.isClientError {
                logger.error("the Database Service refused an import call", metadata: ["call": "\(what)", "error": "\(error)"])
                return nil
            } catch {
                if Task.isCancelled { return nil }
                failures += 1
                if failures == 1 || failures % 20 == 0 {
                    logger.warning("import call failed; retrying", metadata: ["call": "\(what)", "attempt": "\(failures)", "error": "\(error)"])
                }
                await RetryPolicy(base: .milliseconds(200), cap: retryMaxDelay).wait(afterFailures: failures)
            }
        }
        return nil
    }
}
