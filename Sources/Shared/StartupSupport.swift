import Synchronization

/// A setting that stops the process at start; its message names the setting.
package struct SettingError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}

/// Set once the server is listening, so a failure before then can be reported as a bad setting.
package final class StartupFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    package init() {}
    package func set() { flag.store(true, ordering: .releasing) }
    package var isSet: Bool { flag.load(ordering: .acquiring) }
}
