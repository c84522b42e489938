import Foundation
import Logging
import NIOCore
import PostgresNIO
import ServiceLifecycle
import Shared

/// Products, their history and idempotency answers on PostgreSQL.
struct PostgresProductStore: ProductStore, PostgresFeatureStore {
    let database: PostgresStore


    /// Applies a batch in one transaction with a few statements a round, not a few a row: each round takes at most
    /// one operation of each product (the first round the first of each, and so on, so a product's operations keep
    /// their order), upserts them all with one multi-row `INSERT … SELECT FROM unnest(…)` in key order (rows are
    /// locked in key order, so concurrent batches cannot deadlock), reads back the stored versions of those it
    /// found stale, and logs the applied ones with one more multi-row insert. Outcomes go back in the batch's order.
    func apply(_ operations: [WriteOperation], recordedAtMs: [Int64?]) async throws -> [ApplyOutcome] {
        struct Key: Hashable { var tenant: String; var id: String }
        let order = operations.indices.sorted { left, right in
            let (a, b) = (operations[left], operations[right])
            return (a.tenant, a.productID, left) < (b.tenant, b.productID, right)
        }
        var rounds: [[Int]] = []
        var seen: [Key: Int] = [:]
        for index in order {
            let key = Key(tenant: operations[index].tenant, id: operations[index].productID)
            let round = seen[key, default: 0]
            seen[key] = round + 1
            if round == rounds.count { rounds.append([]) }
            rounds[round].append(index)
        }
        let outcomes = try await retryingConflicts { [rounds] in
            try await self.transaction(logger: self.logger) { connection in
                var outcomes = [ApplyOutcome?](repeating: nil, count: operations.count)
                if !recordedAtMs.isEmpty {
                    for (index, horizonMs) in try await self.expired(operations, recordedAtMs: recordedAtMs, on: connection) {
                        outcomes[index] = .expired(horizonMs: horizonMs)
                    }
                }
                try await self.lockClaims(of: operations.map(\.tenant), on: connection)
                for allRound in rounds {
                    let round = allRound.filter { outcomes[$0] == nil }
                    // Acknowledged before any clash was known: settled, never refused.
                    let settled = try await self.settleClaims(round.map { operations[$0] }, policy: .settle, on: connection).operations
                    let stored = try await self.store(settled, on: connection)
                    var changes: [LoggedChange] = []
                    var applied: [WriteOperation] = []
                    var new: Set<Int> = []
                    for (position, (index, outcome)) in zip(round, stored).enumerated() {
                        outcomes[index] = outcome
                        if let change = LoggedChange(settled[position], outcome: outcome) {
                            if outcome == .inserted { new.insert(applied.count) }
                            changes.append(change)
                            applied.append(settled[position])
                        }
                    }
                    try await self.record(changes, on: connection)
                    try await self.indexClaims(of: applied, new: new, on: connection)
                }
                if outcomes.contains(where: { $0?.isApplied == true }) { try await self.notifyChanges(on: connection) }
                return outcomes.map { $0! }
            }
        }
        if outcomes.contains(where: \.isApplied) { changeSignal.signal() }
        return outcomes
    }

    /// The operations recorded before the tombstone horizon whose products have no row, with the horizon. Holds the
    /// horizon's lock, shared, for the rest of the transaction: a purge (which takes it alone) cannot raise the horizon
    /// and drop a tombstone between this check and the writes.
    func expired(
        _ operations: [WriteOperation], recordedAtMs: [Int64?], on connection: PostgresConnection
    ) async throws -> [(index: Int, horizonMs: Int64)] {
        try await connection.query("SELECT pg_advisory_xact_lock_shared(\(Self.tombstoneLock))", logger: logger)
        // A statement of its own, so that its snapshot is taken after the lock is held.
        var horizonMs: Int64 = 0
        for try await value in try await connection.query("SELECT horizon_ms FROM tombstone_horizon", logger: logger).decode(Int64.self) {
            horizonMs = value
        }
        let old = operations.indices.filter { TombstoneSchema.isBefore(horizonMs, recordedAtMs: recordedAtMs[$0]) }
        guard !old.isEmpty else { return [] }
        var present: [String: Set<String>] = [:]
        let rows = try await connection.query(
            """
            SELECT products.tenant, products.id
            FROM products JOIN unnest(\(old.map { operations[$0].tenant })::text[], \(old.map { operations[$0].productID })::text[])
                AS wanted (tenant, id) ON products.tenant = wanted.tenant AND products.id = wanted.id
            """, logger: logger)
        for try await (tenant, id) in rows.decode((String, String).self) { present[tenant, default: []].insert(id) }
        return old.filter { present[operations[$0].tenant]?.contains(operations[$0].productID) != true }.map { ($0, horizonMs) }
    }


    /// Stores operations of distinct products, each only if its version is newer, in one statement; then reads the
    /// stored state of those that were not. A row holds the product's JSON, the columns `Product.columnFields` names,
    /// and two more SQL filters on (the folded name, the creation time in milliseconds). A tombstone has no JSON and
    /// keeps the columns its product had, so a delete can report the name, and its creation time.
    func store(_ operations: [WriteOperation], on connection: PostgresConnection) async throws -> [ApplyOutcome] {
        guard !operations.isEmpty else { return [] }
        var tenants: [String] = [], ids: [String] = [], versions: [Int64] = [], deleted: [Bool] = []
        var bodies: [String] = [], folded: [String] = [], createdMs: [Int64] = []
        var columns: [[ProductField.ColumnValue]] = []
        for operation in operations {
            tenants.append(operation.tenant)
            ids.append(operation.productID)
            versions.append(operation.version)
            switch operation {
            case .upsert(_, let product):
                columns.append(Product.columnFields.map { $0.columnValue(product) })
                bodies.append(String(buffer: product.json))
                folded.append(ProductQuery.fold(product.name))
                createdMs.append(Timestamp.epochMilliseconds(product.createdAt) ?? Self.noMilliseconds)
                deleted.append(false)
            case .delete(_, let id, let version, let deletedAt):
                let tombstone = Product(id: id, createdAt: deletedAt, updatedAt: deletedAt, version: version)
                columns.append(Product.columnFields.map { $0.columnValue(tombstone) })
                bodies.append("")
                folded.append("")
                createdMs.append(Self.noMilliseconds)
                deleted.append(true)
            }
        }
        var binds = PostgresBindings()
        func parameter(_ value: some PostgresThrowingDynamicTypeEncodable, _ type: String) throws -> String {
            try binds.append(value)
            return "$\(binds.count)::\(type)"
        }
        var arrays = [try parameter(tenants, "text[]"), try parameter(ids, "text[]")]
        for (index, field) in Product.columnFields.enumerated() {
            switch field.kind {
            case .flag: arrays.append(try parameter(columns.map { row -> Bool in row[index].flag }, "boolean[]"))
            case .integer: arrays.append(try parameter(columns.map { row -> Int64 in row[index].integer }, "bigint[]"))
            default: arrays.append(try parameter(columns.map { row -> String in row[index].text }, "text[]"))
            }
        }
        arrays += [
            try parameter(folded, "text[]"), try parameter(createdMs, "bigint[]"), try parameter(bodies, "text[]"),
            try parameter(versions, "bigint[]"), try parameter(deleted, "boolean[]"),
        ]
        let kept = Product.columnFields.map(\.name) + ["name_folded", "created_ms"]
        let columnList = Product.columnFields.map(\.name).joined(separator: ", ")
        let rows = try await connection.query(
            PostgresQuery(
                unsafeSQL: """
                    INSERT INTO products (tenant, id, \(columnList), name_folded, created_ms, body, version, deleted, deleted_ms)
                    SELECT tenant, id, \(columnList), name_folded,
                           CASE WHEN deleted OR created_ms = \(Self.noMilliseconds) THEN NULL ELSE created_ms END,
                           CASE WHEN deleted THEN NULL ELSE body END, version, deleted,
                           CASE WHEN deleted THEN \(Timestamp.nowMilliseconds())::bigint ELSE NULL END
                    FROM unnest(\(arrays.joined(separator: ", ")))
                        AS input (tenant, id, \(columnList), name_folded, created_ms, body, version, deleted)
                    ORDER BY tenant, id
                    ON CONFLICT (tenant, id) DO UPDATE SET
                        \(kept.map { "\($0) = CASE WHEN EXCLUDED.deleted THEN products.\($0) ELSE EXCLUDED.\($0) END" }.joined(separator: ", ")),
                        body = EXCLUDED.body, version = EXCLUDED.version, deleted = EXCLUDED.deleted, deleted_ms = EXCLUDED.deleted_ms
                    WHERE products.version < EXCLUDED.version
                    RETURNING tenant, id, (xmax = 0)
                    """,
                binds: binds),
            logger: logger)
        var applied: [String: [String: Bool]] = [:]
        for try await (tenant, id, inserted) in rows.decode((String, String, Bool).self) { applied[tenant, default: [:]][id] = inserted }
        var stale: [String: [String: (version: Int64, deleted: Bool)]] = [:]
        let staleIndices = operations.indices.filter { applied[operations[$0].tenant]?[operations[$0].productID] == nil }
        if !staleIndices.isEmpty {
            let stored = try await connection.query(
                """
                SELECT products.tenant, products.id, products.version, products.deleted
                FROM products JOIN unnest(\(staleIndices.map { tenants[$0] })::text[], \(staleIndices.map { ids[$0] })::text[]) AS wanted (tenant, id)
                    ON products.tenant = wanted.tenant AND products.id = wanted.id
                """, logger: logger)
            for try await (tenant, id, version, isDeleted) in stored.decode((String, String, Int64, Bool).self) {
                stale[tenant, default: [:]][id] = (version, isDeleted)
            }
        }
        return try operations.map { operation in
            if let inserted = applied[operation.tenant]?[operation.productID] { return inserted ? .inserted : .updated }
            guard let stored = stale[operation.tenant]?[operation.productID] else { throw PostgresStoreError.vanished(operation.productID) }
            return .stale(storedVersion: stored.version, deleted: stored.deleted)
        }
    }



    /// Stores one operation if its version is newer, as `store(_:on:)` stores a batch.
    func store(_ operation: WriteOperation, on connection: PostgresConnection) async throws -> ApplyOutcome {
        try await store([operation], on: connection)[0]
    }

    func write(_ write: CoordinatedWrite) async throws -> CoordinatedResult {
        let operation = write.operation
        let result = try await retryingConflicts {
            try await self.transaction(logger: self.logger) { connection -> CoordinatedResult in
                if let answer = write.idempotency {
                    // One request per key at a time, across processes: the second waits, then finds the first's answer.
                    try await connection.query(
                        "SELECT pg_advisory_xact_lock(7206113, hashtext(\(operation.tenant) || '/' || \(answer.key)))", logger: self.logger)
                    let rows = try await connection.query(
                        """
                        SELECT fingerprint, status, body, etag, created_ms FROM idempotency_answers
                        WHERE tenant = \(operation.tenant) AND key = \(answer.key)
                        """, logger: self.logger)
                    for try await (fingerprint, status, body, etag, createdMs) in rows.decode((String, Int, String, String, Int64).self) {
                        guard fingerprint == answer.fingerprint else { return CoordinatedResult(outcome: .keyReused) }
                        return CoordinatedResult(
                            outcome: .replayed,
                            answer: StoredAnswer(
                                key: answer.key, fingerprint: fingerprint, status: status, body: body, etag: etag, createdAt: createdMs))
                    }
                }
                if let expected = write.expectedVersion {
                    let rows = try await connection.query(
                        """
                        SELECT version, deleted FROM products WHERE tenant = \(operation.tenant) AND id = \(operation.productID) FOR UPDATE
                        """, logger: self.logger)
                    var stored: (version: Int64, deleted: Bool)?
                    for try await row in rows.decode((Int64, Bool).self) { stored = row }
                    guard let stored, !stored.deleted, stored.version == expected else {
                        return CoordinatedResult(outcome: .preconditionFailed, storedVersion: stored?.version ?? 0, deleted: stored?.deleted ?? true)
                    }
                }
                try await self.lockClaims(of: [operation.tenant], on: connection)
                let settled = try await self.settleClaims(
                    [operation], policy: .refuse(handleGiven: write.handleGiven ?? false), on: connection)
                if let refusal = settled.refused { return CoordinatedResult(refused: refusal) }
                let operation = settled.operations[0]
                var stored: Product?
                var answer = write.idempotency
                if !settled.changed.isEmpty, case .upsert(_, let product) = operation {
                    stored = product
                    answer?.body = String(buffer: product.json)
                }
                let outcome = try await self.store(operation, on: connection)
                if case .stale(let version, let deleted) = outcome {
                    return CoordinatedResult(outcome: .stale, storedVersion: version, deleted: deleted)
                }
                if let change = LoggedChange(operation, outcome: outcome) {
                    try await self.record(change, on: connection)
                    try await self.indexClaims(of: [operation], on: connection)
                }
                if let answer {
                    try await connection.query(
                        """
                        INSERT INTO idempotency_answers (tenant, key, fingerprint, status, body, etag, created_ms)
                        VALUES (\(operation.tenant), \(answer.key), \(answer.fingerprint), \(answer.status), \(answer.body), \(answer.etag),
                                \(answer.createdAt))
                        """, logger: self.logger)
                }
                try await self.notifyChanges(on: connection)
                return CoordinatedResult(outcome: .applied, stored: stored)
            }
        }
        if result.outcome == .applied { changeSignal.signal() }
        return result
    }

    func versions(tenant: String, id: String, before: Int64?, limit: Int) async throws -> (versions: [LoggedChange], hasMore: Bool)? {
        let rows = try await query(
            """
            SELECT \(unescaped: Self.changeColumns) FROM product_changes
            WHERE tenant = \(tenant) AND product_id = \(id) AND version < \(before ?? Int64.max) ORDER BY version DESC LIMIT \(limit + 1)
            """, logger: logger)
        let versions = try await Self.changes(rows)
        if versions.isEmpty, before == nil, try await product(tenant: tenant, id: id) == nil { return nil }
        return (Array(versions.prefix(limit)), versions.count > limit)
    }

    func restore(tenant: String, id: String, version: Int64, restoredAt: String) async throws -> RestoreOutcome {
        let outcome = try await retryingConflicts {
            try await self.transaction(logger: self.logger) { connection -> RestoreOutcome in
                let stored = try await connection.query(
                    "SELECT version, deleted FROM products WHERE tenant = \(tenant) AND id = \(id) FOR UPDATE", logger: self.logger)
                var current: (version: Int64, deleted: Bool)?
                for try await row in stored.decode((Int64, Bool).self) { current = row }
                let rows = try await connection.query(
                    """
                    SELECT \(unescaped: Self.changeColumns) FROM product_changes
                    WHERE tenant = \(tenant) AND product_id = \(id) AND version = \(version) LIMIT 1
                    """, logger: self.logger)
                guard let wanted = try await Self.changes(rows).first else {
                    let logged = try await connection.query(
                        "SELECT EXISTS (SELECT 1 FROM product_changes WHERE tenant = \(tenant) AND product_id = \(id))", logger: self.logger)
                    var any = false
                    for try await exists in logged.decode(Bool.self) { any = exists }
                    return any || current?.deleted == false ? .versionNotFound : .productNotFound
                }
                let next = Versions.next(after: current?.version ?? 0, writer: 0)
                guard let restored = try wanted.restoredProduct(version: next, restoredAt: restoredAt) else { return .versionIsDeletion }
                try await self.lockClaims(of: [tenant], on: connection)
                let settled = try await self.settleClaims(
                    [.upsert(tenant: tenant, product: restored)], policy: .refuse(handleGiven: true), on: connection)
                if let refusal = settled.refused { return .refused(refusal) }
                let operation = settled.operations[0]
                guard case .upsert(_, let product) = operation, try await self.store(operation, on: connection).isApplied else {
                    throw PostgresStoreError.vanished(id)
                }
                let created = current?.deleted != false
                try await self.record([LoggedChange(operation, created: created)], on: connection)
                try await self.indexClaims(of: [operation], on: connection)
                try await self.notifyChanges(on: connection)
                return .restored(product, created: created)
            }
        }
        if case .restored = outcome { changeSignal.signal() }
        return outcome
    }

    func purgeTombstones(deletedBefore cutoffMs: Int64) async throws -> Int {
        var purged = 0
        while true {
            let count = try await transaction(logger: logger) { connection -> Int in
                // Alone on the horizon's lock: writes checking it wait, then see the new horizon and the purge together.
                try await connection.query("SELECT pg_advisory_xact_lock(\(Self.tombstoneLock))", logger: self.logger)
                try await connection.query(
                    "UPDATE tombstone_horizon SET horizon_ms = GREATEST(horizon_ms, \(cutoffMs)) WHERE id = 1", logger: self.logger)
                let rows = try await connection.query(
                    """
                    WITH gone AS (
                        DELETE FROM products WHERE ctid = ANY(ARRAY(
                            SELECT ctid FROM products WHERE deleted AND deleted_ms < \(cutoffMs) LIMIT \(Self.purgeBatch)))
                        RETURNING 1)
                    SELECT count(*) FROM gone
                    """, logger: self.logger)
                var count: Int64 = 0
                for try await value in rows.decode(Int64.self) { count = value }
                return Int(count)
            }
            purged += count
            if count < Self.purgeBatch { return purged }
        }
    }

    func purgeAnswers(createdBefore cutoffMs: Int64) async throws -> Int {
        let rows = try await query(
            "WITH gone AS (DELETE FROM idempotency_answers WHERE created_ms < \(cutoffMs) RETURNING 1) SELECT count(*) FROM gone",
            logger: logger)
        for try await count in rows.decode(Int64.self) { return Int(count) }
        return 0
    }

    func delete(tenant: String, id: String, version: Int64?, deletedAt: String) async throws -> DeleteOutcome {
        let outcome = try await transaction(logger: logger) { connection -> DeleteOutcome in
            let rows = try await connection.query(
                "SELECT version, deleted, name FROM products WHERE tenant = \(tenant) AND id = \(id) FOR UPDATE", logger: self.logger)
            var stored: (version: Int64, deleted: Bool, name: String)?
            for try await row in rows.decode((Int64, Bool, String).self) { stored = row }
            guard let stored, !stored.deleted else { return .notFound }
            let newVersion = version ?? Versions.next(after: stored.version, writer: 0)
            guard newVersion > stored.version else { return .stale(storedVersion: stored.version) }
            try await connection.query(
                """
                UPDATE products SET body = NULL, version = \(newVersion), deleted = TRUE, deleted_ms = \(Timestamp.nowMilliseconds())
                WHERE tenant = \(tenant) AND id = \(id)
                """, logger: self.logger)
            let operation = WriteOperation.delete(tenant: tenant, id: id, version: newVersion, deletedAt: deletedAt)
            try await self.record(LoggedChange(operation, created: false), on: connection)
            try await self.indexClaims(of: [operation], on: connection)
            try await self.notifyChanges(on: connection)
            return .deleted(version: newVersion, name: stored.name)
        }
        if case .deleted = outcome { changeSignal.signal() }
        return outcome
    }

    func product(tenant: String, id: String) async throws -> Product? {
        let rows = try await query(
            PostgresQuery(
                unsafeSQL: "SELECT body FROM products WHERE tenant = $1 AND id = $2 AND NOT deleted",
                binds: Self.binds([tenant, id])),
            logger: logger)
        return try await Self.products(rows).first
    }

    func list(tenant: String, query: ProductQuery) async throws -> ProductPage {
        var sql = "SELECT body FROM products WHERE tenant = $1 AND NOT deleted"
        var binds = PostgresBindings()
        binds.append(tenant)
        func parameter(_ value: some PostgresThrowingDynamicTypeEncodable) throws -> String {
            try binds.append(value)
            return "$\(binds.count)"
        }
        var descending = false
        switch query.cursor {
        case .startingAfter(let id): sql += " AND id > \(try parameter(id))"
        case .endingBefore(let id):
            sql += " AND id < \(try parameter(id))"
            descending = true
        case nil: break
        }
        if let type = query.type { sql += " AND type = \(try parameter(type))" }
        // `handle <> ''` lets the planner use the partial index on live handles.
        if let handle = query.handle { sql += " AND handle = \(try parameter(handle)) AND handle <> ''" }
        if let category = query.category {
            let walk = CategoryRules.subtreeSQL.replacingOccurrences(of: "$2", with: try parameter(category))
                .replacingOccurrences(of: "SELECT id, depth FROM down", with: "SELECT id FROM down")
            sql += " AND id IN (SELECT product_id FROM product_categories WHERE tenant = $1 AND category_id IN (\(walk)))"
        }
        if let skus = query.skus {
            sql += " AND id IN (SELECT product_id FROM product_skus WHERE tenant = $1 AND sku = ANY(\(try parameter(skus))))"
        }
        if let active = query.active { sql += active ? " AND active" : " AND NOT active" }
        if let ids = query.ids { sql += " AND id = ANY(\(try parameter(ids)))" }
        for (comparison, bound) in [(">=", query.createdGTE), (">", query.createdGT), ("<=", query.createdLTE), ("<", query.createdLT)] {
            if let bound { sql += " AND created_ms \(comparison) \(try parameter(bound))" }
        }
        if let search = query.foldedSearch { sql += " AND strpos(name_folded, \(try parameter(search))) > 0" }
        for filter in query.anyOf {
            sql += " AND (body::jsonb -> \(try parameter(Product.fields[filter.field].name))) ?| \(try parameter(filter.values))::text[]"
        }
        sql += descending ? " ORDER BY id DESC" : " ORDER BY id"
        sql += " LIMIT \(try parameter(query.limit + 1))"
        var products = try await Self.products(try await self.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger))
        let hasMore = products.count > query.limit
        if hasMore { products.removeLast() }
        if descending { products.reverse() }
        return ProductPage(products: products, hasMore: hasMore)
    }
}
