import ArgumentParser
import Foundation
import Logging
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
private let systemWrite = Glibc.write
#elseif canImport(Darwin)
import Darwin
private let systemWrite = Darwin.write
#endif

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
                var handler = LineLogHandler(label: label, format: format)
                handler.logLevel = level
                return RedactingLogHandler(wrapped: handler, secrets: secrets, metadataProvider: provider)
            }, metadataProvider: RequestTrace.metadataProvider)
    }
}

/// Log lines on standard error, one per call: text for people, laid out as swift-log's `StreamLogHandler`
/// lays them out (`<timestamp> <level> <label>: key=value … [<source>] <message>`, keys sorted), or one JSON
/// object (`timestamp`, `level`, `label`, `message`, then the metadata). The timestamp is formatted once a
/// second and each line built in one string: `StreamLogHandler` ran `strftime` and several intermediate
/// strings per line, most of what an access log line cost.
package struct LineLogHandler: LogHandler {
    package var logLevel: Logger.Level = .info
    package var metadata: Logger.Metadata = [:]
    let label: String
    let format: LogFormat
    let write: @Sendable (String) -> Void

    package init(label: String, format: LogFormat, write: @escaping @Sendable (String) -> Void = LogOutput.standardError) {
        self.label = label
        self.format = format
        self.write = write
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        let fields = metadata.isEmpty ? event.metadata ?? [:] : metadata.merging(event.metadata ?? [:]) { $1 }
        switch format {
        case .text: write(textLine(event, fields))
        case .json: write(jsonLine(event, fields))
        }
    }

    private func textLine(_ event: LogEvent, _ fields: Logger.Metadata) -> String {
        var line = LogOutput.timestamp()
        line.reserveCapacity(160)
        line += " "
        line += event.level.rawValue
        line += " "
        line += label
        line += ":"
        for key in fields.keys.sorted() {
            line += " "
            line += key
            line += "="
            line += fields[key]!.description
        }
        if let error = event.error { line += " error=\(error)" }
        line += " ["
        line += event.source
        line += "] "
        line += event.message.description
        line += "\n"
        return line
    }

    private func jsonLine(_ event: LogEvent, _ fields: Logger.Metadata) -> String {
        var object = fields.mapValues(Self.json)
        object["timestamp"] = .string(Timestamp.now())
        object["level"] = .string(event.level.rawValue)
        object["label"] = .string(label)
        object["message"] = .string(event.message.description)
        if let error = event.error { object["error"] = .string("\(error)") }
        var buffer = ByteBuffer()
        JSONValue.object(object).write(into: &buffer)
        buffer.writeInteger(UInt8(ascii: "\n"))
        return String(buffer: buffer)
    }

    private static func json(_ value: Logger.Metadata.Value) -> JSONValue {
        switch value {
        case .string(let text): .string(text)
        case .stringConvertible(let convertible): .string(convertible.description)
        case .array(let values): .array(values.map(json))
        case .dictionary(let values): .object(values.mapValues(json))
        }
    }
}

/// Where log lines go.
package enum LogOutput {
    private static let lock = Mutex(())

    /// Writes a whole line with `write(2)`, under a lock, so lines from concurrent tasks never interleave.
    package static let standardError: @Sendable (String) -> Void = { line in
        var line = line
        line.withUTF8 { bytes in
            lock.withLock { _ in
                var offset = 0
                while offset < bytes.count {
                    let written = systemWrite(2, bytes.baseAddress! + offset, bytes.count - offset)
                    if written < 0 && errno == EINTR { continue }
                    guard written > 0 else { return }
                    offset += written
                }
            }
        }
    }

    private static let second = Mutex<(second: Int, text: String)>((-1, ""))

    /// Now as `2026-11-28T21:14:54+0000` (UTC, the layout `StreamLogHandler` uses), formatted once a second.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return second.withLock { cached in
            if cached.second == now.tv_sec { return cached.text }
            var seconds = now.tv_sec
            var parts = tm()
            gmtime_r(&seconds, &parts)
            func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
            let text = "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
                + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))+0000"
            cached = (now.tv_sec, text)
            return text
        }
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
        for secret in secrets where text.containsBytes(of: secret) {
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

extension String {
    /// Whether `needle`'s UTF-8 bytes occur in this string's: a plain byte search, several times faster than
    /// `contains(_:)` (which goes through Foundation) on the lines every request logs.
    package func containsBytes(of needle: String) -> Bool {
        var haystack = self
        var needle = needle
        return haystack.withUTF8 { text in
            needle.withUTF8 { pattern in
                guard let first = pattern.first else { return true }
                guard text.count >= pattern.count else { return false }
                var index = 0
                let last = text.count - pattern.count
                while index <= last {
                    if text[index] == first, memcmp(text.baseAddress! + index, pattern.baseAddress!, pattern.count) == 0 { return true }
                    index += 1
                }
                return false
            }
        }
    }
}
