import Testing

import Shared

@Suite("Retry policy and deadlines")
struct RetryTests {
    @Test("waits double from the base up to the cap, each between half and all of it")
    func delays() {
        let policy = RetryPolicy(base: .milliseconds(100), cap: .seconds(1))
        for _ in 0..<200 {
            let first = policy.delay(afterFailures: 1)
            #expect(first >= .milliseconds(50) && first <= .milliseconds(100))
            let third = policy.delay(afterFailures: 3)
            #expect(third >= .milliseconds(200) && third <= .milliseconds(400))
            let many = policy.delay(afterFailures: 60)
            #expect(many >= .milliseconds(500) && many <= .seconds(1))
        }
    }

    @Test("a wait ends early when its task is cancelled, and says so")
    func cancelledWait() async {
        let policy = RetryPolicy(base: .seconds(60), cap: .seconds(60))
        let waiting = Task { await policy.wait(afterFailures: 1) }
        waiting.cancel()
        #expect(await waiting.value == false)
    }

    @Test("a deadline cancels what runs past it; what finishes in time returns its value or its own error")
    func deadline() async throws {
        await #expect(throws: DeadlineExceeded.self) {
            try await withDeadline(.milliseconds(50)) { try await Task.sleep(for: .seconds(60)) }
        }
        #expect(try await withDeadline(.seconds(60)) { 7 } == 7)
        struct Refused: Error {}
        await #expect(throws: Refused.self) { try await withDeadline(.seconds(60)) { throw Refused() } }
    }
}
