import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Shared

/// Gets this replica's writer number from the Database Service and keeps it in the data directory, so that
/// writes never wait for it after the first start; tells the Database Service every hour that it is still in use.
///
/// A replica that has never reached the Database Service stamps a provisional number, drawn at random and kept,
/// so that a single process takes writes from its first second as it always did; registration then grants that
/// number when it is free (it nearly always is) or assigns another. Until then two new replicas could draw the
/// same number, which matters only if both update one product before either reached the Database Service.
struct WriterRegistrar: Service {
    let replica: Replica
    let directory: String?
    /// This replica's id (`replicaIdentity(directory:)`).
    let replicaID: String
    let logger: Logger
    var refreshInterval: Duration = .seconds(3600)

    func run() async throws {
        try? await cancelWhenGracefulShutdown { () async throws in try await self.register() }
        try? await gracefulShutdown()
    }

    /// The number kept in `directory`, else a provisional one (kept there too); called before the server starts,
    /// so that no write ever waits for a number.
    static func initialNode(directory: String?) throws -> Int64 {
        let nodeFile = directory.map { $0 + "/writer-node" }
        if let nodeFile, let text = try? String(contentsOfFile: nodeFile, encoding: .utf8),
           let node = Int64(text.trimmingCharacters(in: .whitespacesAndNewlines)), Versions.writerRange.contains(node)
        {
            return node
        }
        let provisional = Int64.random(in: Versions.writerRange)
        try save(provisional, to: nodeFile)
        return provisional
    }

    private func register() async throws {
        let nodeFile = directory.map { $0 + "/writer-node" }
        var failures = 0
        while !Task.isCancelled {
            do {
                let node = try await replica.replication.registerWriter(replicaID: replicaID, preferred: replica.writerNode)
                guard Versions.writerRange.contains(node) else { throw DatabaseClientError.invalidResponse("writer number \(node)") }
                if replica.writerNode != node {
                    try Self.save(node, to: nodeFile)
                    replica.setWriterNode(node)
                }
                replica.writerConfirmed.store(true, ordering: .releasing)
                if failures > 0 || refreshInterval == .zero {
                    logger.info("writer number confirmed", metadata: ["writer": "\(node)", "replica_id": "\(replicaID)"])
                }
                failures = 0
                try await Task.sleep(for: refreshInterval)
            } catch {
                if Task.isCancelled { return }
                failures += 1
                if failures == 1 || failures % 20 == 0 {
                    logger.warning(
                        "confirming this replica's writer number failed; retrying",
                        metadata: ["attempt": "\(failures)", "writer": "\(replica.writerNode ?? -1)", "error": "\(error)"])
                }
                guard await RetryPolicy(base: .milliseconds(400), cap: .seconds(30)).wait(afterFailures: failures) else { return }
            }
        }
    }

    private static func save(_ node: Int64, to file: String?) throws {
        guard let file else { return }
        try DurableFile.replace(file, with: ByteBuffer(string: "\(node)\n"))
    }

    /// A random id made once per data directory (per process without one).
    static func replicaIdentity(directory: String?) throws -> String {
        guard let directory else { return "replica-" + UUID().uuidString.lowercased() }
        let path = directory + "/replica-id"
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            let id = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if !id.isEmpty { return id }
        }
        let id = "replica-" + UUID().uuidString.lowercased()
        try DurableFile.replace(path, with: ByteBuffer(string: id + "\n"))
        return id
    }
}
