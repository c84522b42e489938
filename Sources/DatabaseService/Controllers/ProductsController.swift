import Foundation
import HTTPTypes
import Hummingbird
import Shared

/// `/api/products`: the internal, curl-able product storage API.
struct ProductsController<Context: RequestContext> {
    let store: any ProductStore

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .post(use: upsert)
            .get(use: list)
            .post("batch", use: applyBatch)
            .post("write", use: coordinatedWrite)
            .get("{id}", use: show)
            .delete("{id}", use: delete)
            .get("{id}/versions", use: versions)
            .post("{id}/restore", use: restore)
    }

    /// POST /api/products: stores one product if its version is newer (201 created, 200 updated or unchanged),
    /// answering with the product as stored (a handle made or suffixed, SKUs another variant holds dropped).
    @Sendable func upsert(_ request: Request, context: Context) async throws -> Response {
        let product = try StoredProductInput.product(try await request.parseJSON(maxSize: ProductRules.maxBodyBytes))
        try product.validate()
        let tenant = try request.tenant()
        let outcome = try await store.apply([.upsert(tenant: tenant, product: product)])[0]
        switch outcome {
        case .inserted, .updated:
            let stored = try await store.product(tenant: tenant, id: product.id)
            return .json(buffer: (stored?.version == product.version ? stored! : product).json, status: outcome == .inserted ? .created : .ok)
        case .stale(let storedVersion, let deleted):
            if !deleted, storedVersion == product.version, let stored = try await store.product(tenant: tenant, id: product.id) {
                return .json(buffer: stored.json)
            }
            throw APIError.versionConflict(
                "Product \(product.id) is stored at version \(storedVersion)\(deleted ? " (deleted)" : ""); version \(product.version) is not newer")
        case .expired(let horizonMs):
            // Not reached: this write is recorded now, after any horizon.
            throw APIError.versionConflict(Self.expiredMessage(horizonMs))
        }
    }

    /// Why a write recorded before the tombstone horizon was refused.
    static func expiredMessage(_ horizonMs: Int64) -> String {
        "recorded before the tombstone horizon (\(horizonMs) ms): the product has no row, and the write may be older than a delete whose tombstone was purged"
    }

    /// POST /api/products/batch: applies versioned upserts and deletes in one transaction.
    @Sendable func applyBatch(_ request: Request, context: Context) async throws -> WriteBatchResult {
        let batch = try WriteBatch(json: try await request.collectJSONBody(maxSize: ServiceContract.maxBatchBodySize))
        guard batch.operations.count <= ServiceContract.maxBatchOperations else {
            throw APIError.invalidParameter("operations", "A batch may carry at most \(ServiceContract.maxBatchOperations) operations")
        }
        var results = [OperationResult?](repeating: nil, count: batch.operations.count)
        var valid: [(index: Int, operation: WriteOperation)] = []
        var recordedAtMs: [Int64?] = []
        for (index, operation) in batch.operations.enumerated() {
            do {
                try Self.validate(operation)
                valid.append((index, operation))
                recordedAtMs.append(batch.recordedAtMs(at: index))
            } catch {
                results[index] = OperationResult(id: operation.productID, outcome: .rejected, error: "\(error.code): \(error.message)")
            }
        }
        let outcomes = try await store.apply(valid.map(\.operation), recordedAtMs: batch.recordedAtMs.isEmpty ? [] : recordedAtMs)
        for ((index, operation), outcome) in zip(valid, outcomes) {
            switch outcome {
            case .inserted, .updated: results[index] = OperationResult(id: operation.productID, outcome: .applied)
            case .stale(let storedVersion, let deleted):
                results[index] = OperationResult(id: operation.productID, outcome: .stale, storedVersion: storedVersion, deleted: deleted)
            case .expired(let horizonMs):
                results[index] = OperationResult(id: operation.productID, outcome: .rejected, error: "expired: \(Self.expiredMessage(horizonMs))")
            }
        }
        return WriteBatchResult(results: results.map { $0! })
    }

    /// POST /api/products/write: one write with a precondition (`expected_version`) and an idempotency key's
    /// answer, decided in one transaction; what happened is in `outcome` (200 whatever it is).
    @Sendable func coordinatedWrite(_ request: Request, context: Context) async throws -> CoordinatedResult {
        let write = try await request.decodeJSON(
            as: CoordinatedWrite.self, maxSize: ServiceContract.maxWriteBodySize,
            allowedFields: ["operation", "expected_version", "idempotency", "handle_given"])
        try Self.validate(write.operation)
        if let expected = write.expectedVersion, expected < 1 {
            throw APIError.invalidParameter("expected_version", "expected_version must be at least 1")
        }
        if let answer = write.idempotency {
            guard (1...255).contains(answer.key.unicodeScalars.count) else {
                throw APIError.invalidParameter("idempotency.key", "key must be 1 to 255 characters")
            }
            try ProductRules.checkNoNUL(answer.key, param: "idempotency.key")
            try ProductRules.checkNoNUL(answer.body, param: "idempotency.body")
            try ProductRules.checkNoNUL(answer.fingerprint, param: "idempotency.fingerprint")
            try ProductRules.checkNoNUL(answer.etag, param: "idempotency.etag")
            guard (100...599).contains(answer.status) else {
                throw APIError.invalidParameter("idempotency.status", "status must be an HTTP status, 100 to 599")
            }
            guard answer.createdAt >= 0 else {
                throw APIError.invalidParameter("idempotency.created_at", "created_at must be Unix milliseconds, at least 0")
            }
        }
        return try await store.write(write)
    }

    /// GET /api/products: live products in id order, filtered, paged with `starting_after` or `ending_before`.
    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        .json(buffer: try await store.listJSON(tenant: try request.tenant(), query: try ProductQuery.parse(query: request.uri.query)))
    }

    /// GET /api/products/{id}: one live product.
    @Sendable func show(_ request: Request, context: Context) async throws -> Product {
        let id = try context.productID()
        guard let product = try await store.product(tenant: try request.tenant(), id: id) else {
            throw APIError.notFound("Product not found", param: "id")
        }
        return product
    }

    /// GET /api/products/{id}/versions: the product's versions in the change log, newest first, as a JSON array;
    /// `Page-Has-More` and `Page-Last-Version` tell whether older ones exist and where the page ends.
    @Sendable func versions(_ request: Request, context: Context) async throws -> Response {
        let id = try context.productID()
        let query = try ProductHistory.Query.parse(query: request.uri.query)
        guard let page = try await store.versions(tenant: try request.tenant(), id: id, before: query.startingAfter, limit: query.limit) else {
            throw APIError.notFound("Product not found", param: "id")
        }
        var body = ByteBuffer()
        body.writeJSONArray(page.versions, opening: "[", closing: "]") { change, body in change.writeVersion(into: &body) }
        var response = Response.json(buffer: body)
        response.headers[HTTPField.Name(ProductHistory.hasMoreHeader)!] = page.hasMore ? "true" : "false"
        if let last = page.versions.last { response.headers[HTTPField.Name(ProductHistory.lastVersionHeader)!] = String(last.version) }
        return response
    }

    /// POST /api/products/{id}/restore `{"version": n}`: brings that version back as the product's next version; 201
    /// when the product was deleted, 200 when it was live.
    @Sendable func restore(_ request: Request, context: Context) async throws -> Response {
        let id = try context.productID()
        let input = try await request.decodeJSON(as: ProductHistory.RestoreRequest.self, allowedFields: ProductHistory.RestoreRequest.fields)
            .validated()
        switch try await store.restore(tenant: try request.tenant(), id: id, version: input.version, restoredAt: Timestamp.now()) {
        case .restored(let product, let created):
            return .json(buffer: product.json, status: created ? .created : .ok)
        case .productNotFound:
            throw APIError.notFound("Product not found", param: "id")
        case .versionNotFound:
            throw APIError.invalidParameter(
                "version", "Product \(id) has no version \(input.version) in its history (kept for the change log's retention)")
        case .versionIsDeletion:
            throw APIError.invalidParameter("version", "Version \(input.version) is the product's deletion; restore a version that holds it")
        case .refused(let error):
            throw error
        }
    }

    /// DELETE /api/products/{id}[?version=N]: leaves a tombstone so that older writes cannot bring it back.
    @Sendable func delete(_ request: Request, context: Context) async throws -> Response {
        let id = try context.productID()
        var version: Int64?
        if let raw = request.uri.queryParameters["version"] {
            guard let parsed = Int64(raw), parsed >= 1 else {
                throw APIError.invalidParameter("version", "version must be a positive integer")
            }
            version = parsed
        }
        let timestamp = Timestamp.now()
        switch try await store.delete(tenant: try request.tenant(), id: id, version: version, deletedAt: timestamp) {
        case .deleted(let version, let name):
            return .json(DeleteReceipt(productID: id, name: name, version: version, timestamp: timestamp))
        case .notFound:
            throw APIError.notFound("Product not found", param: "id")
        case .stale(let storedVersion):
            throw APIError.versionConflict("Product \(id) is stored at version \(storedVersion); version \(version ?? 0) is not newer")
        }
    }

    static func validate(_ operation: WriteOperation) throws(APIError) {
        switch operation {
        case .upsert(_, let product):
            try product.validate()
        case .delete(_, let id, let version, let deletedAt):
            guard !id.isEmpty, id.unicodeScalars.count <= ProductRules.maxIDLength else {
                throw .invalidParameter("id", "Product id must be 1 to \(ProductRules.maxIDLength) characters")
            }
            try ProductRules.checkNoNUL(id, param: "id")
            guard version >= 1 else { throw .invalidParameter("version", "version must be at least 1") }
            guard Timestamp.isValid(deletedAt) else { throw .invalidParameter("deleted_at", "deleted_at must be an RFC 3339 timestamp") }
        }
        guard Tenant.isValid(operation.tenant) else { throw .invalidParameter("tenant", "tenant is not a valid tenant id") }
    }
}

/// The body of `POST /api/products`: a product with an id, its other assigned fields defaulted for curl users (created
/// and updated now, version 1).
enum StoredProductInput {
    static func product(_ json: JSONValue) throws(APIError) -> Product {
        guard case .object(let members) = json else { throw .invalidBody("Request body must be a JSON object") }
        if let unknown = members.keys.sorted().first(where: { Product.fieldIndex(of: $0) == nil }) { throw .unknownParameter(unknown) }
        guard members["id"] != nil else { throw .missingParameter("id", "id is required") }
        let now = Timestamp.now()
        var product = Product(id: "", createdAt: now, updatedAt: now, version: 1)
        for field in Product.fields {
            if let value = members[field.name] {
                try field.take(value, into: &product)
            } else if field.access == .required {
                throw .missingParameter(field.name, "\(field.name) is required")
            }
        }
        if members["updated_at"] == nil { product.updatedAt = product.createdAt }
        return product
    }
}

/// The body of a successful `DELETE /api/products/{id}`.
struct DeleteReceipt: Encodable, ResponseEncodable {
    var status = "deleted"
    var productID: String
    var name: String
    var version: Int64
    var timestamp: String

    enum CodingKeys: String, CodingKey {
        case status, name, version, timestamp
        case productID = "product_id"
    }
}

extension Request {
    /// The tenant a request acts for: the `X-Tenant-ID` header, else `default`.
    func tenant() throws(APIError) -> String {
        guard let tenant = headers[.tenantID] else { return defaultTenant }
        guard Tenant.isValid(tenant) else {
            throw APIError.invalidParameter(HTTPField.Name.tenantID.rawName, "not a valid tenant id")
        }
        return tenant
    }
}
