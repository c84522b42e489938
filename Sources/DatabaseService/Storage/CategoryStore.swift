import Shared

/// A shop's category tree: at most 16 levels, no cycles, handles unique per shop; a category with children or
/// products is not deleted.
protocol CategoryStore: Sendable {
    /// Stores a new category (its handle made from its name when not given); the refusal when its parent is
    /// unknown, the tree would be too deep, or its handle is taken.
    func create(tenant: String, id: String, input: CategoryInput, now: String) async throws -> CategoryWrite
    func category(tenant: String, id: String) async throws -> Category?
    /// At most `limit` categories after `after` in id order (under `parent` when given: `.some(nil)` for roots), and
    /// whether more follow.
    func categories(tenant: String, after: String?, limit: Int, parent: String??) async throws -> CategoryPage
    /// Changes what the input gives; `.missing` when there is no such category.
    func update(tenant: String, id: String, input: CategoryInput, now: String) async throws -> CategoryWrite
    func delete(tenant: String, id: String) async throws -> CategoryDeletion
    /// The category's id and its descendants' (nil when there is no such category).
    func subtree(tenant: String, id: String) async throws -> [String]?
}

/// What a category's create or update came to.
enum CategoryWrite: Sendable, Equatable {
    case written(Category)
    case missing
    case refused(APIError)
}

/// What a category's delete came to.
enum CategoryDeletion: Sendable, Equatable {
    case deleted
    case missing
    case notEmpty(children: Bool)
}

/// The tree's rules, decided the same on both backends from what the transaction read.
enum CategoryRules {
    /// Statements walk at most this many levels: past the limit, so a corrupt chain cannot loop.
    static let walkLimit = CategoryInput.maxDepth + 2

    /// Whether moving a subtree of `height` levels (1: a leaf) under a parent at `parentDepth` (1: a root) keeps
    /// the tree within 16 levels; a refusal naming `parent_id` otherwise.
    static func checkDepth(parentDepth: Int, height: Int) throws(APIError) {
        guard parentDepth + height <= CategoryInput.maxDepth else {
            throw .invalidParameter("parent_id", "Categories nest at most \(CategoryInput.maxDepth) levels deep; this would make \(parentDepth + height)")
        }
    }

    static func unknownParent(_ id: String) -> APIError {
        .invalidParameter("parent_id", "No category \(id) in this shop")
    }

    static let cycle = APIError.invalidParameter("parent_id", "A category cannot be moved under itself or one of its descendants")

    static func handleTaken(_ handle: String, by id: String) -> APIError {
        APIError(.conflict, code: "handle_taken", message: "Handle '\(handle)' is already held by category \(id)", param: "handle")
    }

    /// The first of `base`, `base-2`, … not in `taken` (handle → holder) or held by `id` itself.
    static func freeHandle(_ base: String, taken: [String: String], id: String) -> String {
        var candidate = 1
        while let holder = taken[VariantRules.handle(base, candidate: candidate)], holder != id { candidate += 1 }
        return VariantRules.handle(base, candidate: candidate)
    }

    /// The ancestors walk (the category itself at depth 1) and the subtree walk (itself at height 1), the same SQL on
    /// both backends with `$1` the tenant and `$2` the id.
    static let depthSQL = """
        WITH RECURSIVE up(id, parent_id, depth) AS (
            SELECT id, parent_id, 1 FROM categories WHERE tenant = $1 AND id = $2
            UNION ALL
            SELECT categories.id, categories.parent_id, up.depth + 1 FROM categories JOIN up ON categories.id = up.parent_id
            WHERE categories.tenant = $1 AND up.depth < \(walkLimit))
        SELECT max(depth) FROM up
        """
    static let subtreeSQL = """
        WITH RECURSIVE down(id, depth) AS (
            SELECT id, 1 FROM categories WHERE tenant = $1 AND id = $2
            UNION ALL
            SELECT categories.id, down.depth + 1 FROM categories JOIN down ON categories.parent_id = down.id
            WHERE categories.tenant = $1 AND down.depth < \(walkLimit))
        SELECT id, depth FROM down
        """
}

/// The categories and the products in them, the same on both backends.
enum CategorySchema {
    static let createTable = """
        CREATE TABLE categories (
            tenant TEXT NOT NULL,
            id TEXT NOT NULL,
            name TEXT NOT NULL,
            handle TEXT NOT NULL,
            parent_id TEXT,
            position BIGINT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (tenant, id),
            UNIQUE (tenant, handle)
        )
        """
    static let createIndex = "CREATE INDEX categories_parent ON categories (tenant, parent_id)"
    /// Which live products are in which category: a category with products is not deleted.
    static let createLinks = """
        CREATE TABLE product_categories (
            tenant TEXT NOT NULL,
            category_id TEXT NOT NULL,
            product_id TEXT NOT NULL,
            PRIMARY KEY (tenant, category_id, product_id)
        )
        """
    static let createLinksIndex = "CREATE INDEX product_categories_product ON product_categories (tenant, product_id)"
}
