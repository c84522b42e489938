import Foundation

@testable import DatabaseService
import Shared

/// A fresh SQLite store in a temporary directory.
func makeStore() throws -> (SQLiteProductStore, URL) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("db-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return (try SQLiteProductStore(path: directory.appendingPathComponent("products.sqlite").path), directory)
}

func product(_ id: String, version: Int64, name: String = "Name", type: String = "physical") -> Product {
    let now = Timestamp.now()
    return Product(id: id, name: name, type: type, metadata: ["v": "\(version)"], createdAt: now, updatedAt: now, version: version)
}
