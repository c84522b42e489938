import ArgumentParser
import Foundation
import Logging

/// Process-wide logging set-up shared by both executables.
package enum LoggingSetup {
    /// Sends log lines to standard error at `level`; call once at start.
    package static func bootstrap(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
