import Foundation
import Logging
import NIOCore
import Shared
import Synchronization

/// The Products Service's operations on the catalog: the cache answers, the journal makes writes durable,
/// the Database Service fills misses and is reconciled with.
final class Catalog: Sendable {
    let cache: CatalogCache
    let journal: Journal
    let database: any DatabaseServiceClient
    let worker: PersistenceWorker
    let gate: SyncGate
    let ids = ProductIDGenerator()
    private let loaded = Atomic<Bool>(false)

    /// Catalog pages asked of the Database Service when loading or reconciling.
    static let pageSize = 1000

    init(cache: CatalogCache, journal: Journal, database: any DatabaseServiceClient, worker: PersistenceWorker, gate: SyncGate) {
        self.cache = cache
        self.journal = journal
        self.database = database
        self.worker = worker
        self.gate = gate
    }

    /// True once the full catalog has been loaded from the Database Service: a cache miss is then authoritative.
    var isLoaded: Bool { loaded.load(ordering: .acquiring) }

    // MARK: Writes

    /// Creates a product: cached and journaled, then acknowledged once the journal has it on disk.
    func create(tenant: String, _ input: NewProductInput) async throws -> CachedProduct {
        let now = Timestamp.now()
        let product = Product(
            id: ids.next(), name: input.name, type: input.type, metadata: input.metadata,
            createdAt: now, updatedAt: now, version: 1)
        let cached = CachedProduct(product)
        let operation = WriteOperation.upsert(tenant: tenant, product: product)
        let record = operation.json
        let ticket = try journaling {
            try cache.put(tenant: tenant, cached) { try journal.append(operation, encoded: record) }
        }
        try await waitUntilDurable(ticket)
        return cached
    }

    /// Deletes a product, cached or found only in the Database Service; returns the deleted product's name.
    func delete(tenant: String, id: String) async throws -> String {
        let deletedAt = Timestamp.now()
        // A read-through may cache the product while we look it up; then the cached path applies.
        for _ in 0..<3 {
            let removed = try journaling {
                try cache.remove(tenant: tenant, id: id) { removed in
                    let version = removed.product.version + 1
                    let operation = WriteOperation.delete(tenant: tenant, id: id, version: version, deletedAt: deletedAt)
                    return (try journal.append(operation, encoded: operation.json), version)
                }
            }
            if let (product, ticket) = removed {
                try await waitUntilDurable(ticket)
                return product.product.name
            }
            if cache.isPendingDelete(tenant: tenant, id: id) { throw productNotFound }
            guard let stored = try await databaseProduct(tenant: tenant, id: id) else { throw productNotFound }
            let operation = WriteOperation.delete(tenant: tenant, id: id, version: stored.version + 1, deletedAt: deletedAt)
            let ticket = try journaling {
                try cache.recordUncachedDelete(tenant: tenant, id: id, version: stored.version + 1) {
                    try journal.append(operation, encoded: operation.json)
                }
            }
            if let ticket {
                try await waitUntilDurable(ticket)
                return stored.name
            }
        }
        throw APIError.versionConflict("Product \(id) changed while being deleted; retry")
    }

    // MARK: Reads

    /// A product's JSON from the cache, else from the Database Service (then cached).
    func product(tenant: String, id: String) async throws -> ByteBuffer {
        if let cached = cache.get(tenant: tenant, id: id) { return cached.json }
        if cache.isPendingDelete(tenant: tenant, id: id) { throw productNotFound }
        let deletes = cache.deleteCount(tenant: tenant)
        guard let product = try await databaseProduct(tenant: tenant, id: id) else { throw productNotFound }
        let cached = CachedProduct(product)
        cache.putIfUnchanged(tenant: tenant, cached, deleteCount: deletes)
        return cached.json
    }

    /// Up to `limit` products in creation order, as one JSON array.
    func list(tenant: String, type: String?, limit: Int) -> ByteBuffer {
        let items = cache.list(tenant: tenant, type: type, limit: limit)
        var body = ByteBuffer()
        body.reserveCapacity(items.reduce(2) { $0 + $1.readableBytes + 1 })
        body.writeInteger(UInt8(ascii: "["))
        for (index, item) in items.enumerated() {
            if index > 0 { body.writeInteger(UInt8(ascii: ",")) }
            body.writeImmutableBuffer(item)
        }
        body.writeInteger(UInt8(ascii: "]"))
        return body
    }

    /// The product as the Database Service holds it; when it cannot be asked, an authoritative cache means "absent".
    private func databaseProduct(tenant: String, id: String) async throws -> Product? {
        do {
            return try await database.product(tenant: tenant, id: id)
        } catch {
            if isLoaded { return nil }
            throw APIError.serviceUnavailable(
                "database_unavailable", "The catalog is still loading and the Database Service is unreachable: \(error)")
        }
    }

    // MARK: Reconciliation

    /// Flushes pending writes, then makes the tenant's cache match the Database Service's full catalog.
    func sync(tenant: String, flushTimeout: Duration) async throws -> (updated: Int, dropped: Int) {
        try await worker.flush(timeout: flushTimeout)
        do {
            return try await gate.withGate {
                let products = try await self.fetchAll(tenant: tenant, logger: nil)
                return self.cache.reconcile(tenant: tenant, databaseProducts: products, pending: self.journal.unconfirmedOperations)
            }
        } catch let error as DatabaseClientError {
            throw APIError.serviceUnavailable("database_unavailable", "Could not read the catalog from the Database Service: \(error)")
        }
    }

    /// Loads every tenant's full catalog at start, over what the journal replayed, then marks the cache authoritative.
    func load(tenants: Set<String>, logger: Logger) async throws {
        try await gate.withGate {
            for tenant in tenants.sorted() {
                let products = try await self.fetchAll(tenant: tenant, logger: logger)
                self.cache.reconcile(tenant: tenant, databaseProducts: products, pending: self.journal.unconfirmedOperations)
            }
        }
        loaded.store(true, ordering: .releasing)
    }

    /// Every live product of a tenant, following `starting_after` through all pages.
    private func fetchAll(tenant: String, logger: Logger?) async throws(DatabaseClientError) -> [Product] {
        var products: [Product] = []
        var cursor: String?
        while true {
            let page = try await database.listProducts(tenant: tenant, limit: Self.pageSize, startingAfter: cursor)
            products += page.products
            if let logger, products.count % 50_000 < Self.pageSize, page.hasMore {
                logger.info("loading catalog", metadata: ["tenant": "\(tenant)", "loaded": "\(products.count)"])
            }
            guard page.hasMore, let last = page.products.last else { return products }
            cursor = last.id
        }
    }

    // MARK: Helpers

    private var productNotFound: APIError { .notFound("Product not found", param: "id") }

    private func journaling<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as JournalError { throw Self.unavailable(error) }
    }

    private func waitUntilDurable(_ ticket: UInt64) async throws {
        do { try await journal.waitUntilDurable(ticket) } catch let error as JournalError { throw Self.unavailable(error) }
    }

    private static func unavailable(_ error: JournalError) -> APIError {
        .serviceUnavailable("journal_unavailable", "Writes are refused: the journal cannot be written (\(error))")
    }
}

/// A validated `POST /products` body.
struct NewProductInput: Sendable {
    var name: String
    var type: String
    var metadata: [String: String]

    /// Builds the input from a parsed body; every fault is a 400 naming its field. Unknown fields are ignored.
    init(json: JSONValue) throws(APIError) {
        guard case .object(let fields) = json else { throw .invalidBody("Request body must be a JSON object") }
        guard let name = fields["name"] else { throw .missingParameter("name", "Product name is required") }
        self.name = try ProductRules.validName(Self.string(name, "name", what: "Product name"))
        type = try fields["type"].map { value throws(APIError) in
            try ProductRules.validType(Self.string(value, "type", what: "Product type"))
        } ?? ProductRules.defaultType
        metadata = [:]
        switch fields["metadata"] {
        case nil:
            break
        case .object(let entries):
            for (key, value) in entries {
                guard case .string(let text) = value else {
                    throw .invalidParameter("metadata[\(key)]", "'metadata[\(key)]' must be a string, not \(value.typeName)")
                }
                metadata[key] = text
            }
            try ProductRules.validateMetadata(metadata)
        case .some(let other):
            throw .invalidParameter("metadata", "metadata must be an object of string values, not \(other.typeName)")
        }
    }

    private static func string(_ value: JSONValue, _ param: String, what: String) throws(APIError) -> String {
        guard case .string(let text) = value else { throw .invalidParameter(param, "\(what) must be a string, not \(value.typeName)") }
        return text
    }
}
