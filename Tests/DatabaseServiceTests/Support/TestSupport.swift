import Foundation

@testable import DatabaseService
import Shared
import TestSupport

/// A fresh SQLite store in a temporary directory.
func makeStore() throws -> (SQLiteStore, URL) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("db-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return (try SQLiteStore(path: directory.appendingPathComponent("products.sqlite").path), directory)
}
