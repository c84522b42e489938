import HTTPTypes
import NIOCore

/// One versioned write sent from the Products Service to the Database Service.
///
/// The Database Service applies an operation only when its version is newer than what it holds,
/// so retried, replayed or reordered operations can neither roll back nor resurrect a product.
package enum WriteOperation: Codable, Sendable, Equatable {
    case upsert(tenant: String, product: Product)
    case delete(tenant: String, id: String, version: Int64, deletedAt: String)

    package var tenant: String {
        switch self {
        case .upsert(let tenant, _), .delete(let tenant, _, _, _): tenant
        }
    }

    package var productID: String {
        switch self {
        case .upsert(_, let product): product.id
        case .delete(_, let id, _, _): id
        }
    }

    package var version: Int64 {
        switch self {
        case .upsert(_, let product): product.version
        case .delete(_, _, let version, _): version
        }
    }

    enum CodingKeys: String, CodingKey {
        case op, tenant, product, id, version
        case deletedAt = "deleted_at"
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let tenant = try container.decodeIfPresent(String.self, forKey: .tenant) ?? defaultTenant
        switch try container.decode(String.self, forKey: .op) {
        case "upsert":
            self = .upsert(tenant: tenant, product: try container.decode(Product.self, forKey: .product))
        case "delete":
            self = .delete(
                tenant: tenant,
                id: try container.decode(String.self, forKey: .id),
                version: try container.decode(Int64.self, forKey: .version),
                deletedAt: try container.decode(String.self, forKey: .deletedAt)
            )
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .op, in: container, debugDescription: "unknown op \(other)")
        }
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(tenant, forKey: .tenant)
        switch self {
        case .upsert(_, let product):
            try container.encode("upsert", forKey: .op)
            try container.encode(product, forKey: .product)
        case .delete(_, let id, let version, let deletedAt):
            try container.encode("delete", forKey: .op)
            try container.encode(id, forKey: .id)
            try container.encode(version, forKey: .version)
            try container.encode(deletedAt, forKey: .deletedAt)
        }
    }
}

/// A batch of operations the Database Service applies in one transaction.
package struct WriteBatch: Codable, Sendable {
    package var operations: [WriteOperation]
    /// When each operation was first recorded (`recorded_at_ms`, Unix milliseconds: a replica's journal time), one
    /// per operation, nil where not given (then it counts as recorded now); empty when none is given. A write
    /// recorded before the tombstone horizon, for a product with no row, is rejected: it may be older than a delete
    /// whose tombstone was purged.
    package var recordedAtMs: [Int64?] = []
    package init(operations: [WriteOperation], recordedAtMs: [Int64?] = []) {
        precondition(recordedAtMs.isEmpty || recordedAtMs.count == operations.count, "one recorded time per operation")
        self.operations = operations
        self.recordedAtMs = recordedAtMs
    }

    enum CodingKeys: String, CodingKey { case operations }

    /// The time operation `index` was recorded, if given.
    package func recordedAtMs(at index: Int) -> Int64? { recordedAtMs.isEmpty ? nil : recordedAtMs[index] }

    /// Reads a batch body in one strict pass, straight into operations. (It used to be parsed as a tree to
    /// check strictness and then decoded again by Foundation: a tenth of the Database Service's CPU under writes.)
    /// Fields other than `operations` are refused; unknown fields inside an operation are ignored.
    package init(json buffer: ByteBuffer) throws(APIError) {
        guard buffer.readableBytes > 0 else { throw APIError.invalidBody("Request body is empty; a JSON object is required") }
        var operations: [WriteOperation]?
        var recorded: [Int64?] = []
        do {
            try buffer.withUnsafeReadableBytes { bytes throws(JSONSyntaxError) in
                var parser = JSONParser(bytes: bytes)
                parser.skipWhitespace()
                guard parser.current == UInt8(ascii: "{") else {
                    _ = try parser.value()
                    throw JSONSyntaxError(description: "Request body must be a JSON object", fault: .notAnObject)
                }
                try parser.members { parser, key throws(JSONSyntaxError) in
                    guard key == "operations" else { throw JSONSyntaxError(description: "unknown field", fault: .unknown(param: key)) }
                    guard parser.current == UInt8(ascii: "[") else { throw try parser.mismatch("operations", "an array") }
                    var read: [WriteOperation] = []
                    var times: [Int64?] = []
                    try parser.elements { parser throws(JSONSyntaxError) in
                        var recordedAtMs: Int64?
                        let index = read.count
                        read.append(try WriteOperation(parsing: &parser, param: "operations[\(index)]", recordedAtMs: &recordedAtMs))
                        times.append(recordedAtMs)
                    }
                    operations = read
                    recorded = times.contains { $0 != nil } ? times : []
                }
                parser.skipWhitespace()
                guard parser.index == bytes.count else { throw parser.failure("unexpected data after the JSON value") }
            }
        } catch {
            switch error.fault {
            case nil: throw APIError.invalidJSON(error.description)
            case .notAnObject: throw APIError.invalidBody(error.description)
            case .unknown(let param): throw APIError.unknownParameter(param)
            case .missing(let param): throw APIError.missingParameter(param, error.description)
            case .invalid(let param): throw APIError.invalidParameter(param, error.description)
            }
        }
        guard let operations else { throw APIError.missingParameter("operations", "'operations' is required") }
        self.operations = operations
        self.recordedAtMs = recorded
    }
}

extension WriteOperation {
    /// One operation of a batch, read by `WriteBatch(json:)` (or a journal's line), with its `recorded_at_ms`;
    /// `param` names it in errors.
    package init(parsing parser: inout JSONParser, param: @autoclosure () -> String, recordedAtMs: inout Int64?) throws(JSONSyntaxError) {
        guard parser.current == UInt8(ascii: "{") else { throw try parser.mismatch(param(), "an object") }
        var op, tenant, id, deletedAt: String?
        var version: Int64?
        var product: Product?
        try parser.members { parser, key throws(JSONSyntaxError) in
            switch key {
            case "op": op = try parser.string(param: param() + "[op]")
            case "tenant": tenant = try parser.string(param: param() + "[tenant]")
            case "id": id = try parser.string(param: param() + "[id]")
            case "version": version = try parser.integer(param: param() + "[version]")
            case "deleted_at": deletedAt = try parser.string(param: param() + "[deleted_at]")
            case "recorded_at_ms": recordedAtMs = try parser.integer(param: param() + "[recorded_at_ms]")
            case "product": product = try Product(parsing: &parser, param: param() + "[product]")
            default: _ = try parser.skipValue()
            }
        }
        func required<T>(_ value: T?, _ field: String) throws(JSONSyntaxError) -> T { try JSONSyntaxError.required(value, param() + "[" + field + "]") }
        switch try required(op, "op") {
        case "upsert":
            self = .upsert(tenant: tenant ?? defaultTenant, product: try required(product, "product"))
        case "delete":
            self = .delete(
                tenant: tenant ?? defaultTenant, id: try required(id, "id"), version: try required(version, "version"),
                deletedAt: try required(deletedAt, "deleted_at"))
        case let other:
            throw JSONSyntaxError(description: "unknown op \(other)", fault: .invalid(param: param() + "[op]"))
        }
    }
}

/// What the Database Service did with each operation of a batch, in the batch's order.
package struct WriteBatchResult: Codable, Sendable, Equatable {
    package var results: [OperationResult]
    package init(results: [OperationResult]) { self.results = results }

    /// Reads the Database Service's answer with the strict parser (Foundation's decoder showed in profiles).
    package init(json buffer: ByteBuffer) throws(JSONSyntaxError) {
        var results: [OperationResult]?
        try buffer.parseJSONObject { parser, key throws(JSONSyntaxError) in
            guard key == "results" else { _ = try parser.skipValue(); return }
            var read: [OperationResult] = []
            try parser.elements { parser throws(JSONSyntaxError) in read.append(try OperationResult(parsing: &parser)) }
            results = read
        }
        self.results = try JSONSyntaxError.required(results, "results")
    }
}

/// The outcome of one operation of a batch.
package struct OperationResult: Codable, Sendable, Equatable {
    /// `applied`: stored; `stale`: a same or newer version was already stored; `rejected`: invalid, never retry.
    package enum Outcome: String, Codable, Sendable {
        case applied, stale, rejected
    }

    package var id: String
    package var outcome: Outcome
    package var error: String?
    /// With `stale`: the version stored, and whether it is a delete, so the sender can catch up.
    package var storedVersion: Int64?
    package var deleted: Bool?

    package init(id: String, outcome: Outcome, error: String? = nil, storedVersion: Int64? = nil, deleted: Bool? = nil) {
        self.id = id
        self.outcome = outcome
        self.error = error
        self.storedVersion = storedVersion
        self.deleted = deleted
    }

    enum CodingKeys: String, CodingKey {
        case id, outcome, error, deleted
        case storedVersion = "stored_version"
    }

    /// One result of `WriteBatchResult(json:)`.
    init(parsing parser: inout JSONParser) throws(JSONSyntaxError) {
        var id: String?
        var outcome: Outcome?
        var error: String?
        var storedVersion: Int64?
        var deleted: Bool?
        try parser.members { parser, key throws(JSONSyntaxError) in
            switch key {
            case "id": id = try parser.string(param: "id")
            case "outcome":
                let text = try parser.string(param: "outcome")
                guard let value = Outcome(rawValue: text) else { throw JSONSyntaxError(description: "unknown outcome \(text)") }
                outcome = value
            case "error": if case .string(let text) = try parser.value() { error = text }
            case "stored_version": storedVersion = try parser.integerValue()
            case "deleted":
                guard case .bool(let value) = try parser.value() else { throw JSONSyntaxError(description: "'deleted' must be a boolean") }
                deleted = value
            default: _ = try parser.skipValue()
            }
        }
        self.init(
            id: try JSONSyntaxError.required(id, "id"), outcome: try JSONSyntaxError.required(outcome, "outcome"), error: error,
            storedVersion: storedVersion, deleted: deleted)
    }
}

/// A write the Database Service decides in one transaction, for the writes a replica cannot decide alone:
/// `If-Match` (the stored version must be `expectedVersion`) and `Idempotency-Key` (the key's first answer is
/// stored with the write, and a retry on any replica gets it back).
package struct CoordinatedWrite: Codable, Sendable, Equatable {
    package var operation: WriteOperation
    /// The live product's stored version must be exactly this.
    package var expectedVersion: Int64?
    package var idempotency: StoredAnswer?
    /// The client gave the product's handle: held by another product, it is refused (409), not suffixed.
    package var handleGiven: Bool?

    package init(operation: WriteOperation, expectedVersion: Int64? = nil, idempotency: StoredAnswer? = nil, handleGiven: Bool? = nil) {
        self.operation = operation
        self.expectedVersion = expectedVersion
        self.idempotency = idempotency
        self.handleGiven = handleGiven
    }

    enum CodingKeys: String, CodingKey {
        case operation, idempotency
        case expectedVersion = "expected_version"
        case handleGiven = "handle_given"
    }
}

/// The first answer to an idempotent request, kept with its key and the fingerprint of the request.
package struct StoredAnswer: Codable, Sendable, Equatable {
    package var key: String
    package var fingerprint: String
    package var status: Int
    package var body: String
    package var etag: String
    /// Unix milliseconds.
    package var createdAt: Int64

    package init(key: String, fingerprint: String, status: Int, body: String, etag: String, createdAt: Int64) {
        self.key = key
        self.fingerprint = fingerprint
        self.status = status
        self.body = body
        self.etag = etag
        self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey {
        case key, fingerprint, status, body, etag
        case createdAt = "created_at"
    }
}

/// What a coordinated write did.
package struct CoordinatedResult: Codable, Sendable, Equatable {
    package enum Outcome: String, Codable, Sendable {
        /// Stored (and logged), with its key's answer if it had one.
        case applied
        /// The stored version is not `expected_version` (`stored_version`, `deleted` say what is).
        case preconditionFailed = "precondition_failed"
        /// A same or newer version is stored; nothing changed.
        case stale
        /// The key was used before with the same request: `answer` is the first answer.
        case replayed
        /// The key was used before with another request.
        case keyReused = "key_reused"
        /// Another live product holds the handle or a SKU (409), or a category is unknown (400): `error` says which.
        case refused
    }

    package var outcome: Outcome
    package var storedVersion: Int64?
    package var deleted: Bool?
    package var answer: StoredAnswer?
    /// The product stored when it differs from the one sent (its handle suffixed on a clash).
    package var stored: Product?
    /// Why the write was refused, and its status.
    package var error: APIError.Body?
    package var errorStatus: Int?

    package init(
        outcome: Outcome, storedVersion: Int64? = nil, deleted: Bool? = nil, answer: StoredAnswer? = nil, stored: Product? = nil,
        error: APIError.Body? = nil
    ) {
        self.outcome = outcome
        self.storedVersion = storedVersion
        self.deleted = deleted
        self.answer = answer
        self.stored = stored
        self.error = error
    }

    /// A write refused for `error`.
    package init(refused error: APIError) {
        self.init(outcome: .refused, error: error.body)
        errorStatus = error.status.code
    }

    /// The refusal as the client's error.
    package var refusal: APIError? {
        error.map { APIError(HTTPResponse.Status(code: errorStatus ?? 409), code: $0.code, message: $0.error, param: $0.param) }
    }

    enum CodingKeys: String, CodingKey {
        case outcome, deleted, answer, stored, error
        case storedVersion = "stored_version"
        case errorStatus = "error_status"
    }
}
