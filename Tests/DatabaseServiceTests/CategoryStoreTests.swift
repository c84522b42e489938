import Foundation
import Testing

@testable import DatabaseService
import Shared
import TestSupport

/// A shop's category tree, and the products in it, on both backends.
@Suite("Categories, on SQLite and PostgreSQL")
struct CategoryStoreTests {
    let now = "2026-12-07T00:00:00.000Z"

    func made(_ store: any DataStore, _ id: String, _ name: String, parent: String? = nil, handle: String? = nil) async throws -> CategoryWrite {
        try await store.categories.create(tenant: "t", id: id, input: CategoryInput(name: name, handle: handle, parentID: .some(parent)), now: now)
    }

    @Test("a tree: handles made and kept unique, 16 levels at most, no cycles, listed by page and by parent", arguments: StoreBackend.available)
    func tree(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            guard case .written(let tops) = try await made(store, "cat_a", "Tops") else { Issue.record("not made"); return }
            #expect(tops.handle == "tops" && tops.parentID == nil)
            guard case .written(let second) = try await made(store, "cat_b", "Tops!", parent: "cat_a") else { Issue.record("not made"); return }
            #expect(second.handle == "tops-2")
            #expect(try await made(store, "cat_c", "Other", handle: "tops") == .refused(CategoryRules.handleTaken("tops", by: "cat_a")))
            #expect(try await made(store, "cat_c", "Orphan", parent: "cat_nope") == .refused(CategoryRules.unknownParent("cat_nope")))
            // A chain of 16 levels: cat_a, cat_b, then 14 more; a 17th is refused.
            var parent = "cat_b"
            for level in 3...16 {
                let id = String(format: "cat_l%02d", level)
                guard case .written = try await made(store, id, "Level \(level)", parent: parent) else { Issue.record("level \(level)"); return }
                parent = id
            }
            guard case .refused(let deep) = try await made(store, "cat_l17", "Too deep", parent: parent) else { Issue.record("17 levels"); return }
            #expect(deep.param == "parent_id" && deep.status == .badRequest)
            // Moving a subtree under its own descendant is a cycle; moving a deep one where it would pass 16 levels is refused.
            let cycle = try await store.categories.update(tenant: "t", id: "cat_a", input: CategoryInput(parentID: .some("cat_l05")), now: now)
            #expect(cycle == .refused(CategoryRules.cycle))
            guard case .written = try await made(store, "cat_x", "Side") else { Issue.record("side"); return }
            guard case .written = try await made(store, "cat_y", "Under side", parent: "cat_x") else { Issue.record("under"); return }
            guard case .refused(let moved) = try await store.categories.update(
                tenant: "t", id: "cat_b", input: CategoryInput(parentID: .some("cat_y")), now: now) else { Issue.record("moved"); return }
            #expect(moved.param == "parent_id")
            guard case .written(let root) = try await store.categories.update(
                tenant: "t", id: "cat_l16", input: CategoryInput(name: "Leaf", parentID: .some(nil)), now: now) else { Issue.record("root"); return }
            #expect(root.parentID == nil && root.name == "Leaf" && root.handle == "level-16")

            #expect(Set(try await store.categories.subtree(tenant: "t", id: "cat_l14") ?? []) == ["cat_l14", "cat_l15"])
            #expect(try await store.categories.subtree(tenant: "t", id: "cat_nope") == nil)
            let roots = try await store.categories.categories(tenant: "t", after: nil, limit: 10, parent: .some(nil))
            #expect(roots.categories.map(\.id) == ["cat_a", "cat_l16", "cat_x"] && !roots.hasMore)
            let first = try await store.categories.categories(tenant: "t", after: nil, limit: 5, parent: nil)
            let next = try await store.categories.categories(tenant: "t", after: first.categories.last?.id, limit: 100, parent: nil)
            #expect(first.hasMore && first.categories.count + next.categories.count == 18 && !next.hasMore)
        }
    }

    @Test("products in categories: unknown ones refused or dropped, a category with products or children kept, ?category= with descendants",
          arguments: StoreBackend.available)
    func products(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            _ = try await made(store, "cat_a", "Tops")
            _ = try await made(store, "cat_b", "Shirts", parent: "cat_a")
            _ = try await made(store, "cat_c", "Shoes")
            var shirt = product("p1", version: 1, name: "Shirt")
            shirt.categoryIDs = ["cat_b"]
            var shoe = product("p2", version: 1, name: "Shoe")
            shoe.categoryIDs = ["cat_c", "cat_gone"]
            #expect(try await store.products.apply([.upsert(tenant: "t", product: shirt), .upsert(tenant: "t", product: shoe)]) == [.inserted, .inserted])
            #expect(try await store.products.product(tenant: "t", id: "p2")?.categoryIDs == ["cat_c"], "an unknown category is dropped from a journaled write")
            var other = product("p3", version: 1, name: "Other")
            other.categoryIDs = ["cat_a", "cat_nope"]
            let refused = try await store.products.write(CoordinatedWrite(operation: .upsert(tenant: "t", product: other)))
            #expect(refused.outcome == .refused && refused.refusal?.param == "category_ids[1]" && refused.refusal?.status == .badRequest)

            var query = ProductQuery(limit: 10)
            query.category = "cat_a"
            #expect(try await store.products.list(tenant: "t", query: query).products.map(\.id) == ["p1"], "a descendant's products are listed")
            query.category = "cat_nope"
            #expect(try await store.products.list(tenant: "t", query: query).products.isEmpty)

            #expect(try await store.categories.delete(tenant: "t", id: "cat_a") == .notEmpty(children: true))
            #expect(try await store.categories.delete(tenant: "t", id: "cat_b") == .notEmpty(children: false))
            shirt.version = 2
            shirt.categoryIDs = []
            #expect(try await store.products.apply([.upsert(tenant: "t", product: shirt)]) == [.updated])
            #expect(try await store.categories.delete(tenant: "t", id: "cat_b") == .deleted)
            guard case .deleted = try await store.products.delete(tenant: "t", id: "p2", version: nil, deletedAt: Timestamp.now()) else {
                Issue.record("not deleted")
                return
            }
            #expect(try await store.categories.delete(tenant: "t", id: "cat_c") == .deleted, "a deleted product leaves its categories")
            #expect(try await store.categories.delete(tenant: "t", id: "cat_c") == .missing)
        }
    }
}
