/// One versioned write sent from the Products Service to the Database Service.
///
/// The Database Service applies an operation only when its version is newer than what it holds,
/// so retried, replayed or reordered operations can neither roll back nor resurrect a product.
package enum WriteOperation: Codable, Sendable, Equatable {
    case upsert(tenant: String, product: Product)
    case delete(tenant: String, id: String, version: Int64, deletedAt: String)

    package var tenant: String {
        switch self {
        case .upsert(let tenant, _), .delete(let tenant, _, _, _): tenant
        }
    }

    package var productID: String {
        switch self {
        case .upsert(_, let product): product.id
        case .delete(_, let id, _, _): id
        }
    }

    package var version: Int64 {
        switch self {
        case .upsert(_, let product): product.version
        case .delete(_, _, let version, _): version
        }
    }

    enum CodingKeys: String, CodingKey {
        case op, tenant, product, id, version
        case deletedAt = "deleted_at"
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let tenant = try container.decodeIfPresent(String.self, forKey: .tenant) ?? defaultTenant
        switch try container.decode(String.self, forKey: .op) {
        case "upsert":
            self = .upsert(tenant: tenant, product: try container.decode(Product.self, forKey: .product))
        case "delete":
            self = .delete(
                tenant: tenant,
                id: try container.decode(String.self, forKey: .id),
                version: try container.decode(Int64.self, forKey: .version),
                deletedAt: try container.decode(String.self, forKey: .deletedAt)
            )
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .op, in: container, debugDescription: "unknown op \(other)")
        }
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(tenant, forKey: .tenant)
        switch self {
        case .upsert(_, let product):
            try container.encode("upsert", forKey: .op)
            try container.encode(product, forKey: .product)
        case .delete(_, let id, let version, let deletedAt):
            try container.encode("delete", forKey: .op)
            try container.encode(id, forKey: .id)
            try container.encode(version, forKey: .version)
            try container.encode(deletedAt, forKey: .deletedAt)
        }
    }
}

/// A batch of operations the Database Service applies in one transaction.
package struct WriteBatch: Codable, Sendable {
    package var operations: [WriteOperation]
    package init(operations: [WriteOperation]) { self.operations = operations }
}

/// What the Database Service did with each operation of a batch, in the batch's order.
package struct WriteBatchResult: Codable, Sendable, Equatable {
    package var results: [OperationResult]
    package init(results: [OperationResult]) { self.results = results }
}

/// The outcome of one operation of a batch.
package struct OperationResult: Codable, Sendable, Equatable {
    /// `applied`: stored; `stale`: a same or newer version was already stored; `rejected`: invalid, never retry.
    package enum Outcome: String, Codable, Sendable {
        case applied, stale, rejected
    }

    package var id: String
    package var outcome: Outcome
    package var error: String?

    package init(id: String, outcome: Outcome, error: String? = nil) {
        self.id = id
        self.outcome = outcome
        self.error = error
    }
}
