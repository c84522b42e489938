import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOFoundationCompat

extension Request {
    /// Collects the body (at most `maxSize` bytes) and checks that it is declared as JSON.
    package func collectJSONBody(maxSize: Int = AppRequestContext.maxBodySize) async throws -> ByteBuffer {
        if let contentType = headers[.contentType] {
            let mediaType = String(contentType.prefix { $0 != ";" }.drop(while: { $0 == " " || $0 == "\t" })).lowercased()
                .trimmingSuffix { $0 == " " || $0 == "\t" }
            guard mediaType == "application/json" || mediaType.hasSuffix("+json") else {
                throw APIError.unsupportedMediaType(contentType)
            }
        }
        do {
            return try await body.collect(upTo: maxSize)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw APIError.bodyTooLarge(limit: maxSize)
        }
    }

    /// Decodes a JSON body into `T`, mapping every decoding failure to a 400 that names the fault.
    /// With `allowedFields`, the body must be an object with no other fields (else 400 `parameter_unknown`).
    package func decodeJSON<T: Decodable>(
        as type: T.Type, maxSize: Int = AppRequestContext.maxBodySize, allowedFields: Set<String>? = nil
    ) async throws -> T {
        let buffer = try await collectJSONBody(maxSize: maxSize)
        return try JSONBody.decode(type, from: buffer, allowedFields: allowedFields)
    }

    /// Parses a JSON body (strictly), for inputs built by hand from the parsed value.
    package func parseJSON(maxSize: Int = AppRequestContext.maxBodySize) async throws -> JSONValue {
        try JSONBody.parse(try await collectJSONBody(maxSize: maxSize))
    }
}

/// Decoding of request bodies with errors clients can act on.
package enum JSONBody {
    /// Parses strict JSON; an empty or malformed body is a 400.
    package static func parse(_ buffer: ByteBuffer) throws(APIError) -> JSONValue {
        guard buffer.readableBytes > 0 else {
            throw APIError.invalidBody("Request body is empty; a JSON object is required")
        }
        do {
            return try JSONValue.parse(buffer)
        } catch {
            throw APIError.invalidJSON(error.description)
        }
    }

    package static func decode<T: Decodable>(_ type: T.Type, from buffer: ByteBuffer, allowedFields: Set<String>? = nil) throws -> T {
        // Foundation's decoder is lenient (trailing commas); refuse what is not strict JSON first.
        let value = try parse(buffer)
        if let allowedFields, case .object(let fields) = value,
           let unknown = fields.keys.sorted().first(where: { !allowedFields.contains($0) }) {
            throw APIError.unknownParameter(unknown)
        }
        do {
            return try JSONCoding.decoder.decode(type, from: buffer)
        } catch let error as APIError {
            throw error
        } catch let error as DecodingError {
            throw apiError(for: error)
        } catch {
            throw APIError.invalidJSON(String(describing: error))
        }
    }

    static func apiError(for error: DecodingError) -> APIError {
        switch error {
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            return .invalidJSON(context.underlyingErrorDescription ?? context.debugDescription)
        case .typeMismatch(_, let context) where context.codingPath.isEmpty,
            .valueNotFound(_, let context) where context.codingPath.isEmpty:
            return .invalidBody("Request body must be a JSON object")
        case .typeMismatch(let type, let context):
            return .invalidParameter(context.paramName, "'\(context.paramName)' must be \(describe(type))")
        case .valueNotFound(let type, let context):
            return .invalidParameter(context.paramName, "'\(context.paramName)' must be \(describe(type)), not null")
        case .keyNotFound(let key, let context):
            let param = (context.codingPath + [key]).paramName
            return .missingParameter(param, "'\(param)' is required")
        case .dataCorrupted(let context):
            return .invalidParameter(context.paramName, context.debugDescription)
        @unknown default:
            return .invalidBody("Request body could not be decoded")
        }
    }

    private static func describe(_ type: Any.Type) -> String {
        let name = String(describing: type)
        return switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type, is UInt64.Type: "an integer"
        case is Bool.Type: "a boolean"
        default: name.hasPrefix("Dictionary") ? "an object" : name.hasPrefix("Array") ? "an array" : "of type \(name)"
        }
    }
}

extension DecodingError.Context {
    fileprivate var paramName: String { codingPath.paramName }
    fileprivate var underlyingErrorDescription: String? {
        (underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
    }
}

extension Array where Element == any CodingKey {
    /// `metadata[color]`, `operations[2][product][name]`.
    fileprivate var paramName: String {
        var result = ""
        for key in self {
            let part = key.intValue.map(String.init) ?? key.stringValue
            result += result.isEmpty ? part : "[\(part)]"
        }
        return result
    }
}

extension String {
    /// Without the trailing characters that satisfy `predicate`.
    fileprivate func trimmingSuffix(while predicate: (Character) -> Bool) -> String {
        var text = self
        while let last = text.last, predicate(last) { text.removeLast() }
        return text
    }
}
