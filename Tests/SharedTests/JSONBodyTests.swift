import Foundation
import NIOCore
import Testing
@testable import Shared

@Suite("Request body decoding")
struct JSONBodyTests {
    struct Sample: Decodable {
        var name: String
        var count: Int?
        var tags: [String: String]?
    }

    func error(decoding json: String) -> APIError? {
        do {
            _ = try JSONBody.decode(Sample.self, from: ByteBuffer(string: json))
            return nil
        } catch {
            return error as? APIError
        }
    }

    @Test("strict JSON: trailing commas, garbage and deep nesting are refused; valid documents pass")
    func strictJSON() {
        let invalid = [
            #"{"a":1,}"#, "[1,]", "{", "}", #"{"a" 1}"#, #"{"a":01}"#, "[1.]", "[.5]", "[1e]", "[tru]", #"["\x"]"#, #"["\u12G4"]"#,
            "[\"a\u{01}\"]", #"{"a":1} {"#, "{'a':1}", "[1 2]", String(repeating: "[", count: 300) + String(repeating: "]", count: 300),
        ]
        for json in invalid {
            #expect(throws: JSONSyntaxError.self, "\(json)") { try JSONValue.parse(ByteBuffer(string: json)) }
        }
        let valid = [
            #"{"a":1}"#, " [ ] ", "{}", #"{"a":[1,-2.5e+3,true,false,null,{"b":"\u00e9\n"}]}"#, "0", #""s""#, "-0.0E-1",
            String(repeating: "[", count: 200) + String(repeating: "]", count: 200),
        ]
        for json in valid {
            #expect(throws: Never.self, "\(json)") { try JSONValue.parse(ByteBuffer(string: json)) }
        }
    }

    @Test("the parser decodes strings, escapes, surrogate pairs, numbers and nesting like Foundation")
    func parsing() throws {
        let text = #"{"s":"a\"b\\c\/d\n\t\u00e9\ud83d\ude00 é","n":-12.5e1,"z":0,"b":[true,false,null],"o":{"k":{}},"dup":1,"dup":2}"#
        let value = try JSONValue.parse(ByteBuffer(string: text))
        #expect(value == .object([
            "s": .string("a\"b\\c/d\n\té😀 é"), "n": .number(-125), "z": .number(0),
            "b": .array([.bool(true), .bool(false), .null]), "o": .object(["k": .object([:])]), "dup": .number(2),
        ]))
        for bad in [#"["\ud83d"]"#, #"["\ude00"]"#, #"["\ud83d\u0041"]"#] {
            #expect(throws: JSONSyntaxError.self, "\(bad)") { try JSONValue.parse(ByteBuffer(string: bad)) }
        }
        #expect(throws: JSONSyntaxError.self) { try JSONValue.parse(ByteBuffer(bytes: [0x22, 0xC3, 0x28, 0x22])) }
    }

    @Test("each decoding failure maps to a 400 that names its field")
    func errorMapping() {
        #expect(error(decoding: "")?.code == "invalid_body")
        #expect(error(decoding: "null")?.code == "invalid_body")
        #expect(error(decoding: "[1]")?.code == "invalid_body")
        #expect(error(decoding: "{")?.code == "invalid_json")
        #expect(error(decoding: #"{"name":"x",}"#)?.code == "invalid_json")
        #expect(error(decoding: "{}").map { ($0.code, $0.param) } ?? ("", nil) == ("parameter_missing", "name"))
        #expect(error(decoding: #"{"name":1}"#).map { ($0.code, $0.param) } ?? ("", nil) == ("parameter_invalid", "name"))
        #expect(error(decoding: #"{"name":"x","count":"3"}"#)?.param == "count")
        #expect(error(decoding: #"{"name":"x","tags":{"a":2}}"#)?.param == "tags[a]")
        #expect(error(decoding: #"{"name":"x","tags":[]}"#)?.message.contains("an object") == true)
        #expect(error(decoding: #"{"name":"x"}"#) == nil)
        for failure in [error(decoding: "{"), error(decoding: "{}")] {
            #expect(failure?.status == .badRequest)
        }
    }

    @Test("invalid UTF-8 is invalid JSON")
    func invalidUTF8() throws {
        let bytes: [UInt8] = [0x7B, 0x22, 0x6E, 0x61, 0x6D, 0x65, 0x22, 0x3A, 0x22, 0xC3, 0x28, 0x22, 0x7D]
        #expect(throws: APIError.self) { try JSONBody.decode(Sample.self, from: ByteBuffer(bytes: bytes)) }
    }
}
