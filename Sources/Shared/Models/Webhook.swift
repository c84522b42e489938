import Foundation

/// A webhook endpoint as the API shows it; `secret` only in the answer that creates it (or rotates it).
package struct WebhookEndpoint: Codable, Sendable, Equatable {
    package enum Status: String, Codable, Sendable {
        case enabled, disabled
    }

    package var id: String
    package var url: String
    package var enabledEvents: [String]
    package var description: String?
    package var status: Status
    package var createdAt: String
    package var secret: String?

    package init(
        id: String, url: String, enabledEvents: [String], description: String?, status: Status, createdAt: String, secret: String? = nil
    ) {
        self.id = id
        self.url = url
        self.enabledEvents = enabledEvents
        self.description = description
        self.status = status
        self.createdAt = createdAt
        self.secret = secret
    }

    /// Whether an event of `type` goes to this endpoint.
    package func wants(_ type: EventType) -> Bool { Self.wants(enabledEvents, type) }

    package static func wants(_ enabledEvents: [String], _ type: EventType) -> Bool {
        enabledEvents.contains("*") || enabledEvents.contains(type.rawValue)
    }

    package static let idPrefix = "we_"

    enum CodingKeys: String, CodingKey {
        case id, url, description, status, secret
        case enabledEvents = "enabled_events"
        case createdAt = "created_at"
    }
}

/// One try at delivering an event to an endpoint, as `GET /webhook_endpoints/{id}/deliveries` lists it.
package struct WebhookAttempt: Codable, Sendable, Equatable {
    package var id: String
    package var eventID: String
    package var eventType: String
    /// 1 for the first try.
    package var attempt: Int
    /// `succeeded` or `failed`.
    package var status: String
    package var responseCode: Int?
    package var latencyMs: Int
    package var error: String?
    package var attemptedAt: String
    /// What became of the delivery after this try: `pending` (another try follows), `succeeded` or `failed`.
    package var deliveryStatus: String?

    package init(
        id: String, eventID: String, eventType: String, attempt: Int, status: String, responseCode: Int?, latencyMs: Int, error: String?,
        attemptedAt: String, deliveryStatus: String?
    ) {
        self.id = id
        self.eventID = eventID
        self.eventType = eventType
        self.attempt = attempt
        self.status = status
        self.responseCode = responseCode
        self.latencyMs = latencyMs
        self.error = error
        self.attemptedAt = attemptedAt
        self.deliveryStatus = deliveryStatus
    }

    enum CodingKeys: String, CodingKey {
        case id, attempt, status, error
        case eventID = "event_id"
        case eventType = "event_type"
        case responseCode = "response_code"
        case latencyMs = "latency_ms"
        case attemptedAt = "attempted_at"
        case deliveryStatus = "delivery_status"
    }
}
