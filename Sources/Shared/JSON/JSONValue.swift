import NIOCore

/// A parsed JSON document. Parsing is strict RFC 8259 (Foundation's parser accepts trailing commas in
/// objects) with a nesting limit, so hostile input cannot exhaust the stack.
package indirect enum JSONValue: Sendable, Equatable {
    case object([String: JSONValue])
    case array([JSONValue])
    case string(String)
    case number(Double)
    case bool(Bool)
    case null

    package static let maxDepth = 256

    /// Parses one JSON value; the error says what is wrong and where.
    package static func parse(_ buffer: ByteBuffer) throws(JSONSyntaxError) -> JSONValue {
        try buffer.withUnsafeReadableBytes { bytes throws(JSONSyntaxError) in
            var parser = JSONParser(bytes: bytes)
            return try parser.document()
        }
    }

    /// A short name of the value's JSON type, for error messages.
    package var typeName: String {
        switch self {
        case .object: "an object"
        case .array: "an array"
        case .string: "a string"
        case .number: "a number"
        case .bool: "a boolean"
        case .null: "null"
        }
    }
}

/// Why a body is not JSON.
package struct JSONSyntaxError: Error, CustomStringConvertible {
    package let description: String
    /// Set when the JSON is well formed but not what a type that reads its own shape expects.
    package var fault: Fault?

    /// What is wrong with well-formed JSON; parameters are named like `operations[2][product][name]`.
    package enum Fault: Sendable, Equatable {
        case invalid(param: String)
        case missing(param: String)
        case unknown(param: String)
        case notAnObject
    }

    package init(description: String, fault: Fault? = nil) {
        self.description = description
        self.fault = fault
    }

    /// The value, or a `missing` fault naming `param`.
    package static func required<T>(_ value: T?, _ param: @autoclosure () -> String) throws(JSONSyntaxError) -> T {
        guard let value else { throw missing(param()) }
        return value
    }
}

extension ByteBuffer {
    /// Reads the readable bytes as one JSON object with the strict parser, calling `member` with each key (the
    /// parser at its value, which `member` reads or skips), and refuses anything after the object.
    package func parseJSONObject(_ member: (inout JSONParser, String) throws(JSONSyntaxError) -> Void) throws(JSONSyntaxError) {
        try parseJSONObject { parser, key, _ throws(JSONSyntaxError) in try member(&parser, key) }
    }

    /// `parseJSONObject`, handing `member` the bytes parsed too (valid during the call), for values kept as bytes.
    package func parseJSONObject(
        _ member: (inout JSONParser, String, UnsafeRawBufferPointer) throws(JSONSyntaxError) -> Void
    ) throws(JSONSyntaxError) {
        try withUnsafeReadableBytes { bytes throws(JSONSyntaxError) in
            var parser = JSONParser(bytes: bytes)
            try parser.members { parser, key throws(JSONSyntaxError) in try member(&parser, key, bytes) }
            parser.skipWhitespace()
            guard parser.index == bytes.count else { throw parser.failure("unexpected data after the JSON value") }
        }
    }
}

/// A strict JSON parser over bytes: whole documents as `JSONValue`, or member by member for types that read
/// their own shape and leave parts unparsed (`skipValue`, then the byte range).
package struct JSONParser {
    let bytes: UnsafeRawBufferPointer
    /// The offset of the next byte to read.
    package private(set) var index = 0
    var depth = 0

    package init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// Calls `member` with each key of the object starting here; `member` must read (or skip) its value.
    package mutating func members(
        _ member: (inout JSONParser, String) throws(JSONSyntaxError) -> Void
    ) throws(JSONSyntaxError) {
        skipWhitespace()
        guard current == UInt8(ascii: "{") else { throw failure("expected an object") }
        try enter()
        defer { depth -= 1 }
        if current == UInt8(ascii: "}") {
            index += 1
            return
        }
        while true {
            guard current == UInt8(ascii: "\"") else { throw failure("expected a string key") }
            let key = try string()
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw failure("expected ':'") }
            index += 1
            skipWhitespace()
            try member(&self, key)
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","):
                index += 1
                skipWhitespace()
            case UInt8(ascii: "}"):
                index += 1
                return
            default:
                throw failure("expected ',' or '}'")
            }
        }
    }

    /// Calls `element` for each element of the array starting here; `element` must read (or skip) it.
    package mutating func elements(_ element: (inout JSONParser) throws(JSONSyntaxError) -> Void) throws(JSONSyntaxError) {
        skipWhitespace()
        guard current == UInt8(ascii: "[") else { throw failure("expected an array") }
        try enter()
        defer { depth -= 1 }
        if current == UInt8(ascii: "]") {
            index += 1
            return
        }
        while true {
            try element(&self)
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","):
                index += 1
                skipWhitespace()
            case UInt8(ascii: "]"):
                index += 1
                return
            default:
                throw failure("expected ',' or ']'")
            }
        }
    }

    /// A string value.
    package mutating func stringValue() throws(JSONSyntaxError) -> String {
        guard current == UInt8(ascii: "\"") else { throw failure("expected a string") }
        return try string()
    }

    /// A string value; anything else is an error naming `param` (built only then).
    package mutating func string(param: @autoclosure () -> String) throws(JSONSyntaxError) -> String {
        guard current == UInt8(ascii: "\"") else { throw try mismatch(param(), "a string") }
        return try string()
    }

    /// A string value, checked as `string(param:)` checks it, but not made: ASCII without escapes, the common
    /// case, is only scanned.
    package mutating func skipString(param: @autoclosure () -> String) throws(JSONSyntaxError) {
        guard current == UInt8(ascii: "\"") else { throw try mismatch(param(), "a string") }
        var end = index + 1
        while end < bytes.count {
            let byte = bytes[end]
            guard byte >= 0x20, byte < 0x80, byte != UInt8(ascii: "\\") else { break }
            if byte == UInt8(ascii: "\"") {
                index = end + 1
                return
            }
            end += 1
        }
        _ = try string()
    }

    /// A string value or null.
    package mutating func optionalString(param: @autoclosure () -> String) throws(JSONSyntaxError) -> String? {
        if current == UInt8(ascii: "n") {
            try literal("null")
            return nil
        }
        return try string(param: param())
    }

    /// A boolean value; anything else is an error naming `param`.
    package mutating func boolean(param: @autoclosure () -> String) throws(JSONSyntaxError) -> Bool {
        switch current {
        case UInt8(ascii: "t"):
            try literal("true")
            return true
        case UInt8(ascii: "f"):
            try literal("false")
            return false
        default:
            throw try mismatch(param(), "a boolean")
        }
    }

    /// An array of strings; anything else is an error naming `param` (or the element, `param[i]`).
    package mutating func stringArray(param: @autoclosure () -> String) throws(JSONSyntaxError) -> [String] {
        guard current == UInt8(ascii: "[") else { throw try mismatch(param(), "an array of strings") }
        var strings: [String] = []
        try elements { parser throws(JSONSyntaxError) in strings.append(try parser.string(param: "\(param())[\(strings.count)]")) }
        return strings
    }

    /// An object of strings; anything else is an error naming `param` (or the entry, `param[key]`).
    package mutating func stringObject(param: @autoclosure () -> String) throws(JSONSyntaxError) -> [String: String] {
        guard current == UInt8(ascii: "{") else { throw try mismatch(param(), "an object") }
        var entries: [String: String] = [:]
        try members { parser, key throws(JSONSyntaxError) in entries[key] = try parser.string(param: param() + "[" + key + "]") }
        return entries
    }

    /// The members of the object starting here, as `members` gives them; a key `known` refuses is an `unknown` fault
    /// naming `param[key]`.
    package mutating func members(
        _ param: @autoclosure () -> String, known: (String) -> Bool, _ member: (inout JSONParser, String) throws(JSONSyntaxError) -> Void
    ) throws(JSONSyntaxError) {
        guard current == UInt8(ascii: "{") else { throw try mismatch(param(), "an object") }
        try members { parser, key throws(JSONSyntaxError) in
            guard known(key) else {
                let named = param() + "[" + key + "]"
                throw JSONSyntaxError(description: "Unknown body parameter '\(named)'", fault: .unknown(param: named))
            }
            try member(&parser, key)
        }
    }

    /// An integer value; anything else (a fraction, out of range, another type, null) is an error naming `param`.
    package mutating func integer(param: @autoclosure () -> String) throws(JSONSyntaxError) -> Int64 {
        guard let byte = current, byte == UInt8(ascii: "-") || (0x30...0x39).contains(byte) else { throw try mismatch(param(), "an integer") }
        let start = index
        _ = try number()
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let value = Int64(text) else {
            let param = param()
            throw JSONSyntaxError(description: "'\(param)' must be an integer", fault: .invalid(param: param))
        }
        return value
    }

    /// The error for a value of the wrong type at `param`, checking the value is well-formed JSON first.
    package mutating func mismatch(_ param: String, _ expected: String) throws(JSONSyntaxError) -> JSONSyntaxError {
        let isNull = current == UInt8(ascii: "n")
        _ = try value()
        return JSONSyntaxError(description: "'\(param)' must be \(expected)\(isNull ? ", not null" : "")", fault: .invalid(param: param))
    }

    /// An integer value, exactly (no fraction, no exponent, within Int64); nil for `null`.
    package mutating func integerValue() throws(JSONSyntaxError) -> Int64? {
        if current == UInt8(ascii: "n") {
            try literal("null")
            return nil
        }
        let start = index
        if current == UInt8(ascii: "-") { index += 1 }
        guard digits() else { throw failure("expected an integer") }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let value = Int64(text) else { throw failure("integer out of range") }
        return value
    }

    /// Skips one value, checking only its structure (strings, nesting) to find where it ends; returns where it
    /// starts. Whoever reads it later parses it in full.
    package mutating func skipValue() throws(JSONSyntaxError) -> Int {
        let start = index
        var nesting = 0
        repeat {
            guard let byte = current else { throw failure("unexpected end of data") }
            switch byte {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                nesting += 1
                guard depth + nesting <= JSONValue.maxDepth else { throw failure("nesting deeper than \(JSONValue.maxDepth)") }
                index += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                guard nesting > 0 else { throw failure("unexpected end of a container") }
                nesting -= 1
                index += 1
            case UInt8(ascii: "\""):
                index += 1
                while let inner = current, inner != UInt8(ascii: "\"") { index += inner == UInt8(ascii: "\\") ? 2 : 1 }
                guard current != nil else { throw failure("unterminated string") }
                index += 1
            default:
                // Outside a container: a number or a literal, up to the next delimiter.
                if nesting == 0 {
                    while let next = current, !",}] \t\r\n".utf8.contains(next) { index += 1 }
                } else {
                    index += 1
                }
            }
        } while nesting > 0
        guard index > start else { throw failure("expected a JSON value") }
        return start
    }

    package var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    func failure(_ what: String) -> JSONSyntaxError { JSONSyntaxError(description: "\(what) at byte \(index)") }

    package mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    package mutating func document() throws(JSONSyntaxError) -> JSONValue {
        skipWhitespace()
        let value = try self.value()
        skipWhitespace()
        guard index == bytes.count else { throw failure("unexpected data after the JSON value") }
        return value
    }

    package mutating func value() throws(JSONSyntaxError) -> JSONValue {
        switch current {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case .some(let byte) where byte == UInt8(ascii: "-") || (0x30...0x39).contains(byte): return .number(try number())
        default: throw failure("expected a JSON value")
        }
    }

    mutating func enter() throws(JSONSyntaxError) {
        depth += 1
        guard depth <= JSONValue.maxDepth else { throw failure("nesting deeper than \(JSONValue.maxDepth)") }
        index += 1
        skipWhitespace()
    }

    mutating func object() throws(JSONSyntaxError) -> JSONValue {
        var members: [String: JSONValue] = [:]
        try self.members { parser, key throws(JSONSyntaxError) in members[key] = try parser.value() }
        return .object(members)
    }

    mutating func array() throws(JSONSyntaxError) -> JSONValue {
        var elements: [JSONValue] = []
        try self.elements { parser throws(JSONSyntaxError) in elements.append(try parser.value()) }
        return .array(elements)
    }

    mutating func literal(_ word: StaticString) throws(JSONSyntaxError) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count, (0..<count).allSatisfy({ bytes[index + $0] == word.utf8Start[$0] }) else {
            throw failure("invalid literal")
        }
        index += count
    }

    mutating func digits() -> Bool {
        let start = index
        while let byte = current, (0x30...0x39).contains(byte) { index += 1 }
        return index > start
    }

    mutating func number() throws(JSONSyntaxError) -> Double {
        let start = index
        if current == UInt8(ascii: "-") { index += 1 }
        if current == UInt8(ascii: "0") {
            index += 1
        } else if !digits() {
            throw failure("invalid number")
        }
        if current == UInt8(ascii: ".") {
            index += 1
            guard digits() else { throw failure("invalid number") }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            index += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
            guard digits() else { throw failure("invalid number") }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let value = Double(text) else { throw failure("invalid number") }
        return value
    }

    /// A string starting at the opening quote: escapes decoded, raw control characters and invalid UTF-8 refused.
    mutating func string() throws(JSONSyntaxError) -> String {
        index += 1
        let start = index
        // Fast path: no escapes.
        var ascii = true
        while let byte = current, byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\\") {
            guard byte >= 0x20 else { throw failure("control character in string") }
            if byte >= 0x80 { ascii = false }
            index += 1
        }
        guard let stop = current else { throw failure("unterminated string") }
        if stop == UInt8(ascii: "\"") {
            // No escapes, the common case: straight from the bytes, with no copy in between; ASCII needs no
            // validating (keys and most values are ASCII).
            let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<index])
            index += 1  // closing quote
            let string = raw.withMemoryRebound(to: UInt8.self) { utf8 in
                ascii ? String(decoding: utf8, as: UTF8.self) : String(validating: utf8, as: UTF8.self)
            }
            guard let string else { throw failure("invalid UTF-8 in string") }
            return string
        }
        var utf8 = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
        try escapedTail(into: &utf8)
        index += 1  // closing quote
        guard let string = String(validating: utf8, as: UTF8.self) else { throw failure("invalid UTF-8 in string") }
        return string
    }

    mutating func escapedTail(into utf8: inout [UInt8]) throws(JSONSyntaxError) {
        while let byte = current {
            switch byte {
            case UInt8(ascii: "\""):
                return
            case UInt8(ascii: "\\"):
                index += 1
                guard let escaped = current else { throw failure("unterminated string") }
                index += 1
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escaped)
                case UInt8(ascii: "b"): utf8.append(0x08)
                case UInt8(ascii: "f"): utf8.append(0x0C)
                case UInt8(ascii: "n"): utf8.append(0x0A)
                case UInt8(ascii: "r"): utf8.append(0x0D)
                case UInt8(ascii: "t"): utf8.append(0x09)
                case UInt8(ascii: "u"): try unicodeEscape(into: &utf8)
                default: throw failure("invalid escape")
                }
            case 0x00..<0x20:
                throw failure("control character in string")
            default:
                utf8.append(byte)
                index += 1
            }
        }
        throw failure("unterminated string")
    }

    mutating func hex4() throws(JSONSyntaxError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw failure("invalid \\u escape") }
        var value: UInt32 = 0
        for offset in 0..<4 {
            let byte = bytes[index + offset]
            let digit: UInt8
            switch byte {
            case 0x30...0x39: digit = byte - 0x30
            case 0x41...0x46: digit = byte - 0x41 + 10
            case 0x61...0x66: digit = byte - 0x61 + 10
            default: throw failure("invalid \\u escape")
            }
            value = value << 4 | UInt32(digit)
        }
        index += 4
        return value
    }

    mutating func unicodeEscape(into utf8: inout [UInt8]) throws(JSONSyntaxError) {
        var scalar = try hex4()
        if (0xD800...0xDBFF).contains(scalar) {
            guard current == UInt8(ascii: "\\"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "u") else {
                throw failure("unpaired surrogate")
            }
            index += 2
            let low = try hex4()
            guard (0xDC00...0xDFFF).contains(low) else { throw failure("unpaired surrogate") }
            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00...0xDFFF).contains(scalar) {
            throw failure("unpaired surrogate")
        }
        guard let unicode = Unicode.Scalar(scalar) else { throw failure("invalid \\u escape") }
        utf8.append(contentsOf: String(Character(unicode)).utf8)
    }
}
