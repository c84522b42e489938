import PostgresNIO
import Shared

/// Handles and SKUs on PostgreSQL: what a round of writes claims is read in a few set-wise statements, then
/// decided by `Claims` in memory; the tenant's claims lock keeps two transactions from granting one handle or SKU.
extension PostgresProductStore {
    /// Takes the claims lock of each tenant (in order, so that no two transactions wait on each other), for the
    /// rest of the transaction: a handle or SKU read free stays free until it commits.
    func lockClaims(of tenants: some Sequence<String>, on connection: PostgresConnection) async throws {
        for tenant in Set(tenants).sorted() {
            try await connection.query("SELECT pg_advisory_xact_lock(7206116, hashtext(\(tenant)))", logger: logger)
        }
    }

    /// Settles the claims of a round of operations (distinct products): upserts become what `Claims` decides
    /// under `policy`; a refusal is returned as the error.
    func settleClaims(
        _ operations: [WriteOperation], policy: Claims.Policy, on connection: PostgresConnection
    ) async throws -> (operations: [WriteOperation], changed: Set<Int>, refused: APIError?) {
        let upserts = operations.indices.compactMap { index -> (Int, String, Product)? in
            if case .upsert(let tenant, let product) = operations[index] { (index, tenant, product) } else { nil }
        }
        guard !upserts.isEmpty else { return (operations, [], nil) }
        let lookup = PostgresClaimLookup()
        // The handles wanted, and the SKUs.
        let handles = upserts.filter { !$0.2.handle.isEmpty }
        let owners = try await connection.query(
            """
            SELECT products.tenant, products.handle, products.id
            FROM products JOIN unnest(\(handles.map(\.1))::text[], \(handles.map(\.2.handle))::text[]) AS wanted (tenant, handle)
                ON products.tenant = wanted.tenant AND products.handle = wanted.handle
            WHERE NOT products.deleted AND products.handle <> ''
            """, logger: logger)
        for try await (tenant, handle, id) in owners.decode((String, String, String).self) { lookup.handleOwners[[tenant, handle]] = id }
        let skus = upserts.flatMap { upsert in upsert.2.skus.map { (upsert.1, $0.sku) } }
        if !skus.isEmpty {
            let rows = try await connection.query(
                """
                SELECT product_skus.tenant, product_skus.sku, product_id, variant_id
                FROM product_skus JOIN unnest(\(skus.map(\.0))::text[], \(skus.map(\.1))::text[]) AS wanted (tenant, sku)
                    ON product_skus.tenant = wanted.tenant AND product_skus.sku = wanted.sku
                """, logger: logger)
            for try await (tenant, sku, product, variant) in rows.decode((String, String, String, String).self) {
                lookup.holdSKU(sku, by: product, variant: variant, tenant: tenant)
            }
        }
        // The handles a suffix may be needed for: those made from a name, and those another product holds.
        var bases: [(tenant: String, base: String)] = []
        var wanted: [[String]: Int] = [:]
        for (_, tenant, product) in upserts where !product.handle.isEmpty { wanted[[tenant, product.handle], default: 0] += 1 }
        for (_, tenant, product) in upserts {
            if product.handle.isEmpty {
                bases.append((tenant, VariantRules.handle(from: product.name)))
            } else if let owner = lookup.handleOwners[[tenant, product.handle]], owner != product.id {
                bases.append((tenant, Claims.baseOf(product.handle)))
            } else if wanted[[tenant, product.handle]]! > 1 {
                bases.append((tenant, Claims.baseOf(product.handle)))
            }
        }
        let categories = upserts.flatMap { upsert in upsert.2.categoryIDs.map { (upsert.1, $0) } }
        if !categories.isEmpty {
            let rows = try await connection.query(
                """
                SELECT categories.tenant, categories.id
                FROM categories JOIN unnest(\(categories.map(\.0))::text[], \(categories.map(\.1))::text[]) AS wanted (tenant, id)
                    ON categories.tenant = wanted.tenant AND categories.id = wanted.id
                """, logger: logger)
            for try await (tenant, id) in rows.decode((String, String).self) { lookup.categories.insert([tenant, id]) }
        }
        if !bases.isEmpty {
            for base in bases { lookup.baseHandles[[base.tenant, base.base]] = [:] }
            // In the C collation, `base` and every `base-N` sort from `base` up to (not including) `base.`.
            let rows = try await connection.query(
                """
                SELECT wanted.tenant, wanted.base, products.handle, products.id
                FROM unnest(\(bases.map(\.tenant))::text[], \(bases.map(\.base))::text[]) AS wanted (tenant, base)
                JOIN products ON products.tenant = wanted.tenant
                    AND products.handle >= wanted.base AND products.handle < wanted.base || '.'
                WHERE NOT products.deleted AND products.handle <> ''
                """, logger: logger)
            for try await (tenant, base, handle, id) in rows.decode((String, String, String, String).self) {
                lookup.baseHandles[[tenant, base], default: [:]][handle] = id
            }
        }
        var settled = operations
        var changed = Set<Int>()
        for (index, tenant, product) in upserts {
            var stored = product
            switch try Claims.decide(product, tenant: tenant, policy: policy, lookup: lookup) {
            case .unchanged: break
            case .refused(let error): return (operations, [], error)
            case .changed(let decided):
                stored = decided
                settled[index] = .upsert(tenant: tenant, product: decided)
                changed.insert(index)
            }
            lookup.claim(stored, tenant: tenant)
        }
        return (settled, changed, nil)
    }

    /// Brings the SKU index and the category links in line with applied operations (distinct products): theirs,
    /// none once deleted. Only what changed is written. Those at the indices `new` had no row before (not even a
    /// tombstone): none of theirs is read first, and an ingest of products without variants or categories runs no
    /// statement here.
    func indexClaims(of all: [WriteOperation], new: Set<Int> = [], on connection: PostgresConnection) async throws {
        let operations = all.indices.filter { index in
            guard new.contains(index) else { return true }
            guard case .upsert(_, let product) = all[index] else { return false }
            return !product.categoryIDs.isEmpty || product.variants.contains { $0.sku != nil }
        }.map { all[$0] }
        guard !operations.isEmpty else { return }
        try await indexSKUs(of: operations, on: connection)
        var old: [[String]: [String]] = [:]
        let rows = try await connection.query(
            """
            SELECT product_categories.tenant, product_categories.product_id, category_id
            FROM product_categories JOIN unnest(\(operations.map(\.tenant))::text[], \(operations.map(\.productID))::text[]) AS wanted (tenant, id)
                ON product_categories.tenant = wanted.tenant AND product_categories.product_id = wanted.id
            """, logger: logger)
        for try await (tenant, id, category) in rows.decode((String, String, String).self) { old[[tenant, id], default: []].append(category) }
        var removed: (tenants: [String], categories: [String], products: [String]) = ([], [], [])
        var put: (tenants: [String], categories: [String], products: [String]) = ([], [], [])
        for operation in operations {
            let new: [String] = if case .upsert(_, let product) = operation { product.categoryIDs } else { [] }
            let before = old[[operation.tenant, operation.productID]] ?? []
            guard !before.isEmpty || !new.isEmpty else { continue }
            let changes = Claims.skuChanges(old: before.map { ($0, "") }, new: new.map { ($0, "") })
            for category in changes.removed {
                removed.tenants.append(operation.tenant)
                removed.categories.append(category)
                removed.products.append(operation.productID)
            }
            for (category, _) in changes.put {
                put.tenants.append(operation.tenant)
                put.categories.append(category)
                put.products.append(operation.productID)
            }
        }
        if !removed.categories.isEmpty {
            try await connection.query(
                """
                DELETE FROM product_categories
                USING unnest(\(removed.tenants)::text[], \(removed.categories)::text[], \(removed.products)::text[]) AS gone (tenant, category, product)
                WHERE product_categories.tenant = gone.tenant AND category_id = gone.category AND product_id = gone.product
                """, logger: logger)
        }
        if !put.categories.isEmpty {
            try await connection.query(
                """
                INSERT INTO product_categories (tenant, category_id, product_id)
                SELECT * FROM unnest(\(put.tenants)::text[], \(put.categories)::text[], \(put.products)::text[])
                ON CONFLICT DO NOTHING
                """, logger: logger)
        }
    }

    /// The SKU index's part of `indexClaims`.
    private func indexSKUs(of operations: [WriteOperation], on connection: PostgresConnection) async throws {
        var old: [[String]: [(sku: String, variantID: String)]] = [:]
        let rows = try await connection.query(
            """
            SELECT product_skus.tenant, product_skus.product_id, sku, variant_id
            FROM product_skus JOIN unnest(\(operations.map(\.tenant))::text[], \(operations.map(\.productID))::text[]) AS wanted (tenant, id)
                ON product_skus.tenant = wanted.tenant AND product_skus.product_id = wanted.id
            """, logger: logger)
        for try await (tenant, id, sku, variant) in rows.decode((String, String, String, String).self) {
            old[[tenant, id], default: []].append((sku, variant))
        }
        var removed: (tenants: [String], skus: [String]) = ([], [])
        var put: (tenants: [String], skus: [String], products: [String], variants: [String]) = ([], [], [], [])
        for operation in operations {
            let new: [(sku: String, variantID: String)] = if case .upsert(_, let product) = operation { product.skus } else { [] }
            let before = old[[operation.tenant, operation.productID]] ?? []
            guard !before.isEmpty || !new.isEmpty else { continue }
            let changes = Claims.skuChanges(old: before, new: new)
            for sku in changes.removed {
                removed.tenants.append(operation.tenant)
                removed.skus.append(sku)
            }
            for (sku, variant) in changes.put {
                put.tenants.append(operation.tenant)
                put.skus.append(sku)
                put.products.append(operation.productID)
                put.variants.append(variant)
            }
        }
        if !removed.skus.isEmpty {
            try await connection.query(
                """
                DELETE FROM product_skus USING unnest(\(removed.tenants)::text[], \(removed.skus)::text[]) AS gone (tenant, sku)
                WHERE product_skus.tenant = gone.tenant AND product_skus.sku = gone.sku
                """, logger: logger)
        }
        if !put.skus.isEmpty {
            try await connection.query(
                """
                INSERT INTO product_skus (tenant, sku, product_id, variant_id)
                SELECT * FROM unnest(\(put.tenants)::text[], \(put.skus)::text[], \(put.products)::text[], \(put.variants)::text[])
                ON CONFLICT (tenant, sku) DO UPDATE SET product_id = EXCLUDED.product_id, variant_id = EXCLUDED.variant_id
                """, logger: logger)
        }
    }
}

/// What a round's statements found, and what the round claimed so far (a later product of the round sees the
/// handles and SKUs an earlier one took). Every lookup is by key: a round of 1,000 products costs 1,000 lookups.
final class PostgresClaimLookup: ClaimLookup {
    /// By (tenant, handle): the products holding the handles the round wants, and those it claimed.
    var handleOwners: [[String]: String] = [:]
    /// By (tenant, base): the handles `base` and `base-N` the database holds, with their products.
    var baseHandles: [[String]: [String: String]] = [:]
    /// By (tenant, base): the handles of that base the round claimed.
    private var claimedByBase: [[String]: [String: String]] = [:]
    private(set) var skuOwners: [[String]: (productID: String, variantID: String)] = [:]
    /// By (tenant, product): the SKUs read or claimed for it.
    private var skusByProduct: [[String]: Set<String>] = [:]
    /// The categories read, as (tenant, id).
    var categories: Set<[String]> = []

    func handleOwner(tenant: String, handle: String) throws -> String? { handleOwners[[tenant, handle]] }

    func handles(tenant: String, startingWith base: String) throws -> [String: String] {
        var found = baseHandles[[tenant, base]] ?? [:]
        // The base itself as read or claimed, and the suffixed ones the round claimed.
        if let holder = handleOwners[[tenant, base]] { found[base] = holder }
        for (handle, holder) in claimedByBase[[tenant, base]] ?? [:] { found[handle] = holder }
        return found
    }

    /// Notes that `product` holds `sku` (read, or claimed by the round).
    func holdSKU(_ sku: String, by product: String, variant: String, tenant: String) {
        if let previous = skuOwners[[tenant, sku]] { skusByProduct[[tenant, previous.productID]]?.remove(sku) }
        skuOwners[[tenant, sku]] = (product, variant)
        skusByProduct[[tenant, product], default: []].insert(sku)
    }

    func skuOwner(tenant: String, sku: String) throws -> (productID: String, variantID: String)? { skuOwners[[tenant, sku]] }

    func categoryExists(tenant: String, id: String) throws -> Bool { categories.contains([tenant, id]) }

    /// Those of the round's SKUs the product holds (the others it does not claim again).
    func skus(tenant: String, heldBy productID: String) throws -> Set<String> { skusByProduct[[tenant, productID]] ?? [] }

    /// Notes what a product of the round now holds.
    func claim(_ product: Product, tenant: String) {
        handleOwners[[tenant, product.handle]] = product.id
        claimedByBase[[tenant, Claims.baseOf(product.handle)], default: [:]][product.handle] = product.id
        for (sku, variant) in product.skus { holdSKU(sku, by: product.id, variant: variant, tenant: tenant) }
    }
}
