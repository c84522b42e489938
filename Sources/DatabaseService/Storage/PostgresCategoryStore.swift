import Foundation
import PostgresNIO
import Shared

/// Categories on PostgreSQL: a shop's tree changes under its claims lock (the one products' handles and SKUs
/// take), so that two processes cannot make a cycle, or link products to a category being deleted.
struct PostgresCategoryStore: CategoryStore, PostgresFeatureStore {
    let database: PostgresStore

    static let columns = "id, name, handle, parent_id, position, created_at, updated_at"
    typealias Row = (String, String, String, String?, Int64, String, String)

    func create(tenant: String, id: String, input: CategoryInput, now: String) async throws -> CategoryWrite {
        try await transaction(logger: logger) { connection in
            try await PostgresProductStore(database: database).lockClaims(of: [tenant], on: connection)
            var category = Category(
                id: id, name: input.name ?? "", handle: "", parentID: input.parentID ?? nil, position: input.position ?? 0, createdAt: now,
                updatedAt: now)
            do {
                try await self.place(&category, handle: input.handle, tenant: tenant, on: connection)
            } catch let error as APIError {
                return .refused(error)
            }
            try await connection.query(
                """
                INSERT INTO categories (tenant, id, name, handle, parent_id, position, created_at, updated_at)
                VALUES (\(tenant), \(category.id), \(category.name), \(category.handle), \(category.parentID), \(category.position), \(now), \(now))
                """, logger: self.logger)
            return .written(category)
        }
    }

    func category(tenant: String, id: String) async throws -> Category? {
        try await Self.categories(try await query("SELECT \(unescaped: Self.columns) FROM categories WHERE tenant = \(tenant) AND id = \(id)", logger: logger)).first
    }

    func categories(tenant: String, after: String?, limit: Int, parent: String??) async throws -> CategoryPage {
        var sql = "SELECT \(Self.columns) FROM categories WHERE tenant = $1 AND id > $2"
        var binds = PostgresBindings()
        binds.append(tenant)
        binds.append(after ?? "")
        switch parent {
        case .none: break
        case .some(.none): sql += " AND parent_id IS NULL"
        case .some(.some(let parent)):
            binds.append(parent)
            sql += " AND parent_id = $3"
        }
        binds.append(limit + 1)
        sql += " ORDER BY id LIMIT $\(binds.count)"
        let rows = try await Self.categories(try await query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger))
        return CategoryPage(categories: Array(rows.prefix(limit)), hasMore: rows.count > limit)
    }

    func update(tenant: String, id: String, input: CategoryInput, now: String) async throws -> CategoryWrite {
        try await transaction(logger: logger) { connection in
            try await PostgresProductStore(database: database).lockClaims(of: [tenant], on: connection)
            let rows = try await connection.query(
                "SELECT \(unescaped: Self.columns) FROM categories WHERE tenant = \(tenant) AND id = \(id) FOR UPDATE", logger: self.logger)
            guard var category = try await Self.categories(rows).first else { return .missing }
            if let name = input.name { category.name = name }
            if let position = input.position { category.position = position }
            if let parent = input.parentID { category.parentID = parent }
            category.updatedAt = now
            do {
                try await self.place(&category, handle: input.handle ?? category.handle, tenant: tenant, on: connection, moved: input.parentID != nil)
            } catch let error as APIError {
                return .refused(error)
            }
            try await connection.query(
                """
                UPDATE categories SET name = \(category.name), handle = \(category.handle), parent_id = \(category.parentID),
                    position = \(category.position), updated_at = \(now)
                WHERE tenant = \(tenant) AND id = \(id)
                """, logger: self.logger)
            return .written(category)
        }
    }

    func delete(tenant: String, id: String) async throws -> CategoryDeletion {
        try await transaction(logger: logger) { connection in
            try await PostgresProductStore(database: database).lockClaims(of: [tenant], on: connection)
            let rows = try await connection.query(
                """
                SELECT EXISTS (SELECT 1 FROM categories WHERE tenant = \(tenant) AND id = \(id)),
                       EXISTS (SELECT 1 FROM categories WHERE tenant = \(tenant) AND parent_id = \(id)),
                       EXISTS (SELECT 1 FROM product_categories WHERE tenant = \(tenant) AND category_id = \(id))
                """, logger: self.logger)
            var found = (exists: false, children: false, products: false)
            for try await (exists, children, products) in rows.decode((Bool, Bool, Bool).self) { found = (exists, children, products) }
            guard found.exists else { return .missing }
            if found.children || found.products { return .notEmpty(children: found.children) }
            try await connection.query("DELETE FROM categories WHERE tenant = \(tenant) AND id = \(id)", logger: self.logger)
            return .deleted
        }
    }

    func subtree(tenant: String, id: String) async throws -> [String]? {
        var binds = PostgresBindings()
        binds.append(tenant)
        binds.append(id)
        var ids: [String] = []
        for try await (child, _) in try await query(PostgresQuery(unsafeSQL: CategoryRules.subtreeSQL, binds: binds), logger: logger)
            .decode((String, Int).self) { ids.append(child) }
        return ids.isEmpty ? nil : ids
    }

    // MARK: Helpers

    /// As `SQLiteCategoryStore.place`: the parent checked when `moved`, the handle settled.
    func place(_ category: inout Category, handle: String?, tenant: String, on connection: PostgresConnection, moved: Bool = true) async throws {
        func walk(_ sql: String, _ id: String) async throws -> [(String, Int)] {
            var binds = PostgresBindings()
            binds.append(tenant)
            binds.append(id)
            var rows: [(String, Int)] = []
            for try await row in try await connection.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger).decode((String?, Int?).self) {
                if let id = row.0, let depth = row.1 { rows.append((id, depth)) }
            }
            return rows
        }
        if moved, let parent = category.parentID {
            let subtree = try await walk(CategoryRules.subtreeSQL, category.id)
            if subtree.contains(where: { $0.0 == parent }) { throw CategoryRules.cycle }
            var binds = PostgresBindings()
            binds.append(tenant)
            binds.append(parent)
            var depth: Int?
            for try await value in try await connection.query(PostgresQuery(unsafeSQL: CategoryRules.depthSQL, binds: binds), logger: logger)
                .decode(Int?.self) { depth = value }
            guard let depth else { throw CategoryRules.unknownParent(parent) }
            try CategoryRules.checkDepth(parentDepth: depth, height: subtree.map(\.1).max() ?? 1)
        }
        if let handle {
            let rows = try await connection.query(
                "SELECT id FROM categories WHERE tenant = \(tenant) AND handle = \(handle)", logger: logger)
            for try await holder in rows.decode(String.self) where holder != category.id { throw CategoryRules.handleTaken(handle, by: holder) }
            category.handle = handle
        } else {
            let base = VariantRules.handle(from: category.name)
            var taken: [String: String] = [:]
            let rows = try await connection.query(
                "SELECT handle, id FROM categories WHERE tenant = \(tenant) AND handle >= \(base) AND handle < \(base + ".")", logger: logger)
            for try await (held, holder) in rows.decode((String, String).self) { taken[held] = holder }
            category.handle = CategoryRules.freeHandle(base, taken: taken, id: category.id)
        }
    }

    static func categories(_ rows: some AsyncSequence<PostgresRow, any Error>) async throws -> [Category] {
        var categories: [Category] = []
        for try await (id, name, handle, parent, position, created, updated) in rows.decode(Row.self) {
            categories.append(Category(id: id, name: name, handle: handle, parentID: parent, position: position, createdAt: created, updatedAt: updated))
        }
        return categories
    }
}
