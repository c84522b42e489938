import Hummingbird
import Shared

/// `/api/writers`: hands each Products Service replica its writer number, which it stamps on the versions it makes.
struct WritersController<Context: RequestContext> {
    let store: any KeyStore

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self).post(use: register)
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
}
