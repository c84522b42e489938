import Testing

@testable import ProductsService

@Suite("Sync gate")
struct SyncGateTests {
    @Test("a task waiting for the gate leaves when cancelled; the holder and later waiters are not disturbed")
    func cancellation() async throws {
        let gate = SyncGate()
        let (holding, held) = AsyncStream.makeStream(of: Void.self)
        let (releasing, release) = AsyncStream.makeStream(of: Void.self)
        let holder = Task {
            try await gate.withGate {
                held.yield()
                for await _ in releasing { break }
            }
        }
        for await _ in holding { break }
        let waiter = Task { try await gate.withGate { "ran" } }
        // Give the waiter time to queue, then cancel it: it must return at once, while the gate is still held.
        try await Task.sleep(for: .milliseconds(50))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        release.yield()
        try await holder.value
        #expect(try await gate.withGate { "next" } == "next", "the gate is free again")
    }
}
