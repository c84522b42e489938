import Foundation

/// The Database Service's `GET /health` body.
package struct DatabaseHealth: Codable, Sendable, Equatable {
    package var status: String
    package var service: String
    package var version: String?
    package var backend: String
    package var schemaVersion: String?
    package var pool: String?
    package var lastError: String?
    package var timestamp: String

    package init(
        status: String, service: String, version: String? = ServiceVersion.current, backend: String, schemaVersion: String? = nil,
        pool: String? = nil, lastError: String? = nil, timestamp: String
    ) {
        self.status = status
        self.service = service
        self.version = version
        self.backend = backend
        self.schemaVersion = schemaVersion
        self.pool = pool
        self.lastError = lastError
        self.timestamp = timestamp
    }

    enum CodingKeys: String, CodingKey {
        case status, service, version, backend, pool, timestamp
        case schemaVersion = "schema_version"
        case lastError = "last_error"
    }
}

/// The version both services report.
package enum ServiceVersion {
    package static let current = "1.0.0"
}
