import Foundation
import Synchronization
import HTTPTypes
import Testing
import Logging
import Shared

@Suite("API keys and secrets")
struct APIKeyTests {
    @Test("keys are sk_ and 43 base62 characters, unique, hashed with SHA-256")
    func shape() {
        let keys = (0..<100).map { _ in APIKey.generate() }
        #expect(Set(keys).count == 100)
        for key in keys {
            #expect(key.wholeMatch(of: /sk_[0-9A-Za-z]{43}/) != nil)
            #expect(APIKey.isWellFormed(key))
        }
        #expect(APIKey.generateID().wholeMatch(of: /key_[0-9A-Za-z]{20}/) != nil)
        #expect(!APIKey.isWellFormed("sk_short") && !APIKey.isWellFormed("pk_" + String(repeating: "a", count: 43)))
        #expect(APIKey.hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(APIKey.constantTimeEquals("token", "token") && !APIKey.constantTimeEquals("token", "tokem"))
    }

    @Test("log lines and metadata lose keys and configured secrets")
    func redaction() {
        let key = APIKey.generate()
        let handler = RedactingLogHandler(wrapped: SwiftLogNoOpLogHandler(), secrets: ["s3cret-token"])
        #expect(handler.redact("auth Bearer \(key) failed") == "auth Bearer sk_[REDACTED] failed")
        #expect(handler.redact("token=s3cret-token;") == "token=[REDACTED];")
        #expect(handler.redact("mask_sk_ok and sk_") == "mask_sk_ok and sk_", "short sk_ words are not keys")
    }

    @Test("the logger's metadata is merged into each line as it is written, redacted; the line's own metadata wins")
    func metadataMergedAtWrite() {
        let lines = Mutex<[String]>([])
        var logger = Logger(label: "t") { label in
            RedactingLogHandler(wrapped: LineLogHandler(label: label, format: .json) { line in lines.withLock { $0.append(line) } }, secrets: ["s3cret"])
        }
        logger.logLevel = .info
        logger[metadataKey: "request_id"] = "r1"
        logger[metadataKey: "token"] = "s3cret"
        #expect(logger[metadataKey: "request_id"] == "r1")
        logger.info("first")
        logger.info("second", metadata: ["request_id": "r2", "extra": "x"])
        let written = lines.withLock { $0 }
        #expect(written.count == 2)
        #expect(written[0].contains(#""request_id":"r1""#) && written[0].contains("[REDACTED]") && !written[0].contains("s3cret"))
        #expect(written[1].contains(#""request_id":"r2""#) && written[1].contains(#""extra":"x""#))
    }
}
