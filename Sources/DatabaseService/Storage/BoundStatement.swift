import GRDB
import GRDBSQLite
import Shared

/// A cached statement run through SQLite's C API with its values bound in place, for the rows of a batch: GRDB's
/// `StatementArguments` box each value, and binding through them took as much of the writer thread as SQLite's
/// own work. Only for statements no GRDB call runs (GRDB does not see these bindings); reset after each run.
/// Used on the database's own thread, within one transaction.
final class BoundStatement {
    private let handle: SQLiteStatement
    private let connection: SQLiteConnection?
    private var index: CInt = 0

    init(_ db: Database, sql: String) throws {
        handle = try db.cachedStatement(sql: sql).sqliteStatement
        connection = db.sqliteConnection
    }

    /// Binds the next parameter.
    func bind(_ value: String) {
        index += 1
        var value = value
        value.withUTF8 { bytes in
            // A null pointer would bind NULL: an empty string is bound from a literal.
            if let base = bytes.baseAddress {
                _ = sqlite3_bind_text(handle, index, base, CInt(bytes.count), Self.transient)
            } else {
                _ = sqlite3_bind_text(handle, index, "", 0, Self.transient)
            }
        }
    }

    func bind(_ value: Int64) {
        index += 1
        sqlite3_bind_int64(handle, index, value)
    }

    func bind(_ value: Int64?) {
        guard let value else {
            index += 1
            sqlite3_bind_null(handle, index)
            return
        }
        bind(value)
    }

    func bind(_ value: ProductField.ColumnValue) {
        switch value {
        case .text(let text): bind(text)
        case .flag(let flag): bind(flag ? 1 : 0 as Int64)
        case .integer(let integer): bind(integer)
        }
    }

    /// Runs the statement to its end.
    func execute() throws {
        defer { reset() }
        let code = sqlite3_step(handle)
        guard code == SQLITE_DONE || code == SQLITE_ROW else { throw error(code) }
    }

    /// Runs the statement and reads its first row, if any, with `read`.
    func first<T>(_ read: (SQLiteStatement) -> T) throws -> T? {
        defer { reset() }
        let code = sqlite3_step(handle)
        if code == SQLITE_DONE { return nil }
        guard code == SQLITE_ROW else { throw error(code) }
        return read(handle)
    }

    /// A text column of the current row.
    static func text(_ handle: SQLiteStatement, _ column: CInt) -> String {
        guard let text = sqlite3_column_text(handle, column) else { return "" }
        return String(decoding: UnsafeBufferPointer(start: text, count: Int(sqlite3_column_bytes(handle, column))), as: UTF8.self)
    }

    private func reset() {
        sqlite3_reset(handle)
        index = 0
    }

    private func error(_ code: CInt) -> DatabaseError {
        DatabaseError(resultCode: ResultCode(rawValue: code), message: connection.map { String(cString: sqlite3_errmsg($0)) })
    }

    /// SQLite copies the value (`SQLITE_TRANSIENT`).
    private static let transient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)
}
