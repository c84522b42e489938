import NIOCore

/// Writes the JSON of the hot-path DTOs straight into a buffer: a product is encoded on every write and
/// every batch, where Foundation's `JSONEncoder` dominated the profile. Tests check the output decodes to
/// the same values with Foundation.
package enum JSONWriter {
    /// A JSON string literal: quotes, backslashes and control characters escaped, everything else as UTF-8.
    package static func writeString(_ string: String, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "\""))
        var string = string
        string.withUTF8 { utf8 in
            var runStart = 0
            for (index, byte) in utf8.enumerated() where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                buffer.writeBytes(UnsafeBufferPointer(rebasing: utf8[runStart..<index]))
                switch byte {
                case UInt8(ascii: "\""): buffer.writeStaticString("\\\"")
                case UInt8(ascii: "\\"): buffer.writeStaticString("\\\\")
                case 0x0A: buffer.writeStaticString("\\n")
                case 0x0D: buffer.writeStaticString("\\r")
                case 0x09: buffer.writeStaticString("\\t")
                default:
                    buffer.writeStaticString("\\u00")
                    buffer.writeInteger(hexDigit(byte >> 4))
                    buffer.writeInteger(hexDigit(byte & 0x0F))
                }
                runStart = index + 1
            }
            buffer.writeBytes(UnsafeBufferPointer(rebasing: utf8[runStart...]))
        }
        buffer.writeInteger(UInt8(ascii: "\""))
    }

    /// A JSON object of strings, keys sorted.
    package static func writeObject(_ object: [String: String], into buffer: inout ByteBuffer) {
        // Most objects (a variant's options and metadata) have none or one member: nothing to sort.
        if object.count <= 1 {
            buffer.writeInteger(UInt8(ascii: "{"))
            if let (key, value) = object.first { writeMember(key, value, into: &buffer) }
            buffer.writeInteger(UInt8(ascii: "}"))
            return
        }
        buffer.writeJSONArray(object.sorted { $0.key < $1.key }, opening: "{", closing: "}") { entry, buffer in
            writeMember(entry.key, entry.value, into: &buffer)
        }
    }

    private static func writeMember(_ key: String, _ value: String, into buffer: inout ByteBuffer) {
        writeString(key, into: &buffer)
        buffer.writeInteger(UInt8(ascii: ":"))
        writeString(value, into: &buffer)
    }

    /// An integer, in decimal.
    package static func writeInteger(_ value: Int64, into buffer: inout ByteBuffer) {
        if value < 0 { buffer.writeInteger(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        // At most 20 digits, written backwards into a stack buffer: no String per number.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var start = 20
            repeat {
                start -= 1
                digits[start] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            buffer.writeBytes(UnsafeBufferPointer(rebasing: digits[start...]))
        }
    }

    /// A JSON array of strings.
    package static func writeArray(_ strings: [String], into buffer: inout ByteBuffer) {
        buffer.writeJSONArray(strings, opening: "[", closing: "]") { string, buffer in writeString(string, into: &buffer) }
    }

    private static func hexDigit(_ value: UInt8) -> UInt8 {
        value < 10 ? 0x30 + value : 0x61 + value - 10
    }
}

extension ByteBuffer {
    /// Writes `opening`, each element with `write` (commas between), then `closing`: an array, an object's
    /// members, or an object whose last member is an array.
    package mutating func writeJSONArray<Elements: Sequence>(
        _ elements: Elements, opening: StaticString, closing: StaticString, _ write: (Elements.Element, inout ByteBuffer) -> Void
    ) {
        writeStaticString(opening)
        var first = true
        for element in elements {
            if !first { writeInteger(UInt8(ascii: ",")) }
            first = false
            write(element, &self)
        }
        writeStaticString(closing)
    }

    /// Writes `prefix` (punctuation and a key) and then `value` as a JSON string.
    package mutating func writeJSONString(_ value: String, after prefix: StaticString) {
        writeStaticString(prefix)
        JSONWriter.writeString(value, into: &self)
    }
}

extension ProductPage {
    /// `{"products":[...],"has_more":bool}`.
    package var json: ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(products.count * 256 + 32)
        Self.writeJSON(products, hasMore: hasMore, into: &buffer) { product, buffer in product.writeJSON(into: &buffer) }
        return buffer
    }

    /// A page of products each written by `write`.
    package static func writeJSON<Items: Sequence>(
        _ items: Items, hasMore: Bool, into buffer: inout ByteBuffer, _ write: (Items.Element, inout ByteBuffer) -> Void
    ) {
        buffer.writeJSONArray(items, opening: "{\"products\":[", closing: hasMore ? "],\"has_more\":true}" : "],\"has_more\":false}", write)
    }
}

extension WriteOperation {
    /// The operation's JSON, as the batch endpoint and the journal take it.
    package func writeJSON(into buffer: inout ByteBuffer) {
        writeJSONFields(into: &buffer)
        buffer.writeInteger(UInt8(ascii: "}"))
    }

    /// The operation's object without its closing brace, for a record that adds fields of its own. `product`, when
    /// given, writes an upsert's product from JSON the caller already holds (it must be the product's own).
    package func writeJSONFields(into buffer: inout ByteBuffer, product encoded: ((inout ByteBuffer) -> Void)? = nil) {
        switch self {
        case .upsert(let tenant, let product):
            buffer.writeJSONString(tenant, after: "{\"op\":\"upsert\",\"tenant\":")
            buffer.writeStaticString(",\"product\":")
            if let encoded { encoded(&buffer) } else { product.writeJSON(into: &buffer) }
        case .delete(let tenant, let id, let version, let deletedAt):
            buffer.writeJSONString(tenant, after: "{\"op\":\"delete\",\"tenant\":")
            buffer.writeJSONString(id, after: ",\"id\":")
            buffer.writeStaticString(",\"version\":")
            buffer.writeString(String(version))
            buffer.writeJSONString(deletedAt, after: ",\"deleted_at\":")
        }
    }

    package var json: ByteBuffer {
        var buffer = ByteBuffer()
        writeJSON(into: &buffer)
        return buffer
    }
}

extension WriteBatch {
    /// `{"operations":[...]}`, each operation with its `recorded_at_ms` when given.
    package var json: ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(operations.count * 256 + 20)
        buffer.writeJSONArray(operations.indices, opening: "{\"operations\":[", closing: "]}") { index, buffer in
            operations[index].writeJSONFields(into: &buffer)
            if let recordedAtMs = recordedAtMs(at: index) {
                buffer.writeStaticString(",\"recorded_at_ms\":")
                buffer.writeString(String(recordedAtMs))
            }
            buffer.writeInteger(UInt8(ascii: "}"))
        }
        return buffer
    }
}

extension WriteBatchResult {
    /// `{"results":[...]}`, as Foundation would encode it (absent fields left out); written directly, since
    /// Foundation's encoder took a fourteenth of the Database Service's CPU on batches of a thousand.
    package var json: ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(results.count * 64 + 16)
        buffer.writeJSONArray(results, opening: "{\"results\":[", closing: "]}") { result, buffer in
            buffer.writeJSONString(result.id, after: "{\"id\":")
            buffer.writeJSONString(result.outcome.rawValue, after: ",\"outcome\":")
            if let error = result.error { buffer.writeJSONString(error, after: ",\"error\":") }
            if let storedVersion = result.storedVersion {
                buffer.writeStaticString(",\"stored_version\":")
                buffer.writeString(String(storedVersion))
            }
            if let deleted = result.deleted { buffer.writeStaticString(deleted ? ",\"deleted\":true" : ",\"deleted\":false") }
            buffer.writeInteger(UInt8(ascii: "}"))
        }
        return buffer
    }
}

extension JSONValue {
    /// Writes this value as compact JSON, object keys sorted.
    package func write(into buffer: inout ByteBuffer) {
        switch self {
        case .object(let fields):
            buffer.writeJSONArray(fields.keys.sorted(), opening: "{", closing: "}") { key, buffer in
                JSONWriter.writeString(key, into: &buffer)
                buffer.writeInteger(UInt8(ascii: ":"))
                fields[key]!.write(into: &buffer)
            }
        case .array(let values):
            buffer.writeJSONArray(values, opening: "[", closing: "]") { value, buffer in value.write(into: &buffer) }
        case .string(let text): JSONWriter.writeString(text, into: &buffer)
        case .number(let number): buffer.writeString(number.isFinite ? "\(number)" : "null")
        case .bool(let flag): buffer.writeString(flag ? "true" : "false")
        case .null: buffer.writeString("null")
        }
    }
}
