import Foundation
import GRDB
import GRDBSQLite
import NIOCore
import Shared

/// Products, their history and idempotency answers on SQLite.
struct SQLiteProductStore: ProductStore, SQLiteFeatureStore {
    let database: SQLiteStore

    func apply(_ operations: [WriteOperation], recordedAtMs: [Int64?]) async throws -> [ApplyOutcome] {
        // One thread writes: everything but the writes themselves (the rows' and the log's JSON) is made before.
        let changes = operations.map { LoggedChange($0, created: true) }
        // The row keeps the product's JSON the change logs: encoded once.
        let rows = zip(operations, changes).map { Self.row(for: $0, json: $1.productJSON) }
        let outcomes = try await write { db in
            let horizonMs = recordedAtMs.isEmpty ? 0 : try Int64.fetchOne(db, sql: "SELECT horizon_ms FROM tombstone_horizon") ?? 0
            let writes = try Writes(db)
            let lookup = SQLiteClaimLookup(db: db)
            return try operations.indices.map { index in
                var (operation, row, change) = (operations[index], rows[index], changes[index])
                // Acknowledged before any clash was known: settled, never refused.
                if case .upsert(let tenant, let product) = operation,
                   case .changed(let settled) = try Claims.decide(product, tenant: tenant, policy: .settle, lookup: lookup)
                {
                    operation = .upsert(tenant: tenant, product: settled)
                    change = LoggedChange(operation, created: true)
                    row = Self.row(for: operation, json: change.productJSON)
                }
                let outcome = try Self.store(
                    row, with: writes, recordedAtMs: recordedAtMs.isEmpty ? nil : recordedAtMs[index], horizonMs: horizonMs)
                if let change = change.made(by: outcome) {
                    try Self.record(change, with: writes)
                    try lookup.indexClaims(of: operation, new: outcome == .inserted)
                }
                return outcome
            }
        }
        if outcomes.contains(where: \.isApplied) { changeSignal.signal() }
        return outcomes
    }

    func write(_ write: CoordinatedWrite) async throws -> CoordinatedResult {
        let operation = write.operation
        let result = try await self.write { db -> CoordinatedResult in
            if let answer = write.idempotency,
               let stored = try GRDB.Row.fetchOne(
                   db, sql: "SELECT * FROM idempotency_answers WHERE tenant = ? AND key = ?", arguments: [operation.tenant, answer.key])
            {
                guard stored["fingerprint"] == answer.fingerprint else { return CoordinatedResult(outcome: .keyReused) }
                return CoordinatedResult(
                    outcome: .replayed,
                    answer: StoredAnswer(
                        key: answer.key, fingerprint: answer.fingerprint, status: stored["status"], body: stored["body"],
                        etag: stored["etag"], createdAt: stored["created_ms"]))
            }
            if let expected = write.expectedVersion {
                let state = try Self.state(tenant: operation.tenant, id: operation.productID, with: Writes(db))
                guard let state, !state.deleted, state.version == expected else {
                    return CoordinatedResult(outcome: .preconditionFailed, storedVersion: state?.version ?? 0, deleted: state?.deleted ?? true)
                }
            }
            let writes = try Writes(db)
            let lookup = SQLiteClaimLookup(db: db)
            var operation = operation
            var answer = write.idempotency
            var settled: Product?
            if case .upsert(let tenant, let product) = operation {
                switch try Claims.decide(product, tenant: tenant, policy: .refuse(handleGiven: write.handleGiven ?? false), lookup: lookup) {
                case .unchanged: break
                case .refused(let error): return CoordinatedResult(refused: error)
                case .changed(let changed):
                    operation = .upsert(tenant: tenant, product: changed)
                    settled = changed
                    answer?.body = String(buffer: changed.json)
                }
            }
            let outcome = try Self.store(Self.row(for: operation), with: writes)
            if case .stale(let version, let deleted) = outcome {
                return CoordinatedResult(outcome: .stale, storedVersion: version, deleted: deleted)
            }
            if let change = LoggedChange(operation, outcome: outcome) {
                try Self.record(change, with: writes)
                try lookup.indexClaims(of: operation)
            }
            if let answer {
                try db.execute(
                    sql: """
                        INSERT INTO idempotency_answers (tenant, key, fingerprint, status, body, etag, created_ms)
                        VALUES (?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [operation.tenant, answer.key, answer.fingerprint, answer.status, answer.body, answer.etag, answer.createdAt])
            }
            return CoordinatedResult(outcome: .applied, stored: settled)
        }
        if result.outcome == .applied { changeSignal.signal() }
        return result
    }

    func purgeAnswers(createdBefore cutoffMs: Int64) async throws -> Int {
        try await write { db in
            try db.execute(sql: "DELETE FROM idempotency_answers WHERE created_ms < ?", arguments: [cutoffMs])
            return db.changesCount
        }
    }

    func purgeTombstones(deletedBefore cutoffMs: Int64) async throws -> Int {
        var purged = 0
        while true {
            let count = try await write { db -> Int in
                // The horizon rises in the same transaction as the purge: no write applied after it, recorded before
                // it, can recreate a product whose tombstone goes.
                try db.execute(sql: "UPDATE tombstone_horizon SET horizon_ms = max(horizon_ms, ?) WHERE id = 1", arguments: [cutoffMs])
                try db.execute(
                    sql: """
                        DELETE FROM products WHERE (tenant, id) IN (
                            SELECT tenant, id FROM products WHERE deleted AND deleted_ms < ? LIMIT ?)
                        """,
                    arguments: [cutoffMs, Self.purgeBatch])
                return db.changesCount
            }
            purged += count
            if count < Self.purgeBatch { return purged }
        }
    }

    func versions(tenant: String, id: String, before: Int64?, limit: Int) async throws -> (versions: [LoggedChange], hasMore: Bool)? {
        try await read { db in
            let rows = try GRDB.Row.fetchAll(
                db,
                sql: """
                    SELECT \(Self.changeColumns) FROM product_changes
                    WHERE tenant = ? AND product_id = ? AND version < ? ORDER BY version DESC LIMIT ?
                    """,
                arguments: [tenant, id, before ?? Int64.max, limit + 1])
            if rows.isEmpty, before == nil,
               try Bool.fetchOne(db, sql: "SELECT deleted FROM products WHERE tenant = ? AND id = ?", arguments: [tenant, id]) != false
            {
                return nil
            }
            return (rows.prefix(limit).map(Self.change(from:)), rows.count > limit)
        }
    }

    func restore(tenant: String, id: String, version: Int64, restoredAt: String) async throws -> RestoreOutcome {
        let outcome = try await write { db -> RestoreOutcome in
            let writes = try Writes(db)
            let current = try Self.state(tenant: tenant, id: id, with: writes)
            let wanted = try GRDB.Row.fetchOne(
                db, sql: "SELECT \(Self.changeColumns) FROM product_changes WHERE tenant = ? AND product_id = ? AND version = ? LIMIT 1",
                arguments: [tenant, id, version]
            ).map(Self.change(from:))
            guard let wanted else {
                let logged = try Bool.fetchOne(
                    db, sql: "SELECT EXISTS (SELECT 1 FROM product_changes WHERE tenant = ? AND product_id = ?)", arguments: [tenant, id]) ?? false
                return logged || current?.deleted == false ? .versionNotFound : .productNotFound
            }
            let next = Versions.next(after: current?.version ?? 0, writer: 0)
            guard var product = try wanted.restoredProduct(version: next, restoredAt: restoredAt) else { return .versionIsDeletion }
            let lookup = SQLiteClaimLookup(db: db)
            switch try Claims.decide(product, tenant: tenant, policy: .refuse(handleGiven: true), lookup: lookup) {
            case .unchanged: break
            case .refused(let error): return .refused(error)
            case .changed(let changed): product = changed
            }
            let operation = WriteOperation.upsert(tenant: tenant, product: product)
            _ = try Self.store(Self.row(for: operation), with: writes)
            let created = current?.deleted != false
            try Self.record(LoggedChange(operation, created: created), with: writes)
            try lookup.indexClaims(of: operation)
            return .restored(product, created: created)
        }
        if case .restored = outcome { changeSignal.signal() }
        return outcome
    }

    func delete(tenant: String, id: String, version: Int64?, deletedAt: String) async throws -> DeleteOutcome {
        let outcome = try await write { db -> DeleteOutcome in
            let writes = try Writes(db)
            guard let stored = try Self.state(tenant: tenant, id: id, with: writes), !stored.deleted else {
                return .notFound
            }
            let newVersion = version ?? Versions.next(after: stored.version, writer: 0)
            guard newVersion > stored.version else { return .stale(storedVersion: stored.version) }
            let operation = WriteOperation.delete(tenant: tenant, id: id, version: newVersion, deletedAt: deletedAt)
            _ = try Self.store(Self.row(for: operation), with: writes)
            try Self.record(LoggedChange(operation, created: false), with: writes)
            try SQLiteClaimLookup(db: db).indexClaims(of: operation)
            return .deleted(version: newVersion, name: stored.name)
        }
        if case .deleted = outcome { changeSignal.signal() }
        return outcome
    }

    func product(tenant: String, id: String) async throws -> Product? {
        try await read { db in
            try GRDB.Row.fetchOne(
                db, sql: "SELECT * FROM products WHERE tenant = ? AND id = ? AND deleted = 0", arguments: [tenant, id]
            ).map(Self.product(from:))
        }
    }

    func list(tenant: String, query: ProductQuery) async throws -> ProductPage {
        let (sql, arguments, descending) = Self.listSQL(tenant: tenant, query: query)
        return try await read { db in
            var products = try GRDB.Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.product(from:))
            let hasMore = products.count > query.limit
            if hasMore { products.removeLast() }
            if descending { products.reverse() }
            return ProductPage(products: products, hasMore: hasMore)
        }
    }

    func listJSON(tenant: String, query: ProductQuery) async throws -> ByteBuffer {
        let (sql, arguments, descending) = Self.listSQL(tenant: tenant, query: query)
        return try await read { db in
            // Each row's JSON is copied as stored; then the page is assembled in paging order.
            var products = ByteBuffer()
            products.reserveCapacity((query.limit + 1) * 288)
            var ranges: [Range<Int>] = []
            ranges.reserveCapacity(query.limit + 1)
            let rows = try GRDB.Row.fetchCursor(db.cachedStatement(sql: sql), arguments: arguments)
            var cut = false
            while let row = try rows.next() {
                // Past `maxPageBytes`, the page ends early with more to follow (the rows read are on the cursor's side).
                if products.readableBytes > ServiceContract.maxPageBytes {
                    cut = true
                    break
                }
                let start = products.writerIndex
                products.writeString(row[0] as String)
                ranges.append(start..<products.writerIndex)
            }
            let hasMore = cut || ranges.count > query.limit
            if ranges.count > query.limit { ranges.removeLast() }
            if descending { ranges.reverse() }
            var page = ByteBuffer()
            page.reserveCapacity(products.readableBytes + ranges.count + 32)
            ProductPage.writeJSON(ranges, hasMore: hasMore, into: &page) { range, page in
                page.writeBytes(products.readableBytesView[range])
            }
            return page
        }
    }

    /// A listing's query: the page's rows and one more (whether more exist), in paging order.
    static func listSQL(tenant: String, query: ProductQuery) -> (sql: String, arguments: StatementArguments, descending: Bool) {
        var sql = """
            SELECT body FROM products WHERE tenant = ? AND deleted = 0
            """
        var arguments: StatementArguments = [tenant]
        var descending = false
        switch query.cursor {
        case .startingAfter(let id):
            sql += " AND id > ?"
            arguments += [id]
        case .endingBefore(let id):
            sql += " AND id < ?"
            arguments += [id]
            descending = true
        case nil:
            break
        }
        if let type = query.type {
            sql += " AND type = ?"
            arguments += [type]
        }
        if let handle = query.handle {
            // `handle <> ''` lets SQLite use the partial index on live handles.
            sql += " AND handle = ? AND handle <> ''"
            arguments += [handle]
        }
        if let category = query.category {
            sql += """
                 AND id IN (SELECT product_id FROM product_categories WHERE tenant = ? AND category_id IN (
                    \(SQLiteCategoryStore.subtreeSQL.replacingOccurrences(of: "?1", with: "?").replacingOccurrences(of: "?2", with: "?")
                        .replacingOccurrences(of: "SELECT id, depth FROM down", with: "SELECT id FROM down"))))
                """
            // The links' tenant, then the walk's: the tenant, the category, the tenant again.
            arguments += [tenant, tenant, category, tenant]
        }
        if let skus = query.skus {
            sql += " AND id IN (SELECT product_id FROM product_skus WHERE tenant = ? AND sku IN (\(skus.map { _ in "?" }.joined(separator: ", "))))"
            arguments += [tenant]
            arguments += StatementArguments(skus)
        }
        if let active = query.active { sql += active ? " AND active" : " AND NOT active" }
        if let ids = query.ids {
            sql += " AND id IN (\(Array(repeating: "?", count: ids.count).joined(separator: ", ")))"
            arguments += StatementArguments(ids)
        }
        for (comparison, bound) in [(">=", query.createdGTE), (">", query.createdGT), ("<=", query.createdLTE), ("<", query.createdLT)] {
            if let bound {
                sql += " AND products_epoch_ms(created_at) \(comparison) ?"
                arguments += [bound]
            }
        }
        if let search = query.foldedSearch {
            sql += " AND instr(products_fold(name), ?) > 0"
            arguments += [search]
        }
        for filter in query.anyOf {
            let path = "$.\(Product.fields[filter.field].name)"
            sql += " AND EXISTS (SELECT 1 FROM json_each(body, ?) WHERE value IN (\(filter.values.map { _ in "?" }.joined(separator: ", "))))"
            arguments += [path]
            arguments += StatementArguments(filter.values)
        }
        sql += descending ? " ORDER BY id DESC LIMIT ?" : " ORDER BY id LIMIT ?"
        arguments += [query.limit + 1]
        return (sql, arguments, descending)
    }

}

/// Handles and SKUs as the write's transaction sees them on SQLite (one writer: nothing changes under it).
struct SQLiteClaimLookup: ClaimLookup {
    let db: Database

    func handleOwner(tenant: String, handle: String) throws -> String? {
        try String.fetchOne(
            // Every condition of the partial index on live handles is named, so that SQLite uses it.
            db.cachedStatement(sql: "SELECT id FROM products WHERE tenant = ? AND handle = ? AND deleted = 0 AND handle <> ''"),
            arguments: [tenant, handle])
    }

    func handles(tenant: String, startingWith base: String) throws -> [String: String] {
        // Bytewise, `base` and every `base-N` sort from `base` up to (not including) `base.`: one range of the index.
        let rows = try GRDB.Row.fetchAll(
            db.cachedStatement(
                sql: "SELECT handle, id FROM products WHERE tenant = ? AND deleted = 0 AND handle <> '' AND handle >= ? AND handle < ?"),
            arguments: [tenant, base, base + "."])
        return Dictionary(rows.map { ($0[0] as String, $0[1] as String) }, uniquingKeysWith: { first, _ in first })
    }

    func skuOwner(tenant: String, sku: String) throws -> (productID: String, variantID: String)? {
        try GRDB.Row.fetchOne(
            db.cachedStatement(sql: "SELECT product_id, variant_id FROM product_skus WHERE tenant = ? AND sku = ?"), arguments: [tenant, sku]
        ).map { ($0[0], $0[1]) }
    }

    func skus(tenant: String, heldBy productID: String) throws -> Set<String> {
        Set(try String.fetchAll(
            db.cachedStatement(sql: "SELECT sku FROM product_skus WHERE tenant = ? AND product_id = ?"), arguments: [tenant, productID]))
    }

    func categoryExists(tenant: String, id: String) throws -> Bool {
        try Bool.fetchOne(
            db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM categories WHERE tenant = ? AND id = ?)"), arguments: [tenant, id]) ?? false
    }

    /// Brings the SKU index and the category links in line with an applied operation: a product's, none once it
    /// is deleted. A `new` product (no row before, not even a tombstone) has none to read first: an ingest of
    /// products without variants or categories runs no statement here.
    func indexClaims(of operation: WriteOperation, new: Bool = false) throws {
        if new {
            guard case .upsert(let tenant, let product) = operation else { return }
            let sku = try db.cachedStatement(sql: "INSERT INTO product_skus (tenant, sku, product_id, variant_id) VALUES (?, ?, ?, ?)")
            for (code, variant) in product.skus { try sku.execute(arguments: [tenant, code, product.id, variant]) }
            let link = try db.cachedStatement(sql: "INSERT INTO product_categories (tenant, category_id, product_id) VALUES (?, ?, ?)")
            for category in product.categoryIDs { try link.execute(arguments: [tenant, category, product.id]) }
            return
        }
        try indexSKUs(of: operation)
        let old = try String.fetchAll(
            db.cachedStatement(sql: "SELECT category_id FROM product_categories WHERE tenant = ? AND product_id = ?"),
            arguments: [operation.tenant, operation.productID])
        let new: [String] = if case .upsert(_, let product) = operation { product.categoryIDs } else { [] }
        guard !old.isEmpty || !new.isEmpty else { return }
        let (removed, put) = Claims.skuChanges(old: old.map { ($0, "") }, new: new.map { ($0, "") })
        for category in removed {
            try db.execute(
                sql: "DELETE FROM product_categories WHERE tenant = ? AND category_id = ? AND product_id = ?",
                arguments: [operation.tenant, category, operation.productID])
        }
        for (category, _) in put {
            try db.execute(
                sql: "INSERT INTO product_categories (tenant, category_id, product_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                arguments: [operation.tenant, category, operation.productID])
        }
    }

    /// Brings the SKU index in line with an applied operation: a product's SKUs, none once it is deleted.
    private func indexSKUs(of operation: WriteOperation) throws {
        let old = try GRDB.Row.fetchAll(
            db.cachedStatement(sql: "SELECT sku, variant_id FROM product_skus WHERE tenant = ? AND product_id = ?"),
            arguments: [operation.tenant, operation.productID]
        ).map { (sku: $0[0] as String, variantID: $0[1] as String) }
        let new: [(sku: String, variantID: String)] = if case .upsert(_, let product) = operation { product.skus } else { [] }
        guard !old.isEmpty || !new.isEmpty else { return }
        let (removed, put) = Claims.skuChanges(old: old, new: new)
        let remove = try db.cachedStatement(sql: "DELETE FROM product_skus WHERE tenant = ? AND sku = ?")
        for sku in removed { try remove.execute(arguments: [operation.tenant, sku]) }
        let insert = try db.cachedStatement(
            sql: """
                INSERT INTO product_skus (tenant, sku, product_id, variant_id) VALUES (?, ?, ?, ?)
                ON CONFLICT (tenant, sku) DO UPDATE SET product_id = excluded.product_id, variant_id = excluded.variant_id
                """)
        for (sku, variantID) in put { try insert.execute(arguments: [operation.tenant, sku, operation.productID, variantID]) }
    }
}
