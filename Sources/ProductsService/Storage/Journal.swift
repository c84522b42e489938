import DequeModule
import Foundation
import Logging
import NIOCore
import NIOPosix
import Shared
import SystemPackage

/// The write-behind journal: every write is recorded here, and made durable before it is acknowledged to its
/// client; it stays until the Database Service has it.
///
/// Two words mark a record's progress: **durable** (on disk here: the client may be answered) and
/// **confirmed** (the Database Service has stored it: the record may go).
///
/// With a directory, records are appended to segment files and made durable with `fdatasync`, by group commit
/// with a leader: the first writer to wait while no group is in flight takes every record appended so far and
/// writes and syncs them on the journal's own I/O thread (never on the cooperative pool); writers that arrive
/// meanwhile wait, and when the group is durable the leader wakes them and hands the next group to one of them.
/// Without a directory (`--journal off`), records are "durable" at once and pending writes live only in memory.
///
/// A failed write or sync loses the records of that group and every later one (their writers are told), the file
/// is cut back, and writes are refused while the fault lasts: `resume`, tried every second, starts a fresh segment
/// once the disk takes writes again (a full disk with room again), and writes are taken from then on.
final class Journal: @unchecked Sendable {
    // Everything mutable below is guarded by `condition`.
    private let condition = NSCondition()
    private let file: SegmentedLog?
    /// Runs each group's write and sync, so that blocking I/O never holds a cooperative thread.
    private let io: NIOThreadPool?
    private let logger: Logger

    /// Sequence number of the last record appended.
    private var lastSequence: UInt64
    /// Every record up to here is durable.
    private var durableSequence: UInt64
    /// Records appended but not yet taken by a leader.
    private var unsynced: [JournalEntry] = []
    private var unsyncedBytes = ByteBuffer()
    /// The group a leader is writing and syncing now: still unconfirmed, though in no other list.
    private var syncing: [JournalEntry] = []
    /// Whether a leader is writing a group now.
    private var leading = false
    /// Durable records not yet confirmed by the Database Service and held in memory, oldest first: at most
    /// `memoryLimit` bytes by `JournalEntry.memoryCost` (with a directory; at least one record), the oldest ones,
    /// which the persistence worker sends next.
    private var pending: Deque<JournalEntry> = []
    private var pendingBytes = 0
    /// The first durable unconfirmed record held only on disk, if any: it and every later durable record are
    /// read back into `pending` as it empties (`oldestPending`).
    private var spilledFrom: UInt64?
    /// When that record was recorded (Unix milliseconds).
    private var spilledFromMs: Int64?
    private let memoryLimit: Int
    /// Whether the worker is reading spilled records back on the I/O thread (`close` waits for it).
    private var refilling = false
    /// The product of every unconfirmed record, durable or not, in memory or not: what reconciliation must keep.
    private var unconfirmed = UnconfirmedProducts()
    /// Every record up to here is confirmed by the Database Service.
    private var confirmedSequence: UInt64
    private var confirmationToWrite: UInt64?
    private var durabilityWaiters: [(sequence: UInt64, continuation: CheckedContinuation<Turn, any Error>)] = []
    private var confirmationWaiters: [UInt64: (sequence: UInt64, continuation: CheckedContinuation<Void, any Error>)] = [:]
    private var nextWaiterID: UInt64 = 0
    private var failure: JournalError?
    private var syncs = 0
    private var closed = false
    private let pendingSignal: AsyncStream<Void>.Continuation
    /// Yields whenever new durable work is pending; the persistence worker waits on it.
    let pendingSignals: AsyncStream<Void>

    var isDurable: Bool { file != nil }
    /// Called on the I/O thread after a leader takes a group and before it writes it; tests use it to hold a group
    /// mid-sync.
    private let beforeWrite: (@Sendable () -> Void)?

    /// What a waiting writer does next.
    private enum Turn: Sendable {
        /// Its record is durable.
        case durable
        /// Write and sync this group, which holds its record.
        case lead(Group)
        /// Look again: no group is in flight, or the journal failed.
        case retry
    }

    /// A group taken by a leader.
    private struct Group: Sendable {
        var entries: [JournalEntry]
        var bytes: ByteBuffer
        var confirmed: UInt64
    }

    /// The bytes of unconfirmed records the journal keeps in memory at most (with a directory; `--journal-memory`);
    /// the rest of a backlog stays on disk until the persistence worker gets to it.
    static let defaultMemoryLimit = 64 << 20

    /// Opens the journal in `directory` (nil: memory only) and recovers what was pending, streaming every record
    /// found in the segments (`confirmed`: the Database Service has it) to `recovered` in journal order.
    ///
    /// `sync` makes appended bytes durable (tests inject failures).
    init(
        directory: String?, segmentSize: Int = 16 * 1024 * 1024, memoryLimit: Int = Journal.defaultMemoryLimit, logger: Logger,
        beforeWrite: (@Sendable () -> Void)? = nil,
        sync: @escaping AppendOnlyFile.Sync = AppendOnlyFile.syncData,
        recovered: (_ sequence: UInt64, _ record: JournalRecord, _ confirmed: Bool) throws -> Void = { _, _, _ in }
    ) throws {
        self.logger = logger
        self.beforeWrite = beforeWrite
        self.memoryLimit = max(1, memoryLimit)
        (pendingSignals, pendingSignal) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
        guard let directory else {
            file = nil
            io = nil
            lastSequence = 0
            durableSequence = 0
            confirmedSequence = 0
            return
        }
        let log = try SegmentedLog(
            directory: directory, segmentSize: segmentSize, logger: logger, sync: sync)
        let found = try log.recover()
        file = log
        lastSequence = found.lastSequence
        durableSequence = found.lastSequence
        confirmedSequence = found.confirmed
        let reopened = try ReopenedJournal(log: log, found: found, memoryLimit: self.memoryLimit, directory: directory, recovered: recovered)
        pending = reopened.held
        pendingBytes = reopened.heldBytes
        spilledFrom = reopened.spilledFrom
        spilledFromMs = reopened.spilledFromMs
        unconfirmed = reopened.unconfirmed
        if !pending.isEmpty { pendingSignal.yield() }
        let io = NIOThreadPool(numberOfThreads: 1)
        io.start()
        self.io = io
    }

    // MARK: Writers

    /// Records a write; call it inside the cache's critical section so journal order is cache order.
    /// Returns the ticket to wait on with `waitUntilDurable`.
    ///
    /// A create passes when its product's id was minted (`mintedAtMs`): one minted more than `maxMintAge` ago is
    /// refused (`JournalError.stalled`), which is what lets `clearThroughMs` vouch for ids minted before it.
    func append(_ record: JournalRecord, mintedAtMs: Int64? = nil) throws(JournalError) -> UInt64 {
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw failure }
        if closed { throw JournalError.writeFailed("the journal is closed") }
        if let mintedAtMs, Timestamp.nowMilliseconds() - mintedAtMs > Self.maxMintAge {
            throw JournalError.stalled("the product's id was minted over \(Self.maxMintAge) ms before its record")
        }
        lastSequence += 1
        let entry = JournalEntry(
            sequence: lastSequence, record: record, recordedAt: record.recordedAt(now: .now, nowMs: Timestamp.nowMilliseconds()))
        unconfirmed.add(record.operation, sequence: lastSequence)
        if file == nil {
            durableSequence = lastSequence
            pending.append(entry)
            pendingBytes += entry.memoryBytes
            pendingSignal.yield()
        } else {
            unsynced.append(entry)
            var line = record.line
            unsyncedBytes.writeBuffer(&line)
            unsyncedBytes.writeInteger(UInt8(ascii: "\n"))
        }
        return lastSequence
    }

    /// Suspends until the record with this ticket is durable, leading the group commit that writes it when no
    /// other writer is; throws `JournalError` if it never will be durable.
    func waitUntilDurable(_ sequence: UInt64) async throws {
        while true {
            let turn = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Turn, any Error>) in
                condition.lock()
                if durableSequence >= sequence {
                    condition.unlock()
                    continuation.resume(returning: .durable)
                } else if let failure {
                    condition.unlock()
                    continuation.resume(throwing: failure)
                } else if closed {
                    condition.unlock()
                    continuation.resume(throwing: JournalError.writeFailed("the journal is closed"))
                } else if !leading, let group = takeGroup() {
                    condition.unlock()
                    continuation.resume(returning: .lead(group))
                } else {
                    durabilityWaiters.append((sequence, continuation))
                    condition.unlock()
                }
            }
            switch turn {
            case .durable: return
            case .lead(let group): try await commit(group)
            case .retry: continue
            }
        }
    }

    /// Writes the latest confirmation mark now if no group is in flight, so that a restart after a quiet spell
    /// replays nothing the Database Service already has.
    func writeConfirmation() async {
        let group = condition.withLock { () -> Group? in
            guard file != nil, !leading, !closed, failure == nil, confirmationToWrite != nil else { return nil }
            return takeGroup()
        }
        // A failure is recorded in the journal, which refuses writes from then on; nothing more to do here.
        if let group { try? await commit(group) }
    }

    /// After a failure, tries the disk again: confirmed segments are removed first (that needs no room), then a
    /// fresh segment is started for the next records. Returns whether the journal takes writes; a journal that has
    /// not failed does.
    @discardableResult
    func resume() async -> Bool {
        let attempt = condition.withLock { () -> (base: UInt64, confirmed: UInt64)? in
            guard failure != nil, file != nil, !leading, !closed else { return nil }
            // No group may start meanwhile (appends are refused while `failure` is set).
            leading = true
            return (durableSequence + 1, confirmedSequence)
        }
        guard let attempt else { return condition.withLock { failure == nil } }
        let result = await onIOThread { file in
            file.dropConfirmed(through: attempt.confirmed)
            try file.restart(base: attempt.base, confirmed: attempt.confirmed)
        }
        return condition.withLock {
            leading = false
            defer { condition.broadcast() }
            guard case .success = result else { return false }
            logger.notice("journal writable again; taking writes", metadata: ["from_sequence": "\(attempt.base)"])
            failure = nil
            if confirmationToWrite == attempt.confirmed { confirmationToWrite = nil }
            return true
        }
    }

    /// Takes every unsynced record (and the confirmation mark) as the next group; call with the lock held.
    private func takeGroup() -> Group? {
        guard !unsynced.isEmpty || confirmationToWrite != nil else { return nil }
        leading = true
        var bytes = unsyncedBytes
        if let confirmed = confirmationToWrite {
            bytes.writeString(#"{"confirmed":\#(confirmed)}"# + "\n")
            confirmationToWrite = nil
        }
        let group = Group(entries: unsynced, bytes: bytes, confirmed: confirmedSequence)
        syncing = unsynced
        unsynced.removeAll(keepingCapacity: true)
        unsyncedBytes = ByteBuffer()
        return group
    }

    /// Writes and syncs a group on the I/O thread, then wakes its writers and hands the next group to a waiter.
    /// Throws the journal's failure if the group could not be written.
    private func commit(_ group: Group) async throws {
        // Submitted without cancellation (unlike `runIfActive`): a group once taken must be finished even if the
        // task that leads it is cancelled, or every writer after it would wait forever. The outcome is recorded
        // on the I/O thread too, so that `close` never waits on the cooperative pool.
        let failure = await withCheckedContinuation { (continuation: CheckedContinuation<JournalError?, Never>) in
            io!.submit { [self] state in
                guard case .active = state else {
                    continuation.resume(returning: finish(group, writeError: JournalError.writeFailed("the journal's I/O thread stopped")))
                    return
                }
                beforeWrite?()
                do {
                    try file!.append(group.bytes, lastSequence: group.entries.last?.sequence, confirmed: group.confirmed)
                    continuation.resume(returning: finish(group, writeError: nil))
                } catch {
                    continuation.resume(returning: finish(group, writeError: error))
                }
            }
        }
        if let failure { throw failure }
    }

    /// Records the outcome of a group and wakes the writers it concerns; returns the failure, if any.
    private func finish(_ group: Group, writeError: (any Error)?) -> JournalError? {
        condition.lock()
        syncs += 1
        syncing.removeAll()
        leading = false
        var woken: [(CheckedContinuation<Turn, any Error>, Turn)] = []
        var failed: [CheckedContinuation<Void, any Error>] = []
        if let writeError {
            // A journal that cannot be written cannot promise durability: this group and every record after
            // it are lost (their writers hear so), and writes are refused from now on.
            let failure = JournalError.writeFailed("\(writeError)")
            self.failure = failure
            logger.critical(
                "journal write failed; refusing writes",
                metadata: ["error": "\(writeError)", "lost_records": "\(group.entries.count + unsynced.count)"])
            for entry in group.entries { unconfirmed.remove(entry.operation) }
            for entry in unsynced { unconfirmed.remove(entry.operation) }
            unsynced.removeAll()
            unsyncedBytes = ByteBuffer()
            lastSequence = durableSequence
            // Woken waiters find the failure and throw it.
            woken = durabilityWaiters.map { ($0.continuation, .retry) }
            durabilityWaiters.removeAll()
            confirmationWaiters = confirmationWaiters.filter { _, waiter in
                guard waiter.sequence > durableSequence else { return true }
                failed.append(waiter.continuation)
                return false
            }
        } else {
            if let last = group.entries.last?.sequence {
                durableSequence = last
                admit(group.entries)
            }
            durabilityWaiters.removeAll { waiter in
                guard waiter.sequence <= durableSequence else { return false }
                woken.append((waiter.continuation, .durable))
                return true
            }
            // The oldest writer still waiting leads the next group.
            if !durabilityWaiters.isEmpty { woken.append((durabilityWaiters.removeFirst().continuation, .retry)) }
        }
        let failure = self.failure
        condition.broadcast()
        condition.unlock()
        for (continuation, turn) in woken { continuation.resume(returning: turn) }
        for continuation in failed { continuation.resume(throwing: failure!) }
        if !group.entries.isEmpty && writeError == nil { pendingSignal.yield() }
        return writeError == nil ? nil : failure
    }

    /// Suspends until every record up to `sequence` is confirmed by the Database Service. Throws
    /// `CancellationError` when the task is cancelled, and `JournalError` for records the journal lost.
    func waitUntilConfirmed(_ sequence: UInt64) async throws {
        let id = condition.withLock {
            nextWaiterID += 1
            return nextWaiterID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                condition.lock()
                if confirmedSequence >= sequence {
                    condition.unlock()
                    continuation.resume()
                } else if let failure, sequence > durableSequence {
                    condition.unlock()
                    continuation.resume(throwing: failure)
                } else if Task.isCancelled {
                    condition.unlock()
                    continuation.resume(throwing: CancellationError())
                } else {
                    confirmationWaiters[id] = (sequence, continuation)
                    condition.unlock()
                }
            }
        } onCancel: {
            let waiter = condition.withLock { confirmationWaiters.removeValue(forKey: id) }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    // MARK: The persistence worker

    /// The oldest pending entries, at most `limit`, reading spilled records back from disk first when those in
    /// memory run low. Called by the persistence worker only.
    func oldestPending(limit: Int) async -> [JournalEntry] {
        let refill = condition.withLock { () -> (from: UInt64, through: UInt64, bytes: Int, takeOne: Bool)? in
            let room = memoryLimit - pendingBytes
            guard let from = spilledFrom, pending.count < limit || pendingBytes <= memoryLimit / 2, pending.isEmpty || room > 0, !closed
            else { return nil }
            refilling = true
            return (from, durableSequence, room, pending.isEmpty)
        }
        if let refill {
            // The I/O thread, which group commits share, only reads the lines; they are parsed here (a product of
            // 10,000 variants takes milliseconds), so a refill holds no write back for long.
            let lines = await onIOThread { file in
                var lines: [(sequence: UInt64, line: ByteBuffer)] = []
                var room = refill.bytes
                // With nothing in memory, the next record is read back whatever it costs.
                var takeOne = refill.takeOne
                let admits = { (line: ByteBuffer) in takeOne || JournalEntry.memoryCost(line: line) <= room }
                _ = try file.readLines(from: refill.from, through: refill.through, limit: Self.refillBatch, admits: admits) { sequence, line in
                    room -= JournalEntry.memoryCost(line: line)
                    takeOne = false
                    lines.append((sequence, line))
                }
                return lines
            }
            let read = lines.flatMap { lines in Result { try JournalEntry.parsing(lines) } }
            condition.withLock {
                refilling = false
                switch read {
                case .success(let entries):
                    guard let last = entries.last?.sequence, entries.first?.sequence == refill.from else {
                        logger.error("journal: spilled records could not be read back", metadata: ["from": "\(refill.from)"])
                        break
                    }
                    pending.append(contentsOf: entries)
                    pendingBytes += entries.reduce(0) { $0 + $1.memoryBytes }
                    // Records made durable meanwhile were left on disk (`admit`), after these.
                    spilledFrom = last < durableSequence ? last + 1 : nil
                case .failure(let error):
                    logger.error(
                        "journal: spilled records could not be read back", metadata: ["from": "\(refill.from)", "error": "\(error)"])
                }
                condition.broadcast()
            }
        }
        return condition.withLock { Array(pending.prefix(limit)) }
    }

    /// Holds newly durable records in memory while there is room and nothing is spilled; the rest stay on disk
    /// until `oldestPending` reads them back. Call with the lock held.
    private func admit(_ entries: [JournalEntry]) {
        guard spilledFrom == nil else { return }
        for entry in entries {
            let cost = entry.memoryBytes
            if file != nil, !pending.isEmpty, pendingBytes + cost > memoryLimit {
                spilledFrom = entry.sequence
                spilledFromMs = entry.recordedAtMs ?? 0
                return
            }
            pending.append(entry)
            pendingBytes += cost
        }
    }

    /// Spilled records read back at a time: the reads share the I/O thread with group commits, which wait behind
    /// them (only their lines are read there, and parsed after), so a refill is kept to some milliseconds.
    static let refillBatch = 1_024

    /// Runs `body` with the segment files on the journal's I/O thread, after any group in flight.
    private func onIOThread<T: Sendable>(_ body: @escaping @Sendable (SegmentedLog) throws -> T) async -> Result<T, any Error> {
        guard let io, let file else { return .failure(JournalError.writeFailed("the journal has no files")) }
        return await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, any Error>, Never>) in
            io.submit { state in
                guard case .active = state else {
                    continuation.resume(returning: .failure(JournalError.writeFailed("the journal's I/O thread stopped")))
                    return
                }
                continuation.resume(returning: Result { try body(file) })
            }
        }
    }

    /// Whether a write of this product is not yet confirmed by the Database Service (it may be only on disk).
    /// Exact but for a hash collision, which only keeps a product one reconciliation longer.
    func isUnconfirmed(tenant: String, id: String) -> Bool {
        condition.withLock { unconfirmed.contains(tenant: tenant, id: id) }
    }

    /// A copy of the products with writes not yet confirmed (copied on the journal's next change, if kept).
    func unconfirmedProducts() -> UnconfirmedProducts {
        condition.withLock { unconfirmed }
    }

    /// The sequence of the tenant's newest write not yet confirmed, if it has one: what its flush waits for.
    func newestUnconfirmed(tenant: String) -> UInt64? {
        condition.withLock { unconfirmed.newest[tenant] }
    }

    /// How many of the tenant's writes are not yet confirmed.
    func unconfirmedCount(tenant: String) -> Int {
        condition.withLock { unconfirmed.tenants[tenant] ?? 0 }
    }

    /// The tenants with writes not yet confirmed by the Database Service.
    var unconfirmedTenants: Set<String> {
        condition.withLock { Set(unconfirmed.tenants.keys) }
    }

    /// Every operation not yet confirmed by the Database Service, including those not yet durable and those held
    /// only on disk, in journal order; reads the whole backlog, for tests and diagnostics.
    func unconfirmedOperations() async -> [WriteOperation] {
        let (inMemory, spilled, later) = condition.withLock {
            (pending.map(\.operation), spilledFrom.map { ($0, durableSequence) }, syncing.map(\.operation) + unsynced.map(\.operation))
        }
        guard let spilled else { return inMemory + later }
        let read = await onIOThread { file in
            var operations: [WriteOperation] = []
            _ = try file.read(from: spilled.0, through: spilled.1, limit: .max) { _, record in operations.append(record.operation) }
            return operations
        }
        return inMemory + ((try? read.get()) ?? []) + later
    }

    /// Removes every entry up to `sequence`: the Database Service has them (or they are dead-lettered).
    func confirm(through sequence: UInt64) {
        condition.lock()
        while let first = pending.first, first.sequence <= sequence {
            unconfirmed.remove(first.operation)
            pendingBytes -= first.memoryBytes
            pending.removeFirst()
        }
        confirmedSequence = max(confirmedSequence, sequence)
        if file != nil {
            // Written with the next group, or at close; losing it only means replaying writes the Database
            // Service ignores.
            confirmationToWrite = confirmedSequence
        }
        var ready: [CheckedContinuation<Void, any Error>] = []
        if !confirmationWaiters.isEmpty {
            confirmationWaiters = confirmationWaiters.filter { _, waiter in
                guard waiter.sequence <= confirmedSequence else { return true }
                ready.append(waiter.continuation)
                return false
            }
        }
        condition.unlock()
        for continuation in ready { continuation.resume() }
    }

    /// The longest a create may take from minting its product's id to appending its record (`append`).
    static let maxMintAge: Int64 = 2_000

    /// Every write this replica has acknowledged, or will, of a product whose id it minted at or before the time
    /// returned (Unix milliseconds, this clock) is confirmed by the Database Service: what it tells the other
    /// replicas (`BacklogReport`). The oldest unconfirmed record's time, or now, less `maxMintAge` (a create
    /// appended later was minted at most that long before).
    var clearThroughMs: Int64 {
        condition.withLock {
            let now = Timestamp.nowMilliseconds()
            let oldest = pending.first.map { $0.recordedAtMs ?? 0 } ?? (spilledFrom == nil ? nil : spilledFromMs)
                ?? syncing.first.map { $0.recordedAtMs ?? 0 } ?? unsynced.first.map { $0.recordedAtMs ?? 0 }
            return max(0, min(now, oldest ?? now) - Self.maxMintAge - 1)
        }
    }

    /// Sequence number of the latest write accepted (and not lost to a journal failure).
    var latestSequence: UInt64 {
        condition.withLock { lastSequence }
    }

    struct Backlog: Sendable {
        /// Writes recorded and not yet confirmed.
        var count: Int
        /// Those of them held in memory; the rest are only on disk.
        var inMemory: Int
        /// The bytes of the durable records held in memory (`JournalEntry.memoryCost`), at most `--journal-memory`.
        var inMemoryBytes: Int
        var oldestRecordedAt: ContinuousClock.Instant?
        /// Why the journal refuses writes, once it does.
        var failure: String?
        /// Group commits so far: each one write and one sync, for any number of records.
        var syncs: Int
    }

    var backlog: Backlog {
        condition.withLock {
            let spilled = spilledFrom.map { Int(durableSequence - $0 + 1) } ?? 0
            return Backlog(
                count: pending.count + spilled + syncing.count + unsynced.count, inMemory: pending.count + syncing.count + unsynced.count,
                inMemoryBytes: pendingBytes,
                oldestRecordedAt: pending.first?.recordedAt ?? syncing.first?.recordedAt ?? unsynced.first?.recordedAt,
                failure: failure.map(\.description), syncs: syncs)
        }
    }

    // MARK: Shutdown

    /// Waits for the group in flight, writes what is still buffered and the last confirmation mark, and closes
    /// the files; later writes are refused.
    func close() {
        condition.lock()
        guard !closed else {
            condition.unlock()
            return
        }
        closed = true
        while leading || refilling { condition.wait() }
        var woken: [CheckedContinuation<Turn, any Error>] = []
        if let file {
            if failure == nil, let group = takeGroup() {
                do {
                    try file.append(group.bytes, lastSequence: group.entries.last?.sequence, confirmed: group.confirmed)
                    if let last = group.entries.last?.sequence {
                        durableSequence = last
                        admit(group.entries)
                    }
                } catch {
                    failure = JournalError.writeFailed("\(error)")
                    lastSequence = durableSequence
                }
                syncing.removeAll()
                leading = false
            }
            file.close()
            // Writers still waiting find their record durable, or the journal closed.
            woken = durabilityWaiters.map(\.continuation)
            durabilityWaiters.removeAll()
        }
        condition.unlock()
        for continuation in woken { continuation.resume(returning: .retry) }
        try? io?.syncShutdownGracefully()
        pendingSignal.finish()
    }
}
