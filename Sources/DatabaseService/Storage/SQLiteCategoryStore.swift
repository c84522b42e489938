import Foundation
import GRDB
import Shared

/// Categories on SQLite: the one writer decides every change to a shop's tree.
struct SQLiteCategoryStore: CategoryStore, SQLiteFeatureStore {
    let database: SQLiteStore

    /// The walks in SQLite's numbered parameters (`?1`, `?2`).
    static let depthSQL = CategoryRules.depthSQL.replacingOccurrences(of: "$", with: "?")
    static let subtreeSQL = CategoryRules.subtreeSQL.replacingOccurrences(of: "$", with: "?")
    static let columns = "id, name, handle, parent_id, position, created_at, updated_at"

    func create(tenant: String, id: String, input: CategoryInput, now: String) async throws -> CategoryWrite {
        try await write { db in
            var category = Category(
                id: id, name: input.name ?? "", handle: "", parentID: input.parentID ?? nil, position: input.position ?? 0, createdAt: now,
                updatedAt: now)
            do {
                try Self.place(&category, handle: input.handle, tenant: tenant, db: db)
            } catch let error as APIError {
                return .refused(error)
            }
            try db.execute(
                sql: "INSERT INTO categories (tenant, \(Self.columns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                arguments: [tenant, category.id, category.name, category.handle, category.parentID, category.position, now, now])
            return .written(category)
        }
    }

    func category(tenant: String, id: String) async throws -> Category? {
        try await read { db in try Self.category(tenant: tenant, id: id, db: db) }
    }

    func categories(tenant: String, after: String?, limit: Int, parent: String??) async throws -> CategoryPage {
        try await read { db in
            var sql = "SELECT \(Self.columns) FROM categories WHERE tenant = ? AND id > ?"
            var arguments: StatementArguments = [tenant, after ?? ""]
            switch parent {
            case .none: break
            case .some(.none): sql += " AND parent_id IS NULL"
            case .some(.some(let parent)):
                sql += " AND parent_id = ?"
                arguments += [parent]
            }
            sql += " ORDER BY id LIMIT ?"
            arguments += [limit + 1]
            let rows = try GRDB.Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.category(from:))
            return CategoryPage(categories: Array(rows.prefix(limit)), hasMore: rows.count > limit)
        }
    }

    func update(tenant: String, id: String, input: CategoryInput, now: String) async throws -> CategoryWrite {
        try await write { db in
            guard var category = try Self.category(tenant: tenant, id: id, db: db) else { return .missing }
            if let name = input.name { category.name = name }
            if let position = input.position { category.position = position }
            if let parent = input.parentID { category.parentID = parent }
            category.updatedAt = now
            do {
                try Self.place(&category, handle: input.handle ?? category.handle, tenant: tenant, db: db, moved: input.parentID != nil)
            } catch let error as APIError {
                return .refused(error)
            }
            try db.execute(
                sql: "UPDATE categories SET name = ?, handle = ?, parent_id = ?, position = ?, updated_at = ? WHERE tenant = ? AND id = ?",
                arguments: [category.name, category.handle, category.parentID, category.position, now, tenant, id])
            return .written(category)
        }
    }

    func delete(tenant: String, id: String) async throws -> CategoryDeletion {
        try await write { db in
            guard try Self.category(tenant: tenant, id: id, db: db) != nil else { return .missing }
            if try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM categories WHERE tenant = ? AND parent_id = ?)", arguments: [tenant, id]) == true {
                return .notEmpty(children: true)
            }
            if try Bool.fetchOne(
                db, sql: "SELECT EXISTS (SELECT 1 FROM product_categories WHERE tenant = ? AND category_id = ?)", arguments: [tenant, id]) == true
            {
                return .notEmpty(children: false)
            }
            try db.execute(sql: "DELETE FROM categories WHERE tenant = ? AND id = ?", arguments: [tenant, id])
            return .deleted
        }
    }

    func subtree(tenant: String, id: String) async throws -> [String]? {
        try await read { db in
            let ids = try String.fetchAll(db, sql: Self.subtreeSQL, arguments: [tenant, id])
            return ids.isEmpty ? nil : ids
        }
    }

    // MARK: Helpers

    /// Checks the category's parent (known, not itself or a descendant when `moved`, the tree within 16 levels) and
    /// settles its handle: the one given, unless another category holds it; else one made from the name.
    static func place(_ category: inout Category, handle: String?, tenant: String, db: Database, moved: Bool = true) throws {
        if moved, let parent = category.parentID {
            let subtree = try GRDB.Row.fetchAll(db, sql: subtreeSQL, arguments: [tenant, category.id]).map { ($0[0] as String, $0[1] as Int) }
            if subtree.contains(where: { $0.0 == parent }) { throw CategoryRules.cycle }
            guard let depth = try Int.fetchOne(db, sql: depthSQL, arguments: [tenant, parent]) else { throw CategoryRules.unknownParent(parent) }
            try CategoryRules.checkDepth(parentDepth: depth, height: subtree.map(\.1).max() ?? 1)
        }
        if let handle {
            if let holder = try String.fetchOne(
                db, sql: "SELECT id FROM categories WHERE tenant = ? AND handle = ?", arguments: [tenant, handle]), holder != category.id
            {
                throw CategoryRules.handleTaken(handle, by: holder)
            }
            category.handle = handle
        } else {
            let base = VariantRules.handle(from: category.name)
            let rows = try GRDB.Row.fetchAll(
                db, sql: "SELECT handle, id FROM categories WHERE tenant = ? AND handle >= ? AND handle < ?", arguments: [tenant, base, base + "."])
            category.handle = CategoryRules.freeHandle(base, taken: Dictionary(rows.map { ($0[0] as String, $0[1] as String) }) { a, _ in a }, id: category.id)
        }
    }

    static func category(tenant: String, id: String, db: Database) throws -> Category? {
        try GRDB.Row.fetchOne(db, sql: "SELECT \(columns) FROM categories WHERE tenant = ? AND id = ?", arguments: [tenant, id]).map(category(from:))
    }

    static func category(from row: GRDB.Row) -> Category {
        Category(
            id: row["id"], name: row["name"], handle: row["handle"], parentID: row["parent_id"], position: row["position"],
            createdAt: row["created_at"], updatedAt: row["updated_at"])
    }
}
