import ArgumentParser
import Foundation
import Logging

/// Process-wide logging set-up shared by both executables.
package enum LoggingSetup {
    /// Sends log lines to standard error at `level`, with API keys and `secrets` redacted; call once at start.
    package static func bootstrap(level: Logger.Level, secrets: [String] = []) {
        let secrets = secrets.filter { !$0.isEmpty }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return RedactingLogHandler(wrapped: handler, secrets: secrets)
        }
    }
}

/// Removes secrets from every message and metadata value before the wrapped handler writes them.
package struct RedactingLogHandler<Wrapped: LogHandler>: LogHandler {
    var wrapped: Wrapped
    let secrets: [String]

    package init(wrapped: Wrapped, secrets: [String]) {
        self.wrapped = wrapped
        self.secrets = secrets
    }

    package var logLevel: Logger.Level {
        get { wrapped.logLevel }
        set { wrapped.logLevel = newValue }
    }

    package var metadata: Logger.Metadata {
        get { wrapped.metadata }
        set { wrapped.metadata = newValue }
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { wrapped[metadataKey: key] }
        set { wrapped[metadataKey: key] = newValue }
    }

    package func log(
        level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String,
        line: UInt
    ) {
        wrapped.log(
            level: level, message: "\(redact(message.description))", metadata: metadata?.mapValues(redact), source: source,
            file: file, function: function, line: line)
    }

    package func redact(_ text: String) -> String {
        var text = APIKey.redact(text)
        for secret in secrets where text.contains(secret) {
            text = text.replacingOccurrences(of: secret, with: "[REDACTED]")
        }
        return text
    }

    private func redact(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case .string(let text): .string(redact(text))
        case .stringConvertible(let convertible): .string(redact(convertible.description))
        case .array(let values): .array(values.map(redact))
        case .dictionary(let values): .dictionary(values.mapValues(redact))
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
