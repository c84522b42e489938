import DequeModule
import Shared

/// What a journal reopened on its segments holds unconfirmed: the oldest records in memory (at most `memoryLimit`
/// bytes by `JournalEntry.memoryCost`, at least one), and where the rest start on disk.
struct ReopenedJournal {
    private(set) var held: Deque<JournalEntry> = []
    private(set) var heldBytes = 0
    /// The first unconfirmed record left on disk, and when it was recorded (Unix milliseconds).
    private(set) var spilledFrom: UInt64?
    private(set) var spilledFromMs: Int64?
    private(set) var unconfirmed = UnconfirmedProducts()

    /// One pass over the segments, streaming every record found to `recovered` in journal order (`confirmed`: the
    /// Database Service has it).
    init(
        log: SegmentedLog, found: SegmentedLog.Recovered, memoryLimit: Int, directory: String,
        recovered: (_ sequence: UInt64, _ record: JournalRecord, _ confirmed: Bool) throws -> Void
    ) throws {
        guard let first = found.firstSequence, first <= found.lastSequence else { return }
        let (now, nowMs) = (ContinuousClock.now, Timestamp.nowMilliseconds())
        let read = try log.read(from: first, through: found.lastSequence, limit: .max) { sequence, record in
            let isConfirmed = sequence <= found.confirmed
            if !isConfirmed {
                unconfirmed.add(record.operation, sequence: sequence)
                let cost = JournalEntry.memoryCost(record)
                if spilledFrom == nil && (held.isEmpty || heldBytes + cost <= memoryLimit) {
                    heldBytes += cost
                    held.append(JournalEntry(sequence: sequence, record: record, recordedAt: record.recordedAt(now: now, nowMs: nowMs)))
                } else if spilledFrom == nil {
                    spilledFrom = sequence
                    spilledFromMs = record.recordedAtMs
                }
            }
            try recovered(sequence, record, isConfirmed)
        }
        guard read == Int(found.lastSequence - first + 1) else {
            throw JournalError.corrupt("\(directory): read \(read) records, expected \(found.lastSequence - first + 1)")
        }
    }
}
