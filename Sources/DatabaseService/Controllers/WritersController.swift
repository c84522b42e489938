import Hummingbird
import Shared

/// `/api/writers`: hands each Products Service replica its writer number, which it stamps on the versions it makes,
/// and keeps what each replica reports of its unconfirmed writes.
struct WritersController<Context: RequestContext> {
    let store: any KeyStore

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .post(use: register)
            .put(":node/backlog", use: reportBacklog)
            .get("backlogs", use: backlogs)
    }

    /// POST /api/writers `{"replica_id", "preferred"?}`: the replica's number, the same for the same id every
    /// time (and recorded as seen), `preferred` on first call when free; 503 `writers_exhausted` when all 1023
    /// are held by replicas seen within 30 days.
    @Sendable func register(_ request: Request, context: Context) async throws -> WriterRegistration {
        let body = try await request.decodeJSON(as: WriterRequest.self, allowedFields: ["replica_id", "preferred"])
        let id = body.replicaID
        let allowed = UInt8(ascii: "a")...UInt8(ascii: "z")
        guard (1...128).contains(id.utf8.count), id.utf8.allSatisfy({
            allowed.contains($0 | 0x20) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_")
        }) else {
            throw APIError.invalidParameter("replica_id", "replica_id must be 1 to 128 ASCII letters, digits, '-' or '_'")
        }
        if let preferred = body.preferred, !Versions.writerRange.contains(preferred) {
            throw APIError.invalidParameter("preferred", "preferred must be 1 to 1023")
        }
        guard let node = try await store.writerNode(replicaID: id, preferred: body.preferred) else {
            throw APIError.serviceUnavailable("writers_exhausted", "Every writer number is held by a replica seen within 30 days")
        }
        return WriterRegistration(node: node)
    }

    /// PUT /api/writers/{node}/backlog `{"clear_through_ms"}`: a replica's report of its unconfirmed writes (see
    /// `BacklogReport`), replacing its last; 204.
    @Sendable func reportBacklog(_ request: Request, context: Context) async throws -> HTTPResponse.Status {
        guard let node = context.parameters.get("node").flatMap({ Int64($0) }), Versions.writerRange.contains(node) else {
            throw APIError.invalidParameter("node", "The writer number must be 1 to 1023")
        }
        let report = try await request.decodeJSON(as: BacklogReport.self, allowedFields: ["clear_through_ms"])
        guard report.clearThroughMs >= 0 else {
            throw APIError.invalidParameter("clear_through_ms", "clear_through_ms must be Unix milliseconds, 0 or more")
        }
        try await store.reportBacklog(node: node, report)
        return .noContent
    }

    /// GET /api/writers/backlogs: every replica's last report of the past hour, and how long ago it came.
    @Sendable func backlogs(_ request: Request, context: Context) async throws -> WriterBacklogList {
        WriterBacklogList(data: try await store.writerBacklogs())
    }
}
