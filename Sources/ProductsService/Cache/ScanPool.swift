import NIOCore
import NIOPosix

/// The threads long listings run on: half the cores (at least one), at a lower scheduling priority, so that
/// however many searches are asked at once, the other requests keep the rest of the machine.
enum ScanPool {
    private static let shared: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: max(1, System.coreCount / 2))
        pool.start()
        return pool
    }()

    /// Runs `body` on a scan thread at nice 19; nil when the pool is shut down.
    ///
    /// The waiting task is resumed from an event loop thread, never from the scan thread itself. Resuming a task
    /// enqueues it on Dispatch, which on Linux creates a worker thread from the enqueuing thread when it wants
    /// one, and a thread inherits its creator's nice value. Resumed from here, a Swift concurrency worker (and any
    /// process it later starts) would run at nice 19 for good; seen as test processes' children crawling.
    static func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T? {
        let loop = MultiThreadedEventLoopGroup.singleton.any()
        return await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
            shared.submit { state in
                guard case .active = state else {
                    loop.execute { continuation.resume(returning: nil) }
                    return
                }
                lowerCurrentThreadPriority()
                let result = body()
                loop.execute { continuation.resume(returning: result) }
            }
        }
    }

    /// Nice 19 for the calling thread (Linux keeps the nice value per thread): while request threads want the
    /// CPU the scheduler gives a scan little of it, and all of it when they do not. Measured at a million
    /// products (`bench/search-stall`): nice 10 left GET p99 at 2.7 to 3.2 times idle, nice 19 at 2.5.
    private static func lowerCurrentThreadPriority() {
        #if os(Linux)
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
        #endif
    }
}
