import Shared

/// Product events (read from the change log) and webhook endpoints with their deliveries.
///
/// Deliveries are fanned out from the change log by one dispatcher at a time (its cursor row is claimed with
/// `FOR UPDATE SKIP LOCKED` on PostgreSQL), so each event gets one delivery per endpoint whatever the number
/// of processes; each try is claimed the same way, so it is made by one process.
protocol WebhookStore: Sendable {
    /// A tenant's events, oldest first, paged like products; only changes no reader can see appear later.
    func events(tenant: String, query: EventQuery) async throws -> EventPage

    /// Stores a new endpoint; false when the tenant already has `WebhookRules.maxEndpointsPerTenant`.
    func createEndpoint(_ endpoint: StoredEndpoint) async throws -> Bool
    /// The tenant's endpoints, oldest first.
    func endpoints(tenant: String) async throws -> [StoredEndpoint]
    func endpoint(tenant: String, id: String) async throws -> StoredEndpoint?
    /// Saves what a client may change (url, events, description, status, secrets); `reenabled` also forgets
    /// the failures that disabled it. False when it no longer exists.
    func updateEndpoint(_ endpoint: StoredEndpoint, reenabled: Bool) async throws -> Bool
    /// Deletes an endpoint with its deliveries; false when there was none.
    func deleteEndpoint(tenant: String, id: String) async throws -> Bool
    /// The endpoint's most recent tries, newest first.
    func attempts(tenant: String, endpointID: String, limit: Int) async throws -> [WebhookAttempt]

    /// Fans the changes after the dispatch cursor out to the enabled endpoints that want them and moves the
    /// cursor, in one transaction. Returns how many changes it read, or nil when another process is dispatching.
    func dispatchEvents(limit: Int, nowMs: Int64) async throws -> Int?
    /// Enabled endpoints with a delivery due, most overdue first.
    func dueEndpoints(nowMs: Int64, limit: Int) async throws -> [String]
    /// Claims up to `limit` due deliveries of an endpoint for `leaseMs` (counting the try), with the endpoint;
    /// nil when it is gone or disabled. Another process claims a delivery again only after the lease.
    func claimDeliveries(endpointID: String, nowMs: Int64, leaseMs: Int64, limit: Int) async throws -> ClaimedDeliveries?
    /// Records tries and their consequences in one transaction; returns whether the endpoint, failing for
    /// `disableAfterMs`, was disabled by them.
    func recordAttempts(_ attempts: [AttemptRecord], endpointID: String, nowMs: Int64, disableAfterMs: Int64) async throws -> Bool
    /// When the oldest delivery still pending to an enabled endpoint was created (Unix ms).
    func oldestPendingDeliveryMs() async throws -> Int64?
    /// Drops finished deliveries and tries older than `cutoffMs`; returns how many rows.
    func purgeDeliveries(before cutoffMs: Int64) async throws -> Int
}

/// A page of a tenant's events.
struct EventPage: Sendable {
    var events: [LoggedChange]
    var hasMore: Bool
}

/// A webhook endpoint as stored, secrets included.
struct StoredEndpoint: Sendable, Equatable {
    var id: String
    var tenant: String
    var url: String
    var enabledEvents: [String]
    var description: String?
    var status: WebhookEndpoint.Status
    var secret: String
    /// The secret before the last rotation, still signing until `previousSecretExpiresMs`.
    var previousSecret: String?
    var previousSecretExpiresMs: Int64?
    var createdAt: String
    var createdMs: Int64

    /// As the API shows it, without secrets.
    var api: WebhookEndpoint {
        WebhookEndpoint(id: id, url: url, enabledEvents: enabledEvents, description: description, status: status, createdAt: createdAt)
    }

    /// The secrets that sign a delivery made at `nowMs`: the current one, and the previous one while it lasts.
    func signingSecrets(nowMs: Int64) -> [String] {
        if let previousSecret, let expires = previousSecretExpiresMs, nowMs < expires { return [secret, previousSecret] }
        return [secret]
    }
}

/// Deliveries claimed for one try each, with the endpoint they go to.
struct ClaimedDeliveries: Sendable {
    var endpoint: StoredEndpoint
    var deliveries: [ClaimedDelivery]
}

struct ClaimedDelivery: Sendable, Equatable {
    var id: Int64
    var eventID: String
    var eventType: String
    var body: String
    /// This try's number, 1 for the first.
    var attempt: Int
}

/// The outcome of one try.
struct AttemptRecord: Sendable, Equatable {
    var deliveryID: Int64
    var eventID: String
    var eventType: String
    var attempt: Int
    var succeeded: Bool
    var responseCode: Int?
    var latencyMs: Int
    var error: String?
    /// When to try again after a failure; nil: this was the last try (or it succeeded).
    var nextAttemptMs: Int64?
    var attemptedAt: String
    var attemptedMs: Int64

    /// `pending`, `succeeded` or `failed`: what the delivery is after this try.
    var deliveryStatus: String { succeeded ? "succeeded" : nextAttemptMs == nil ? "failed" : "pending" }
}

/// The webhook tables, the same on both backends but for the auto-incrementing keys.
enum WebhookSchema {
    /// The condition on a change's event type (a fixed string per type: no user input reaches the SQL).
    static func eventTypeFilter(_ type: EventType) -> String { " AND event_type = '\(type.rawValue)'" }

    static func statements(serial: String) -> [String] {
        [
            """
            CREATE TABLE webhook_endpoints (
                id TEXT NOT NULL PRIMARY KEY,
                tenant TEXT NOT NULL,
                url TEXT NOT NULL,
                enabled_events TEXT NOT NULL,
                description TEXT,
                status TEXT NOT NULL,
                secret TEXT NOT NULL,
                previous_secret TEXT,
                previous_secret_expires_ms BIGINT,
                created_at TEXT NOT NULL,
                created_ms BIGINT NOT NULL,
                failing_since_ms BIGINT
            )
            """,
            "CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant, created_ms)",
            """
            CREATE TABLE webhook_deliveries (
                id \(serial),
                endpoint_id TEXT NOT NULL,
                event_id TEXT NOT NULL,
                event_type TEXT NOT NULL,
                body TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_ms BIGINT NOT NULL,
                created_ms BIGINT NOT NULL,
                updated_ms BIGINT NOT NULL,
                UNIQUE (endpoint_id, event_id)
            )
            """,
            "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_ms) WHERE status = 'pending'",
            "CREATE INDEX webhook_deliveries_endpoint_due ON webhook_deliveries (endpoint_id, next_attempt_ms) WHERE status = 'pending'",
            "CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (updated_ms) WHERE status <> 'pending'",
            """
            CREATE TABLE webhook_attempts (
                id \(serial),
                delivery_id BIGINT NOT NULL,
                endpoint_id TEXT NOT NULL,
                event_id TEXT NOT NULL,
                event_type TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                status TEXT NOT NULL,
                response_code INTEGER,
                latency_ms INTEGER NOT NULL,
                error TEXT,
                delivery_status TEXT NOT NULL,
                attempted_at TEXT NOT NULL,
                attempted_ms BIGINT NOT NULL
            )
            """,
            "CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id)",
            "CREATE INDEX webhook_attempts_age ON webhook_attempts (attempted_ms)",
            // Where the dispatcher has fanned the change log out to; one row, claimed by one process at a time.
            """
            CREATE TABLE webhook_dispatch_state (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                transaction_id BIGINT NOT NULL,
                position BIGINT NOT NULL
            )
            """,
            "INSERT INTO webhook_dispatch_state (id, transaction_id, position) VALUES (1, 0, 0)",
        ]
    }
}

/// Encoding of `enabled_events` in its column: the names joined by commas (none contains one).
enum EnabledEventsColumn {
    static func encode(_ events: [String]) -> String { events.joined(separator: ",") }
    static func decode(_ text: String) -> [String] { text.split(separator: ",").map(String.init) }
}
