import Foundation
import NIOCore
import Shared
import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The files of one import job on the replica that runs it, in `<data>/imports/<id>/`:
/// - `input.ndjson`, the file as uploaded (synced before the job is answered 202);
/// - `job.json`, the job's tenant, mode and policy (written once the Database Service has the job);
/// - `operations.ndjson`, the writes the valid lines make (`<line number> <operation JSON>` a line), made by checking;
/// - `state.json`, where writing stands: how many operations the Database Service has confirmed, with the counts.
/// A directory without `job.json` is an upload that was never answered, and is removed at the next start.
struct ImportSpool: Sendable {
    let directory: String

    var input: String { directory + "/input.ndjson" }
    var jobFile: String { directory + "/job.json" }
    var operations: String { directory + "/operations.ndjson" }
    var stateFile: String { directory + "/state.json" }

    /// What a job's replica needs to run it again after a restart.
    struct JobFile: Codable, Sendable {
        var id: String
        var tenant: String
        var mode: ImportJob.Mode
        var errorPolicy: ImportJob.ErrorPolicy
        var lines: Int64

        enum CodingKeys: String, CodingKey {
            case id, tenant, mode, lines
            case errorPolicy = "error_policy"
        }
    }

    /// Where writing stands: the operations confirmed by the Database Service, and the counts then.
    struct WriteState: Codable, Sendable, Equatable {
        var confirmed: Int64 = 0
        var written: Int64 = 0
        var rejected: Int64 = 0
        var validated: Int64 = 0
    }

    func saveJob(_ job: JobFile) throws {
        try DurableFile.replace(jobFile, with: try JSONCoding.encode(job))
    }

    func loadJob() -> JobFile? {
        guard let data = FileManager.default.contents(atPath: jobFile) else { return nil }
        return try? JSONCoding.decoder.decode(JobFile.self, from: data)
    }

    /// Saves where writing stands; atomic, not synced: after a crash an older state only means resending
    /// operations the Database Service already has, which it finds stale.
    func saveState(_ state: WriteState) throws {
        let temporary = stateFile + ".tmp"
        try JSONCoding.encoder.encode(state).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, stateFile) == 0 else { throw Errno(rawValue: errno) }
    }

    func loadState() -> WriteState? {
        guard let data = FileManager.default.contents(atPath: stateFile) else { return nil }
        return try? JSONCoding.decoder.decode(WriteState.self, from: data)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Why an upload was refused before it became a job.
enum ImportUploadError: Error {
    case tooLarge
    case tooManyLines
    case lineTooLong(line: Int64)
}

/// Writes an upload to its spool file as it arrives, counting its product lines (blank lines are skipped) and
/// checking the limits; the fingerprint (FNV-1a of the bytes) identifies the file for `Idempotency-Key`.
final class ImportUploadWriter {
    private let descriptor: SystemPackage.FileDescriptor
    private var pending = ByteBuffer()
    private(set) var bytes: Int64 = 0
    private(set) var productLines: Int64 = 0
    private var physicalLine: Int64 = 1
    private var lineLength = 0
    private var lineHasContent = false
    private var hash: UInt64 = 0xcbf2_9ce4_8422_2325

    init(path: String) throws {
        descriptor = try SystemPackage.FileDescriptor.open(
            FilePath(path), .writeOnly, options: [.create, .truncate, .closeOnExec], permissions: [.ownerReadWrite])
        pending.reserveCapacity(1 << 20)
    }

    func write(_ chunk: ByteBuffer) throws {
        bytes += Int64(chunk.readableBytes)
        guard bytes <= ImportRules.maxBodyBytes else { throw ImportUploadError.tooLarge }
        try chunk.withUnsafeReadableBytes { raw throws in
            for byte in raw {
                hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
                if byte == UInt8(ascii: "\n") {
                    endLine()
                    continue
                }
                lineLength += 1
                if !lineHasContent, byte != 0x20, byte != 0x09, byte != 0x0D {
                    lineHasContent = true
                    productLines += 1
                    guard productLines <= ImportRules.maxLines else { throw ImportUploadError.tooManyLines }
                }
                guard lineLength <= ImportRules.maxLineBytes else { throw ImportUploadError.lineTooLong(line: physicalLine) }
            }
        }
        pending.writeImmutableBuffer(chunk)
        if pending.readableBytes >= 1 << 20 { try flush() }
    }

    private func endLine() {
        physicalLine += 1
        lineLength = 0
        lineHasContent = false
    }

    /// Writes what is buffered and syncs the file.
    func finish() throws {
        try flush()
        try AppendOnlyFile.syncData(descriptor)
    }

    var fingerprint: String { String(hash, radix: 16) }

    private func flush() throws {
        try pending.withUnsafeReadableBytes { _ = try descriptor.writeAll($0) }
        pending.clear()
    }

    deinit { try? descriptor.close() }
}

/// Reads a file line by line, a few megabytes at a time; a last line without a newline counts. Lines must fit
/// the buffer (`maxLineBytes`, a little more than an upload allows).
final class LineFileReader {
    private let descriptor: SystemPackage.FileDescriptor
    private let buffer: UnsafeMutableRawBufferPointer
    private var start = 0
    private var filled = 0
    private var atEnd = false
    /// The number of the last line handed out, from 1.
    private(set) var lineNumber: Int64 = 0

    init(path: String, maxLineBytes: Int = ImportRules.maxLineBytes + 64 * 1024) throws {
        descriptor = try SystemPackage.FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(4 << 20, maxLineBytes * 2), alignment: 1)
    }

    deinit {
        buffer.deallocate()
        try? descriptor.close()
    }

    /// Calls `body` with the next line's number and bytes (without the newline, valid during the call); nil at the end.
    func next<T>(_ body: (_ number: Int64, _ line: UnsafeRawBufferPointer) throws -> T) throws -> T? {
        while true {
            if let newline = buffer[start..<filled].firstIndex(of: UInt8(ascii: "\n")) {
                let line = UnsafeRawBufferPointer(rebasing: buffer[start..<newline])
                start = newline + 1
                lineNumber += 1
                return try body(lineNumber, line)
            }
            if atEnd {
                guard start < filled else { return nil }
                let line = UnsafeRawBufferPointer(rebasing: buffer[start..<filled])
                start = filled
                lineNumber += 1
                return try body(lineNumber, line)
            }
            // Keep the unfinished line at the front, then read more behind it.
            if start > 0 {
                buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + start, byteCount: filled - start)
                filled -= start
                start = 0
            }
            guard filled < buffer.count else { throw JSONSyntaxError(description: "line \(lineNumber + 1) is longer than \(buffer.count) bytes") }
            let read = try descriptor.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]))
            if read == 0 { atEnd = true }
            filled += read
        }
    }
}

extension UnsafeRawBufferPointer {
    /// Whether the bytes are only spaces, tabs and carriage returns.
    var isBlankLine: Bool { allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D } }
}
