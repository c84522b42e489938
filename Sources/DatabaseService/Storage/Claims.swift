import Shared

/// Who holds a handle or a SKU among a shop's live products, as a write's transaction sees them.
protocol ClaimLookup {
    /// The live product holding `handle`, if any.
    func handleOwner(tenant: String, handle: String) throws -> String?
    /// The live products' handles that are `base` or `base-N`, with the product holding each.
    func handles(tenant: String, startingWith base: String) throws -> [String: String]
    /// The live variant holding `sku`, if any.
    func skuOwner(tenant: String, sku: String) throws -> (productID: String, variantID: String)?
    /// The SKUs `productID` holds now: only the others are looked up one by one (a price change of a product of
    /// 10,000 variants reads its SKUs once).
    func skus(tenant: String, heldBy productID: String) throws -> Set<String>
    /// Whether the shop has this category.
    func categoryExists(tenant: String, id: String) throws -> Bool
}

/// The Database Service's decision on the handle, SKUs and categories a product claims: the one place where uniqueness across
/// replicas is decided, inside the transaction that stores the product.
enum Claims {
    /// How a clash is settled.
    enum Policy: Equatable {
        /// The client waits for the answer (a coordinated write): a SKU, or a handle it gave (`handleGiven`), held
        /// by another product is refused with 409; a handle the service made gets a suffix.
        case refuse(handleGiven: Bool)
        /// The write was acknowledged before the clash could be known (a journaled write, an import's row): it is
        /// stored, with the next free `-N` suffix on its handle, without the SKUs another variant already holds and
        /// without categories the shop does not have.
        case settle
    }

    /// What the product becomes.
    enum Decision: Equatable {
        case unchanged
        /// Stored as this product instead (a suffixed handle, SKUs dropped): it comes back to replicas on the feed.
        case changed(Product)
        case refused(APIError)
    }

    /// Decides the product's handle and SKUs against what other live products of `tenant` hold.
    static func decide(_ product: Product, tenant: String, policy: Policy, lookup: some ClaimLookup) throws -> Decision {
        var settled = product
        if settled.handle.isEmpty {
            settled.handle = try freeHandle(VariantRules.handle(from: product.name), tenant: tenant, id: product.id, lookup: lookup)
        } else if let owner = try lookup.handleOwner(tenant: tenant, handle: product.handle), owner != product.id {
            if policy == .refuse(handleGiven: true) { return .refused(.handleTaken(product.handle, productID: owner)) }
            settled.handle = try freeHandle(baseOf(product.handle), tenant: tenant, id: product.id, lookup: lookup)
        }
        let held = settled.variants.contains { $0.sku != nil } ? try lookup.skus(tenant: tenant, heldBy: product.id) : []
        for index in settled.variants.indices {
            guard let sku = settled.variants[index].sku, !held.contains(sku), let owner = try lookup.skuOwner(tenant: tenant, sku: sku),
                  owner.productID != product.id
            else { continue }
            if case .refuse = policy {
                return .refused(.skuTaken(sku, productID: owner.productID, variantID: owner.variantID, param: "variants[\(index)][sku]"))
            }
            settled.variants[index].sku = nil
        }
        for (index, category) in product.categoryIDs.enumerated() where try !lookup.categoryExists(tenant: tenant, id: category) {
            if case .refuse = policy { return .refused(.invalidParameter("category_ids[\(index)]", "No category \(category) in this shop")) }
            settled.categoryIDs.removeAll { $0 == category }
        }
        return settled == product ? .unchanged : .changed(settled)
    }

    /// The first of `base`, `base-2`, `base-3`, … that no other live product holds.
    static func freeHandle(_ base: String, tenant: String, id: String, lookup: some ClaimLookup) throws -> String {
        let taken = try lookup.handles(tenant: tenant, startingWith: base)
        var candidate = 1
        while true {
            let handle = VariantRules.handle(base, candidate: candidate)
            if taken[handle] == nil || taken[handle] == id { return handle }
            candidate += 1
        }
    }

    /// A handle without its `-N` suffix: `shirt-3` is a suffixed `shirt`, so its clash becomes `shirt-4`, not `shirt-3-2`.
    static func baseOf(_ handle: String) -> String {
        guard let dash = handle.lastIndex(of: "-"), let number = Int(handle[handle.index(after: dash)...]), number > 1 else { return handle }
        return String(handle[..<dash])
    }

    /// The rows of the SKU index (or the category links) to remove and to put when a product's go from `old` to
    /// `new`: a change of a 10,000-variant product touches only the SKUs that changed.
    static func skuChanges(
        old: [(sku: String, variantID: String)], new: [(sku: String, variantID: String)]
    ) -> (removed: [String], put: [(sku: String, variantID: String)]) {
        var before: [String: String] = [:]
        for (sku, variant) in old { before[sku] = variant }
        var after: [String: String] = [:]
        for (sku, variant) in new { after[sku] = variant }
        let removed = before.keys.filter { after[$0] == nil }
        let put = new.filter { before[$0.sku] != $0.variantID }
        return (removed, put)
    }
}

/// The SKU index, the same on both backends: one row per SKU of a live variant.
enum SKUSchema {
    static let createTable = """
        CREATE TABLE product_skus (
            tenant TEXT NOT NULL,
            sku TEXT NOT NULL,
            product_id TEXT NOT NULL,
            variant_id TEXT NOT NULL,
            PRIMARY KEY (tenant, sku)
        )
        """
    static let createIndex = "CREATE INDEX product_skus_product ON product_skus (tenant, product_id)"
}
