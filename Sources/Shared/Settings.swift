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

    /// An on/off environment variable: 1, true, yes or on; 0, false, no or off; else `fallback`.
    package static func envFlag(_ name: String, default fallback: Bool) -> Bool {
        guard let raw = ProcessInfo.processInfo.environment[name]?.lowercased(), !raw.isEmpty else { return fallback }
        if ["1", "true", "yes", "on"].contains(raw) { return true }
        if ["0", "false", "no", "off"].contains(raw) { return false }
        FileHandle.standardError.write(Data("error: environment variable \(name): '\(raw)' is not 1/0, true/false, yes/no or on/off\n".utf8))
        exit(64)
    }

    /// A secret given inline or, preferably, as a file (a Docker secret); the file wins, trimmed of white space.
    package static func secret(_ value: String, file: String, name: String) throws -> String? {
        guard !file.isEmpty else { return value.isEmpty ? nil : value }
        guard let contents = FileManager.default.contents(atPath: file) else {
            throw SettingError("--\(name)-file: cannot read \(file)")
        }
        let secret = String(decoding: contents, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !secret.isEmpty else { throw SettingError("--\(name)-file: \(file) is empty") }
        return secret
    }

    /// Checks that a listening port is in range (0 picks a free one).
    package static func validatePort(_ port: Int) throws {
        guard (0...65535).contains(port) else {
            throw SettingError("--port (PORT): \(port) is not a port number (0...65535)")
        }
    }
}
