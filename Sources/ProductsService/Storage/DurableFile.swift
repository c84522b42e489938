import NIOCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one way this service writes files that must survive a crash: appends made durable before they return,
/// and whole-file replacements that are atomic. The journal, the idempotency file, the dead letters and the
/// saved authentication mode all go through it.
final class AppendOnlyFile {
    /// Makes a descriptor's written data durable; tests inject a failing one.
    typealias Sync = @Sendable (SystemPackage.FileDescriptor) throws -> Void

    let path: String
    private let descriptor: SystemPackage.FileDescriptor
    private let sync: Sync
    private var isOpen = true
    /// Bytes in the file: where the next append starts.
    private(set) var size: Int64
    /// False once a failed append could not be cut back: the file may end in bytes whose writer was told they failed.
    private(set) var isIntact = true

    /// Opens (creating if needed) `path` for appending.
    init(path: String, sync: @escaping Sync = AppendOnlyFile.syncData) throws {
        self.path = path
        self.sync = sync
        descriptor = try SystemPackage.FileDescriptor.open(
            FilePath(path), .writeOnly, options: [.append, .create, .closeOnExec], permissions: [.ownerReadWrite, .groupRead, .otherRead])
        do {
            size = try descriptor.seek(offset: 0, from: .end)
        } catch {
            try? descriptor.close()
            throw error
        }
    }

    /// Appends `bytes` and makes them durable. On failure the file is cut back to where it was, so a record
    /// whose writer was told it failed cannot come back at the next start.
    func append(_ bytes: ByteBuffer) throws {
        do {
            try bytes.withUnsafeReadableBytes { _ = try descriptor.writeAll($0) }
            try sync(descriptor)
            size += Int64(bytes.readableBytes)
        } catch {
            try? cutBack()
            throw error
        }
    }

    /// Cuts the file back to its last good append and syncs that, after a failed append; until this succeeds the
    /// file is not `isIntact` (a later call may succeed, once the disk works again).
    func cutBack() throws {
        isIntact = false
        try descriptor.resize(to: size)
        try sync(descriptor)
        isIntact = true
    }

    func close() {
        guard isOpen else { return }
        isOpen = false
        try? descriptor.close()
    }

    deinit { close() }

    /// `fdatasync` where there is one; on Darwin `F_FULLFSYNC`, which also flushes the drive's cache.
    @Sendable static func syncData(_ descriptor: SystemPackage.FileDescriptor) throws {
        #if os(Linux)
        let result = fdatasync(descriptor.rawValue)
        #else
        let result = fcntl(descriptor.rawValue, F_FULLFSYNC)
        #endif
        guard result == 0 else { throw Errno(rawValue: errno) }
    }
}

/// Whole-file and one-shot durable writes.
enum DurableFile {
    /// Appends `bytes` to `path` (created if missing) and syncs them.
    static func append(_ bytes: ByteBuffer, to path: String) throws {
        let file = try AppendOnlyFile(path: path)
        defer { file.close() }
        try file.append(bytes)
    }

    /// Replaces `path` with `bytes` atomically: written and synced beside it, renamed over it, then the
    /// directory synced so the rename itself survives a crash.
    static func replace(_ path: String, with bytes: ByteBuffer) throws {
        let temporary = path + ".tmp"
        _ = unlink(temporary)
        try append(bytes, to: temporary)
        guard rename(temporary, path) == 0 else { throw Errno(rawValue: errno) }
        syncDirectory(containing: path)
    }

    /// Syncs a directory, so the files created, renamed or removed in it stay so after a crash. Best effort:
    /// some file systems refuse to sync a directory, and the data itself is already synced.
    static func syncDirectory(_ directory: String) {
        guard let descriptor = try? SystemPackage.FileDescriptor.open(FilePath(directory), .readOnly, options: [.directory, .closeOnExec]) else { return }
        _ = fsync(descriptor.rawValue)
        try? descriptor.close()
    }

    static func syncDirectory(containing path: String) {
        syncDirectory(String(FilePath(path).removingLastComponent().string).nonEmpty ?? ".")
    }
}

extension String {
    fileprivate var nonEmpty: String? { isEmpty ? nil : self }
}
