import DequeModule
import Foundation
import Logging
import NIOCore
import NIOPosix
import Shared
import SystemPackage

/// The journal's files: `segment-<first sequence>.log`, each a list of JSON lines, either a journal record
/// or `{"confirmed":N}` (everything up to N is confirmed). Only the journal's leader touches it after recovery.
final class SegmentedLog: @unchecked Sendable {
    let directory: String
    let segmentSize: Int
    private var current: AppendOnlyFile?
    /// First sequence number of each segment, oldest first.
    private var segmentBases: [UInt64] = []
    private let logger: Logger
    private let sync: AppendOnlyFile.Sync

    init(
        directory: String, segmentSize: Int, logger: Logger,
        sync: @escaping AppendOnlyFile.Sync = AppendOnlyFile.syncData
    ) throws {
        self.directory = directory
        self.segmentSize = segmentSize
        self.logger = logger
        self.sync = sync
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    struct Recovered {
        /// The number of the first record in the segments, if there are segments.
        var firstSequence: UInt64?
        var lastSequence: UInt64
        var confirmed: UInt64
    }

    /// Checks every segment, drops a torn last line (a crash mid-write), and opens the newest for appending. Only
    /// confirmation marks and the newest segment's last line are parsed here; `read` parses the records.
    func recover() throws -> Recovered {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        segmentBases = names.compactMap { name -> UInt64? in
            guard name.hasPrefix("segment-"), name.hasSuffix(".log") else { return nil }
            return UInt64(name.dropFirst("segment-".count).dropLast(".log".count))
        }.sorted()
        var confirmed: UInt64 = 0
        var lastSequence: UInt64 = 0
        for (index, base) in segmentBases.enumerated() {
            let path = segmentPath(base)
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            var sequence = base - 1
            var offset = 0
            var validLength = 0
            let isLast = index == segmentBases.count - 1
            while offset < data.count {
                guard let newline = data[offset...].firstIndex(of: UInt8(ascii: "\n")) else {
                    guard isLast else { throw JournalError.corrupt("\(path): unterminated record at byte \(offset)") }
                    break  // torn write at the end of the newest segment
                }
                let line = data[offset..<newline]
                if line.starts(with: Self.confirmationPrefix) {
                    guard let mark = try? JSONCoding.decoder.decode(ConfirmationMark.self, from: line) else {
                        throw JournalError.corrupt("\(path): unreadable confirmation mark at byte \(offset)")
                    }
                    confirmed = max(confirmed, mark.confirmed)
                } else if !line.isEmpty {
                    // Only the very last record of the newest segment may be torn; any other unreadable one is
                    // found by `read`, which refuses it.
                    if isLast, newline == data.count - 1, JournalRecord(line: line) == nil { break }
                    sequence += 1
                }
                offset = newline + 1
                validLength = offset
            }
            lastSequence = max(lastSequence, sequence)
            if isLast && validLength < data.count {
                do {
                    let file = try SystemPackage.FileDescriptor.open(FilePath(path), .writeOnly, options: [.closeOnExec])
                    defer { try? file.close() }
                    try file.resize(to: Int64(validLength))
                } catch {
                    throw JournalError.corrupt("\(path): cannot truncate torn record: \(error)")
                }
            }
        }
        let firstSequence = segmentBases.first
        if segmentBases.isEmpty {
            try openNewSegment(base: 1, confirmed: 0)
        } else {
            current = try AppendOnlyFile(path: segmentPath(segmentBases.last!), sync: sync)
        }
        return Recovered(firstSequence: firstSequence, lastSequence: lastSequence, confirmed: confirmed)
    }

    private static let confirmationPrefix = Data(#"{"confirmed":"#.utf8)

    /// Where the previous `read` stopped: the next record's number and the byte it starts at in its segment.
    private var readPosition: (base: UInt64, offset: Int, next: UInt64)?

    /// Reads the records numbered `first` through `last` in journal order, at most `limit` of them, passing each
    /// to `body`; returns how many it read. See `readLines`.
    func read(
        from first: UInt64, through last: UInt64, limit: Int, _ body: (_ sequence: UInt64, _ record: JournalRecord) throws -> Void
    ) throws -> Int {
        try readLines(from: first, through: last, limit: limit) { sequence, line in
            guard let record = JournalRecord(line: line) else { throw JournalError.corrupt("\(directory): unreadable record \(sequence)") }
            try body(sequence, record)
        }
    }

    /// Reads the lines of the records numbered `first` through `last` in journal order, unparsed, at most `limit`
    /// of them, passing each to `body`, and stopping before any line that `admits` refuses; returns how many it
    /// read. A read that starts where the previous one stopped goes on from there, so draining a long backlog reads
    /// each byte once; memory held is a buffer of a megabyte (or the longest record). Records must be durable: only
    /// the journal's leader touches the files.
    func readLines(
        from first: UInt64, through last: UInt64, limit: Int, admits: ((ByteBuffer) -> Bool)? = nil,
        _ body: (_ sequence: UInt64, _ line: ByteBuffer) throws -> Void
    ) throws -> Int {
        guard first <= last, limit > 0 else { return 0 }
        var position: (base: UInt64, offset: Int, next: UInt64)
        if let previous = readPosition, previous.next == first, segmentBases.contains(previous.base) {
            position = previous
        } else {
            guard let base = segmentBases.last(where: { $0 <= first }) else {
                throw JournalError.corrupt("\(directory): no segment holds record \(first)")
            }
            position = (base, 0, base)
        }
        defer { readPosition = position }
        var count = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        segments: while count < limit, position.next <= last {
            let path = segmentPath(position.base)
            let descriptor = try SystemPackage.FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
            defer { try? descriptor.close() }
            while count < limit, position.next <= last {
                let chunkStart = position.offset
                let size = try buffer.withUnsafeMutableBytes { try descriptor.read(fromAbsoluteOffset: Int64(chunkStart), into: $0) }
                var lineStart = 0
                while count < limit, position.next <= last, let newline = buffer[lineStart..<size].firstIndex(of: UInt8(ascii: "\n")) {
                    let line = buffer[lineStart..<newline]
                    if line.isEmpty || line.starts(with: Self.confirmationPrefix) {
                        lineStart = newline + 1
                        position.offset = chunkStart + lineStart
                        continue
                    }
                    if position.next >= first {
                        let bytes = ByteBuffer(bytes: line)
                        // Refused: the next read starts at this record.
                        if let admits, !admits(bytes) { break segments }
                        try body(position.next, bytes)
                        count += 1
                    }
                    lineStart = newline + 1
                    position.offset = chunkStart + lineStart
                    position.next += 1
                }
                if lineStart > 0 { continue }
                if size == buffer.count {
                    // A record longer than the buffer.
                    buffer = [UInt8](repeating: 0, count: buffer.count * 2)
                    continue
                }
                // The end of this segment: go on in the next, which starts at the next record.
                guard let next = segmentBases.first(where: { $0 > position.base }) else { break segments }
                guard next == position.next else {
                    throw JournalError.corrupt("\(path): ends at record \(position.next - 1), the next segment starts at \(next)")
                }
                position = (next, 0, next)
                continue segments
            }
        }
        return count
    }

    /// Appends bytes and syncs them; rolls to a new segment when the current one is full and drops
    /// segments whose every record is confirmed.
    func append(_ bytes: ByteBuffer, lastSequence: UInt64?, confirmed: UInt64) throws {
        guard let current else { throw JournalError.writeFailed("the journal is closed") }
        try current.append(bytes)
        if current.size >= segmentSize, let lastSequence {
            // The group is durable whatever happens here: a segment that cannot be started is tried again later.
            do {
                try openNewSegment(base: lastSequence + 1, confirmed: confirmed)
            } catch {
                logger.error("cannot start a new journal segment; appending to the current one", metadata: ["error": "\(error)"])
            }
        }
        dropConfirmed(through: confirmed)
    }

    /// Removes the segments whose every record is confirmed: a segment can go once the next one starts at or before
    /// the first unconfirmed record. Needs no write, so it also frees space while appends fail.
    func dropConfirmed(through confirmed: UInt64) {
        var droppable = 0
        while droppable + 1 < segmentBases.count, segmentBases[droppable + 1] <= confirmed + 1 { droppable += 1 }
        guard droppable > 0 else { return }
        for _ in 0..<droppable { try? FileManager.default.removeItem(atPath: segmentPath(segmentBases.removeFirst())) }
    }

    /// After a failed append: the next records (from `base`) go to a segment opened afresh, a descriptor whose
    /// failed sync may have left its pages in doubt being trusted no more. The confirmation mark written and
    /// synced there first is the proof that the disk takes writes again; throws while it does not. The failed bytes
    /// are cut back first if that did not succeed when they failed.
    func restart(base: UInt64, confirmed: UInt64) throws {
        guard let current else { throw JournalError.writeFailed("the journal is closed") }
        // The failed bytes must be gone for good before anything follows them.
        if !current.isIntact { try current.cutBack() }
        guard segmentBases.last == base else { return try openNewSegment(base: base, confirmed: confirmed) }
        // The current segment holds no record yet: open it again.
        let file = try AppendOnlyFile(path: segmentPath(base), sync: sync)
        do {
            try file.append(ByteBuffer(string: #"{"confirmed":\#(confirmed)}"# + "\n"))
        } catch {
            file.close()
            throw error
        }
        current.close()
        self.current = file
    }

    func close() {
        current?.close()
        current = nil
    }

    private func segmentPath(_ base: UInt64) -> String {
        directory + "/segment-" + String(repeating: "0", count: max(0, 20 - String(base).count)) + String(base) + ".log"
    }

    private func openNewSegment(base: UInt64, confirmed: UInt64) throws {
        let path = segmentPath(base)
        let file = try AppendOnlyFile(path: path, sync: sync)
        // Carry the confirmation mark so it survives the deletion of older segments.
        do {
            try file.append(ByteBuffer(string: #"{"confirmed":\#(confirmed)}"# + "\n"))
        } catch {
            // A segment left behind would be taken for the newest at the next start; records go on in the current one.
            file.close()
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
        DurableFile.syncDirectory(directory)
        current?.close()
        current = file
        segmentBases.append(base)
    }
}

/// `{"confirmed":N}`: every record up to N is confirmed.
private struct ConfirmationMark: Decodable {
    var confirmed: UInt64
}
