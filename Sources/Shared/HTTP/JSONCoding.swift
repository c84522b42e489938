import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOFoundationCompat

/// The shared JSON coders: one configuration, built once, used by every route and client.
package enum JSONCoding {
    package static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    package static let decoder = JSONDecoder()

    package static func encode(_ value: some Encodable) throws -> ByteBuffer {
        ByteBuffer(data: try encoder.encode(value))
    }
}

extension Response {
    /// A JSON response of an encodable value; encoding our own DTOs cannot fail.
    package static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        let buffer: ByteBuffer
        do {
            buffer = try JSONCoding.encode(value)
        } catch {
            preconditionFailure("encoding \(type(of: value)) failed: \(error)")
        }
        return json(buffer: buffer, status: status, headers: headers)
    }

    /// A JSON response of bytes that are already JSON.
    package static func json(buffer: ByteBuffer, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: buffer))
    }
}
