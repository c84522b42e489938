import ArgumentParser
import Foundation
import Logging
import NIOCore

/// How log lines are written: for people, or one JSON object per line for log shippers.
package enum LogFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case text, json
}

/// Process-wide logging set-up shared by both executables.
package enum LoggingSetup {
    /// Sends log lines to standard error at `level`, with API keys and `secrets` redacted, and the request and
    /// trace ids of the request being handled on each line; call once at start.
    package static func bootstrap(level: Logger.Level, format: LogFormat = .text, secrets: [String] = []) {
        let secrets = secrets.filter { !$0.isEmpty }
        LoggingSystem.bootstrap(
            { label, provider in
                switch format {
                case .text:
                    var handler = StreamLogHandler.standardError(label: label)
                    handler.logLevel = level
                    return RedactingLogHandler(wrapped: handler, secrets: secrets, metadataProvider: provider)
                case .json:
                    var handler = JSONLogHandler(label: label)
                    handler.logLevel = level
                    return RedactingLogHandler(wrapped: handler, secrets: secrets, metadataProvider: provider)
                }
            }, metadataProvider: RequestTrace.metadataProvider)
    }
}

/// One JSON object per line on standard error: `timestamp`, `level`, `label`, `message`, then the metadata.
package struct JSONLogHandler: LogHandler {
    package var logLevel: Logger.Level = .info
    package var metadata: Logger.Metadata = [:]
    let label: String
    let write: @Sendable (String) -> Void

    package init(label: String, write: @escaping @Sendable (String) -> Void = JSONLogHandler.standardError) {
        self.label = label
        self.write = write
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        var fields = metadata.merging(event.metadata ?? [:]) { $1 }.mapValues(Self.json)
        fields["timestamp"] = .string(Timestamp.now())
        fields["level"] = .string(event.level.rawValue)
        fields["label"] = .string(label)
        fields["message"] = .string(event.message.description)
        if let error = event.error { fields["error"] = .string("\(error)") }
        var buffer = ByteBuffer()
        JSONValue.object(fields).write(into: &buffer)
        buffer.writeInteger(UInt8(ascii: "\n"))
        write(String(buffer: buffer))
    }

    private static func json(_ value: Logger.Metadata.Value) -> JSONValue {
        switch value {
        case .string(let text): .string(text)
        case .stringConvertible(let convertible): .string(convertible.description)
        case .array(let values): .array(values.map(json))
        case .dictionary(let values): .object(values.mapValues(json))
        }
    }

    private static let lock = NSLock()

    /// Writes a whole line at once, so lines from concurrent tasks never interleave.
    package static let standardError: @Sendable (String) -> Void = { line in
        lock.lock()
        defer { lock.unlock() }
        FileHandle.standardError.write(Data(line.utf8))
    }
}

/// Removes secrets from every message and metadata value before the wrapped handler writes them.
///
/// The logger's metadata and the metadata provider's are merged here into each line as it is written, not set
/// on the wrapped handler: `StreamLogHandler` renders its metadata again on every change. Hummingbird's own
/// `hb.request.id` is left out: `request_id` is the id clients see and send.
package struct RedactingLogHandler<Wrapped: LogHandler>: LogHandler {
    var wrapped: Wrapped
    let secrets: [String]
    package var metadata: Logger.Metadata = [:]
    package var metadataProvider: Logger.MetadataProvider?

    package init(wrapped: Wrapped, secrets: [String], metadataProvider: Logger.MetadataProvider? = nil) {
        self.wrapped = wrapped
        self.secrets = secrets
        self.metadataProvider = metadataProvider
    }

    package var logLevel: Logger.Level {
        get { wrapped.logLevel }
        set { wrapped.logLevel = newValue }
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        var event = event
        event.message = "\(redact(event.message.description))"
        var merged = metadataProvider?.get() ?? [:]
        merged.merge(metadata) { $1 }
        merged.merge(event.metadata ?? [:]) { $1 }
        merged["hb.request.id"] = nil
        event.metadata = merged.mapValues(redact)
        wrapped.log(event: event)
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
