import Hummingbird
import Shared

/// `/api/keys`: what the Products Service asks to authenticate its clients. Keys are managed with the
/// `database-service keys` command, never over HTTP.
struct KeysController<Context: RequestContext> {
    let keys: any KeyStore

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .post("verify", use: verify)
            .get("status", use: status)
    }

    /// The body of `POST /api/keys/verify`: the SHA-256 of a key, so the key itself never travels further.
    struct VerifyRequest: Decodable {
        var keyHash: String

        enum CodingKeys: String, CodingKey, CaseIterable {
            case keyHash = "key_hash"
        }
    }

    /// POST /api/keys/verify: the tenant and scope of an active key (recording its use), else 404.
    @Sendable func verify(_ request: Request, context: Context) async throws -> KeyGrant {
        let body = try await request.decodeJSON(as: VerifyRequest.self, allowedFields: ["key_hash"])
        guard body.keyHash.utf8.count == 64, body.keyHash.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            throw APIError.invalidParameter("key_hash", "key_hash must be a SHA-256 in lowercase hex")
        }
        guard let grant = try await keys.verifyKey(hash: body.keyHash) else {
            throw APIError.notFound("No active key has this hash", param: "key_hash")
        }
        return grant
    }

    /// GET /api/keys/status: how many keys are active (none: the Products Service runs open).
    @Sendable func status(_ request: Request, context: Context) async throws -> KeyStatus {
        KeyStatus(activeKeys: try await keys.activeKeyCount())
    }
}

/// `/api/tenants`: the tenants whose catalogs the Products Service loads at start.
struct TenantsController<Context: RequestContext> {
    let keys: any KeyStore

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self).get(use: list)
    }

    /// GET /api/tenants: every tenant with live products or an active key.
    @Sendable func list(_ request: Request, context: Context) async throws -> TenantList {
        TenantList(tenants: try await keys.tenants())
    }
}

extension KeyGrant: ResponseEncodable {}
extension KeyStatus: ResponseEncodable {}
extension TenantList: ResponseEncodable {}
