import NIOCore
import Shared

/// Everything the Database Service keeps, one store per feature over one database: products, the change log,
/// API keys and writer numbers, events with their webhook deliveries, import jobs. Routes never see SQL.
protocol DataStore: Sendable {
    var products: any ProductStore { get }
    var changes: any ChangeStore { get }
    var keys: any KeyStore { get }
    var webhooks: any WebhookStore { get }
    var imports: any ImportStore { get }
    var categories: any CategoryStore { get }
    /// Checks that the backend answers.
    func ping() async throws
    /// The backend's name, reported by `/health`.
    var backend: String { get }
    /// The last migration applied, reported by `/health`.
    func schemaVersion() async throws -> String?
    /// The connection pool, as `/health` reports it.
    var poolDescription: String { get }
}

/// Versioned products and tombstones, scoped by tenant, with their history and idempotency answers.
protocol ProductStore: Sendable {
    /// Applies operations in one transaction, each only if newer than what is stored; outcomes in input order.
    /// `recordedAtMs` is empty or holds one time per operation (when it was first recorded; nil for now): an
    /// operation recorded before the tombstone horizon, for a product with no row, is `.expired`.
    func apply(_ operations: [WriteOperation], recordedAtMs: [Int64?]) async throws -> [ApplyOutcome]
    /// Applies one write in a transaction with its precondition and its idempotency key: see `CoordinatedWrite`.
    func write(_ write: CoordinatedWrite) async throws -> CoordinatedResult
    /// Drops idempotency keys' answers stored before `cutoffMs`; returns how many.
    func purgeAnswers(createdBefore cutoffMs: Int64) async throws -> Int
    /// Raises the tombstone horizon to `cutoffMs` and drops the tombstones of deletes stored before it; returns how
    /// many. From then on, writes recorded before the horizon cannot recreate a product that has no row.
    func purgeTombstones(deletedBefore cutoffMs: Int64) async throws -> Int
    /// Deletes a live product at `version`, or at the next version the Database Service stamps when `version` is nil.
    func delete(tenant: String, id: String, version: Int64?, deletedAt: String) async throws -> DeleteOutcome
    /// The live product, or nil when absent or deleted.
    func product(tenant: String, id: String) async throws -> Product?
    /// Live products matching the query's filters, at most `limit` of them in id order from its cursor,
    /// and whether more exist in the direction of paging.
    func list(tenant: String, query: ProductQuery) async throws -> ProductPage
    /// The same page as its JSON, `{"products":[...],"has_more":...}`, which a store may write straight from its
    /// rows: a replica loading its catalog reads a thousand such pages per million products.
    func listJSON(tenant: String, query: ProductQuery) async throws -> ByteBuffer

    // MARK: History

    /// Up to `limit` of a product's versions in the change log, newest first, older than `before` when given, and
    /// whether older ones exist; nil when the log holds none of them and no live product has the id.
    func versions(tenant: String, id: String, before: Int64?, limit: Int) async throws -> (versions: [LoggedChange], hasMore: Bool)?
    /// Brings back `version` of a product, as the change log holds it, as the product's next version (stamped by
    /// the Database Service, writer 0), live or deleted now; logged with its event in the same transaction.
    func restore(tenant: String, id: String, version: Int64, restoredAt: String) async throws -> RestoreOutcome

}

/// The change log every applied write is recorded in, in the write's transaction: what the replicas follow.
protocol ChangeStore: Sendable {
    /// Up to `limit` changes after `cursor`, oldest first; `.expired` when changes after it were purged.
    func changes(after cursor: ChangeCursor, limit: Int) async throws -> ChangeRead
    /// The cursor of the newest change a reader can see now: reading from it misses nothing committed later.
    func changeHead() async throws -> ChangeCursor
    /// Drops the oldest changes recorded before `cutoffMs` (Unix milliseconds), always a prefix of the log;
    /// returns how many.
    func purgeChanges(recordedBefore cutoffMs: Int64) async throws -> Int
    /// Fires after changes commit (on PostgreSQL, also when another process's do): a wake-up hint, not a guarantee.
    var changeSignal: ChangeSignal { get }
    /// Signals `changeSignal` when other processes commit changes, until cancelled (PostgreSQL's LISTEN);
    /// returns at once where no other process can write.
    func listenForChanges() async
}

/// Writer numbers: each Products Service replica stamps the versions it makes with its own number, so two
/// replicas can never give two contents the same version.
enum WriterNodes {
    /// Numbers 1...1023; 0 is the Database Service's own (versions it makes itself).
    static let range = Versions.writerRange
    /// A number silent this long may be handed to a new replica.
    static let reuseAfterMs: Int64 = 30 * 24 * 3600 * 1000

    /// `preferred` if free, else the lowest free number, else the one silent longest if past `reuseAfterMs`;
    /// nil when all are in use.
    static func choose(taken: [(node: Int64, lastSeenMs: Int64)], preferred: Int64? = nil, nowMs: Int64) -> (node: Int64, reused: Bool)? {
        let used = Set(taken.map(\.node))
        if let preferred, range.contains(preferred), !used.contains(preferred) { return (preferred, false) }
        if let free = range.first(where: { !used.contains($0) }) { return (free, false) }
        guard let oldest = taken.min(by: { $0.lastSeenMs < $1.lastSeenMs }), nowMs - oldest.lastSeenMs > reuseAfterMs else { return nil }
        return (oldest.node, true)
    }
}

/// What reading the change log found.
enum ChangeRead: Sendable, Equatable {
    case page(ChangeLogPage)
    /// Changes after the cursor were purged (retention): the reader must reload in full.
    case expired(purgedThrough: ChangeCursor)
}

/// What storing one versioned operation did.
enum ApplyOutcome: Sendable, Equatable {
    case inserted
    case updated
    /// A same or newer version (live or tombstone) was already stored; nothing changed.
    case stale(storedVersion: Int64, deleted: Bool)
    /// Recorded before the tombstone horizon (`horizonMs`), for a product with no row: it may be older than a delete
    /// whose tombstone was purged, so it is refused; nothing changed.
    case expired(horizonMs: Int64)

    var isApplied: Bool {
        switch self {
        case .inserted, .updated: true
        case .stale, .expired: false
        }
    }
}

extension ProductStore {
    /// Applies operations recorded now.
    func apply(_ operations: [WriteOperation]) async throws -> [ApplyOutcome] { try await apply(operations, recordedAtMs: []) }
}

/// The names of the migrations both backends apply, in order; each is frozen once merged.
enum StoreSchema {
    /// The whole schema as first released.
    static let first = "v1-schema"
    /// Products kept as one JSON document each, with columns only for the fields SQL filters on (`Product.fields`).
    static let productBody = "v2-product-body"
    /// Handles (unique among a shop's live products) and the SKU index (unique among its live variants).
    static let catalogModel = "v3-catalog-model"
    /// Each replica's last report of its unconfirmed writes (`writer_backlogs`).
    static let writerBacklogs = "v4-writer-backlogs"
}

/// A product's versions are read from the change log by product.
enum HistorySchema {
    static let createIndex = "CREATE INDEX product_changes_product ON product_changes (tenant, product_id, version)"
}

/// The tombstone horizon: tombstones of deletes stored before it have been purged.
enum TombstoneSchema {
    static let createTable = "CREATE TABLE tombstone_horizon (id INTEGER PRIMARY KEY CHECK (id = 1), horizon_ms BIGINT NOT NULL)"
    static let insertRow = "INSERT INTO tombstone_horizon (id, horizon_ms) VALUES (1, 0)"
    /// Tombstones to purge are found by when they were stored.
    static let createIndex = "CREATE INDEX products_tombstones ON products (deleted_ms) WHERE deleted"

    /// Whether an operation recorded at `recordedAtMs` (nil: now) falls before `horizonMs`.
    static func isBefore(_ horizonMs: Int64, recordedAtMs: Int64?) -> Bool { (recordedAtMs ?? .max) < horizonMs }
}

/// What restoring a version did.
enum RestoreOutcome: Sendable, Equatable {
    /// Stored as its next version; `created` when the product was deleted (or absent) before.
    case restored(Product, created: Bool)
    /// Neither a live product nor a version in the log has this id.
    case productNotFound
    /// The log holds no such version of the product (never made, or past the retention).
    case versionNotFound
    /// The version asked for is the product's deletion, which holds no product to bring back.
    case versionIsDeletion
    /// Another live product holds the version's handle or one of its SKUs.
    case refused(APIError)
}

/// What a delete did.
enum DeleteOutcome: Sendable, Equatable {
    case deleted(version: Int64, name: String)
    case notFound
    /// The stored version is the same or newer than the one asked for.
    case stale(storedVersion: Int64)
}

/// The `idempotency_answers` table, the same on both backends.
enum AnswerSchema {
    static let createTable = """
        CREATE TABLE idempotency_answers (
            tenant TEXT NOT NULL,
            key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            status INTEGER NOT NULL,
            body TEXT NOT NULL,
            etag TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            PRIMARY KEY (tenant, key)
        )
        """
    static let createIndex = "CREATE INDEX idempotency_answers_age ON idempotency_answers (created_ms)"
}

/// The `writer_nodes` table, the same on both backends.
enum WriterNodeSchema {
    static let createTable = """
        CREATE TABLE writer_nodes (
            node BIGINT NOT NULL PRIMARY KEY,
            replica_id TEXT NOT NULL UNIQUE,
            last_seen_ms BIGINT NOT NULL
        )
        """
}

/// The `writer_backlogs` table and its two statements, the same on both backends: a replica's last
/// `BacklogReport`, and when it came (this service's clock).
enum WriterBacklogSchema {
    static let createTable = """
        CREATE TABLE writer_backlogs (
            node BIGINT NOT NULL PRIMARY KEY,
            clear_through_ms BIGINT NOT NULL,
            reported_ms BIGINT NOT NULL
        )
        """
    /// Arguments: node, clear_through_ms, reported_ms (`$n`, which SQLite spells `?n`).
    static let upsert = """
        INSERT INTO writer_backlogs (node, clear_through_ms, reported_ms) VALUES ($1, $2, $3)
        ON CONFLICT (node) DO UPDATE SET clear_through_ms = excluded.clear_through_ms, reported_ms = excluded.reported_ms
        """
    /// Argument: the oldest reported_ms listed.
    static let select = "SELECT node, clear_through_ms, reported_ms FROM writer_backlogs WHERE reported_ms >= $1 ORDER BY node"
    /// Reports older than this are not listed.
    static let listedFor: Int64 = 3_600_000
}

extension ProductStore {
    func listJSON(tenant: String, query: ProductQuery) async throws -> ByteBuffer {
        var page = try await list(tenant: tenant, query: query)
        // Past `maxPageBytes`, the page ends early on the side away from its cursor, with more to follow.
        var total = 0
        let backwards = if case .endingBefore = query.cursor { true } else { false }
        let ordered = backwards ? Array(page.products.reversed()) : page.products
        if let cut = ordered.firstIndex(where: { total += $0.estimatedJSONSize; return total > ServiceContract.maxPageBytes }),
           cut + 1 < ordered.count
        {
            let kept = ordered[...cut]
            page = ProductPage(products: backwards ? kept.reversed() : Array(kept), hasMore: true)
        }
        return page.json
    }
}
