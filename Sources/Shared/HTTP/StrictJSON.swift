import NIOCore

/// Checks that bytes are one RFC 8259 JSON value, as Foundation's lenient parser does not
/// (it accepts trailing commas in objects). Linear, allocation-free apart from the nesting stack.
package enum StrictJSON {
    package static let maxDepth = 256

    /// nil when valid, else what is wrong and where.
    package static func problem(in buffer: ByteBuffer) -> String? {
        buffer.withUnsafeReadableBytes { bytes in
            var scanner = Scanner(bytes: bytes)
            return scanner.validate()
        }
    }

    private struct Scanner {
        let bytes: UnsafeRawBufferPointer
        var index = 0
        /// Open containers, innermost last: true for an object.
        var stack: [Bool] = []

        init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        var current: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func skipWhitespace() {
            while let byte = current, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1 }
        }

        func failure(_ what: String) -> String { "\(what) at byte \(index)" }

        mutating func validate() -> String? {
            skipWhitespace()
            if let problem = value() { return problem }
            while !stack.isEmpty {
                skipWhitespace()
                let inObject = stack.last!
                switch current {
                case UInt8(ascii: ","):
                    index += 1
                    skipWhitespace()
                    if inObject {
                        if let problem = member() { return problem }
                    } else if let problem = value() {
                        return problem
                    }
                case UInt8(ascii: "}") where inObject, UInt8(ascii: "]") where !inObject:
                    index += 1
                    stack.removeLast()
                default:
                    return failure(inObject ? "expected ',' or '}'" : "expected ',' or ']'")
                }
            }
            skipWhitespace()
            return index == bytes.count ? nil : failure("unexpected data after the JSON value")
        }

        /// `"key": value` inside an object.
        mutating func member() -> String? {
            guard current == UInt8(ascii: "\"") else { return failure("expected a string key") }
            if let problem = string() { return problem }
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { return failure("expected ':'") }
            index += 1
            skipWhitespace()
            return value()
        }

        /// A scalar, or the opening of a container (pushed; its members are checked by `validate`).
        mutating func value() -> String? {
            switch current {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                let isObject = current == UInt8(ascii: "{")
                guard stack.count < StrictJSON.maxDepth else { return failure("nesting deeper than \(StrictJSON.maxDepth)") }
                index += 1
                skipWhitespace()
                if current == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                    index += 1
                    return nil
                }
                stack.append(isObject)
                return isObject ? member() : value()
            case UInt8(ascii: "\""): return string()
            case UInt8(ascii: "t"): return literal("true")
            case UInt8(ascii: "f"): return literal("false")
            case UInt8(ascii: "n"): return literal("null")
            case .some(let byte) where byte == UInt8(ascii: "-") || (0x30...0x39).contains(byte): return number()
            default: return failure("expected a JSON value")
            }
        }

        mutating func literal(_ word: StaticString) -> String? {
            let count = word.utf8CodeUnitCount
            guard index + count <= bytes.count,
                  (0..<count).allSatisfy({ bytes[index + $0] == word.utf8Start[$0] }) else { return failure("invalid literal") }
            index += count
            return nil
        }

        mutating func digits() -> Bool {
            let start = index
            while let byte = current, (0x30...0x39).contains(byte) { index += 1 }
            return index > start
        }

        mutating func number() -> String? {
            if current == UInt8(ascii: "-") { index += 1 }
            if current == UInt8(ascii: "0") {
                index += 1
            } else if !digits() {
                return failure("invalid number")
            }
            if current == UInt8(ascii: ".") {
                index += 1
                guard digits() else { return failure("invalid number") }
            }
            if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
                index += 1
                if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
                guard digits() else { return failure("invalid number") }
            }
            return nil
        }

        /// A string: no raw control characters, valid escapes (UTF-8 validity is left to the decoder).
        mutating func string() -> String? {
            index += 1
            while let byte = current {
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    return nil
                case UInt8(ascii: "\\"):
                    index += 1
                    guard let escaped = current else { return failure("unterminated string") }
                    if escaped == UInt8(ascii: "u") {
                        guard index + 4 < bytes.count,
                              (1...4).allSatisfy({ isHexDigit(bytes[index + $0]) }) else { return failure("invalid \\u escape") }
                        index += 5
                    } else {
                        guard Array("\"\\/bfnrt".utf8).contains(escaped) else { return failure("invalid escape") }
                        index += 1
                    }
                case 0x00..<0x20:
                    return failure("control character in string")
                default:
                    index += 1
                }
            }
            return failure("unterminated string")
        }

        func isHexDigit(_ byte: UInt8) -> Bool {
            (0x30...0x39).contains(byte) || (0x41...0x46).contains(byte) || (0x61...0x66).contains(byte)
        }
    }
}
