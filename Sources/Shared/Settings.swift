import ArgumentParser
import Foundation

/// Settings read from the environment as the defaults of command-line flags.
package enum Settings {
    /// The value of environment variable `name` parsed as `T`, else `fallback`.
    ///
    /// An unparseable value ends the process with a one-line error naming the variable,
    /// rather than silently falling back to the default.
    package static func env<T: ExpressibleByArgument>(_ name: String, default fallback: T) -> T {
        guard let raw = ProcessInfo.processInfo.environment[name], !raw.isEmpty else { return fallback }
        guard let value = T(argument: raw) else {
            FileHandle.standardError.write(Data("error: environment variable \(name): '\(raw)' is not a valid value\n".utf8))
            exit(64)
        }
        return value
    }

    /// Checks that a listening port is in range (0 picks a free one).
    package static func validatePort(_ port: Int) throws {
        guard (0...65535).contains(port) else {
            throw SettingError("--port (PORT): \(port) is not a port number (0...65535)")
        }
    }
}
