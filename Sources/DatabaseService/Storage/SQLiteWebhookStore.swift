import GRDB
import Shared

/// Events and webhooks on SQLite: one process owns the file and its one writer serialises every claim.
struct SQLiteWebhookStore: WebhookStore, SQLiteFeatureStore {
    let database: SQLiteStore

    func events(tenant: String, query: EventQuery) async throws -> EventPage {
        try await read { db in
            var sql = "SELECT \(Self.changeColumns) FROM product_changes WHERE tenant = ?"
            var arguments: StatementArguments = [tenant]
            var descending = false
            switch query.cursor {
            case .startingAfter(let cursor):
                sql += " AND position > ?"
                arguments += [cursor.position]
            case .endingBefore(let cursor):
                sql += " AND position < ?"
                arguments += [cursor.position]
                descending = true
            case nil: break
            }
            if let type = query.type { sql += WebhookSchema.eventTypeFilter(type) }
            sql += descending ? " ORDER BY position DESC LIMIT ?" : " ORDER BY position LIMIT ?"
            arguments += [query.limit + 1]
            var events = try GRDB.Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.change(from:))
            let hasMore = events.count > query.limit
            if hasMore { events.removeLast() }
            if descending { events.reverse() }
            return EventPage(events: events, hasMore: hasMore)
        }
    }


    func createEndpoint(_ endpoint: StoredEndpoint) async throws -> Bool {
        try await write { db in
            let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM webhook_endpoints WHERE tenant = ?", arguments: [endpoint.tenant]) ?? 0
            guard count < WebhookRules.maxEndpointsPerTenant else { return false }
            try db.execute(
                sql: """
                    INSERT INTO webhook_endpoints (id, tenant, url, enabled_events, description, status, secret, created_at, created_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    endpoint.id, endpoint.tenant, endpoint.url, EnabledEventsColumn.encode(endpoint.enabledEvents), endpoint.description,
                    endpoint.status.rawValue, endpoint.secret, endpoint.createdAt, endpoint.createdMs,
                ])
            return true
        }
    }

    func endpoints(tenant: String) async throws -> [StoredEndpoint] {
        try await read { db in
            try GRDB.Row.fetchAll(db, sql: "SELECT * FROM webhook_endpoints WHERE tenant = ? ORDER BY created_ms, id", arguments: [tenant])
                .map(Self.endpoint(from:))
        }
    }

    func endpoint(tenant: String, id: String) async throws -> StoredEndpoint? {
        try await read { db in
            try GRDB.Row.fetchOne(db, sql: "SELECT * FROM webhook_endpoints WHERE tenant = ? AND id = ?", arguments: [tenant, id])
                .map(Self.endpoint(from:))
        }
    }

    func updateEndpoint(_ endpoint: StoredEndpoint, reenabled: Bool) async throws -> Bool {
        try await write { db in
            try db.execute(
                sql: """
                    UPDATE webhook_endpoints SET url = ?, enabled_events = ?, description = ?, status = ?, secret = ?, previous_secret = ?,
                        previous_secret_expires_ms = ?, failing_since_ms = CASE WHEN ? THEN NULL ELSE failing_since_ms END
                    WHERE tenant = ? AND id = ?
                    """,
                arguments: [
                    endpoint.url, EnabledEventsColumn.encode(endpoint.enabledEvents), endpoint.description, endpoint.status.rawValue,
                    endpoint.secret, endpoint.previousSecret, endpoint.previousSecretExpiresMs, reenabled, endpoint.tenant, endpoint.id,
                ])
            return db.changesCount > 0
        }
    }

    func deleteEndpoint(tenant: String, id: String) async throws -> Bool {
        try await write { db in
            try db.execute(sql: "DELETE FROM webhook_endpoints WHERE tenant = ? AND id = ?", arguments: [tenant, id])
            guard db.changesCount > 0 else { return false }
            try db.execute(sql: "DELETE FROM webhook_deliveries WHERE endpoint_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM webhook_attempts WHERE endpoint_id = ?", arguments: [id])
            return true
        }
    }

    func attempts(tenant: String, endpointID: String, limit: Int) async throws -> [WebhookAttempt] {
        try await read { db in
            try GRDB.Row.fetchAll(
                db,
                sql: """
                    SELECT a.* FROM webhook_attempts a JOIN webhook_endpoints e ON e.id = a.endpoint_id
                    WHERE e.tenant = ? AND a.endpoint_id = ? ORDER BY a.id DESC LIMIT ?
                    """,
                arguments: [tenant, endpointID, limit]
            ).map { row in
                WebhookAttempt(
                    id: "wha_\(row["id"] as Int64)", eventID: row["event_id"], eventType: row["event_type"], attempt: row["attempt"],
                    status: row["status"], responseCode: row["response_code"], latencyMs: row["latency_ms"], error: row["error"],
                    attemptedAt: row["attempted_at"], deliveryStatus: row["delivery_status"])
            }
        }
    }

    func dispatchEvents(limit: Int, nowMs: Int64) async throws -> Int? {
        try await write { db in
            let position = try Int64.fetchOne(db, sql: "SELECT position FROM webhook_dispatch_state WHERE id = 1") ?? 0
            let endpoints = try GRDB.Row.fetchAll(
                db, sql: "SELECT id, tenant, enabled_events, created_ms FROM webhook_endpoints WHERE status = 'enabled'"
            ).map { EndpointFilter(id: $0["id"], tenant: $0["tenant"], events: EnabledEventsColumn.decode($0["enabled_events"]), createdMs: $0["created_ms"]) }
            if endpoints.isEmpty {
                // Nobody to deliver to: pass the changes by without reading them (this runs on the one writer).
                let positions = try Int64.fetchAll(
                    db, sql: "SELECT position FROM product_changes WHERE position > ? ORDER BY position LIMIT ?", arguments: [position, limit])
                guard let last = positions.last else { return 0 }
                try db.execute(sql: "UPDATE webhook_dispatch_state SET position = ? WHERE id = 1", arguments: [last])
                return positions.count
            }
            let changes = try GRDB.Row.fetchAll(
                db, sql: "SELECT \(Self.changeColumns) FROM product_changes WHERE position > ? ORDER BY position LIMIT ?",
                arguments: [position, limit]
            ).map(Self.change(from:))
            guard let last = changes.last?.cursor else { return 0 }
            let deliveries = NewDelivery.fanOut(changes, to: endpoints)
            if !deliveries.isEmpty {
                let insert = try db.cachedStatement(
                    sql: """
                        INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, body, status, next_attempt_ms, created_ms, updated_ms)
                        VALUES (?, ?, ?, ?, 'pending', ?, ?, ?) ON CONFLICT (endpoint_id, event_id) DO NOTHING
                        """)
                for delivery in deliveries {
                    try insert.execute(arguments: [delivery.endpointID, delivery.eventID, delivery.eventType, delivery.body, nowMs, nowMs, nowMs])
                }
            }
            try db.execute(sql: "UPDATE webhook_dispatch_state SET position = ? WHERE id = 1", arguments: [last.position])
            return changes.count
        }
    }

    func dueEndpoints(nowMs: Int64, limit: Int) async throws -> [String] {
        try await read { db in
            try String.fetchAll(
                db,
                sql: """
                    SELECT d.endpoint_id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.status = 'enabled'
                    WHERE d.status = 'pending' AND d.next_attempt_ms <= ?
                    GROUP BY d.endpoint_id ORDER BY MIN(d.next_attempt_ms) LIMIT ?
                    """,
                arguments: [nowMs, limit])
        }
    }

    func claimDeliveries(endpointID: String, nowMs: Int64, leaseMs: Int64, limit: Int) async throws -> ClaimedDeliveries? {
        try await write { db in
            guard let endpoint = try GRDB.Row.fetchOne(
                db, sql: "SELECT * FROM webhook_endpoints WHERE id = ? AND status = 'enabled'", arguments: [endpointID]
            ).map(Self.endpoint(from:)) else { return nil }
            let rows = try GRDB.Row.fetchAll(
                db,
                sql: """
                    SELECT id, event_id, event_type, body, attempts FROM webhook_deliveries
                    WHERE endpoint_id = ? AND status = 'pending' AND next_attempt_ms <= ? ORDER BY next_attempt_ms, id LIMIT ?
                    """,
                arguments: [endpointID, nowMs, limit])
            let claim = try db.cachedStatement(sql: "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_ms = ?, updated_ms = ? WHERE id = ?")
            var deliveries: [ClaimedDelivery] = []
            for row in rows {
                try claim.execute(arguments: [nowMs + leaseMs, nowMs, row["id"] as Int64])
                deliveries.append(ClaimedDelivery(
                    id: row["id"], eventID: row["event_id"], eventType: row["event_type"], body: row["body"], attempt: (row["attempts"] as Int) + 1))
            }
            return ClaimedDeliveries(endpoint: endpoint, deliveries: deliveries)
        }
    }

    func recordAttempts(_ attempts: [AttemptRecord], endpointID: String, nowMs: Int64, disableAfterMs: Int64) async throws -> Bool {
        try await write { db in
            let insert = try db.cachedStatement(
                sql: """
                    INSERT INTO webhook_attempts (delivery_id, endpoint_id, event_id, event_type, attempt, status, response_code, latency_ms,
                        error, delivery_status, attempted_at, attempted_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """)
            let update = try db.cachedStatement(
                sql: "UPDATE webhook_deliveries SET status = ?, next_attempt_ms = ?, updated_ms = ? WHERE id = ? AND status = 'pending'")
            for attempt in attempts {
                try insert.execute(arguments: [
                    attempt.deliveryID, endpointID, attempt.eventID, attempt.eventType, attempt.attempt, attempt.succeeded ? "succeeded" : "failed",
                    attempt.responseCode, attempt.latencyMs, attempt.error, attempt.deliveryStatus, attempt.attemptedAt, attempt.attemptedMs,
                ])
                try update.execute(arguments: [attempt.deliveryStatus, attempt.nextAttemptMs ?? nowMs, nowMs, attempt.deliveryID])
            }
            if attempts.contains(where: \.succeeded) {
                try db.execute(sql: "UPDATE webhook_endpoints SET failing_since_ms = NULL WHERE id = ?", arguments: [endpointID])
                return false
            }
            guard !attempts.isEmpty else { return false }
            let firstFailure = attempts.map(\.attemptedMs).min() ?? nowMs
            try db.execute(
                sql: "UPDATE webhook_endpoints SET failing_since_ms = COALESCE(failing_since_ms, ?) WHERE id = ?", arguments: [firstFailure, endpointID])
            try db.execute(
                sql: "UPDATE webhook_endpoints SET status = 'disabled' WHERE id = ? AND status = 'enabled' AND failing_since_ms <= ?",
                arguments: [endpointID, nowMs - disableAfterMs])
            return db.changesCount > 0
        }
    }

    func oldestPendingDeliveryMs() async throws -> Int64? {
        try await read { db in
            try Int64.fetchOne(
                db,
                sql: """
                    SELECT MIN(d.created_ms) FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.status = 'enabled'
                    WHERE d.status = 'pending'
                    """)
        }
    }

    func purgeDeliveries(before cutoffMs: Int64) async throws -> Int {
        try await write { db in
            try db.execute(sql: "DELETE FROM webhook_deliveries WHERE status <> 'pending' AND updated_ms < ?", arguments: [cutoffMs])
            var purged = db.changesCount
            try db.execute(sql: "DELETE FROM webhook_attempts WHERE attempted_ms < ?", arguments: [cutoffMs])
            purged += db.changesCount
            return purged
        }
    }

    private static func endpoint(from row: GRDB.Row) -> StoredEndpoint {
        StoredEndpoint(
            id: row["id"], tenant: row["tenant"], url: row["url"], enabledEvents: EnabledEventsColumn.decode(row["enabled_events"]),
            description: row["description"], status: WebhookEndpoint.Status(rawValue: row["status"]) ?? .disabled, secret: row["secret"],
            previousSecret: row["previous_secret"], previousSecretExpiresMs: row["previous_secret_expires_ms"], createdAt: row["created_at"],
            createdMs: row["created_ms"])
    }
}

/// A delivery the fan-out makes: one event for one endpoint.
struct NewDelivery: Sendable {
    var endpointID: String
    var eventID: String
    var eventType: String
    var body: String

    /// One delivery per change and endpoint that wants it, in log order; each event's JSON is written once.
    static func fanOut(_ changes: [LoggedChange], to endpoints: [EndpointFilter]) -> [NewDelivery] {
        guard !endpoints.isEmpty else { return [] }
        var deliveries: [NewDelivery] = []
        for change in changes {
            let targets = endpoints.filter { $0.wants(change) }
            guard !targets.isEmpty else { continue }
            let (body, eventID) = (change.eventJSON, EventID.make(change.cursor ?? .start))
            for endpoint in targets {
                deliveries.append(NewDelivery(endpointID: endpoint.id, eventID: eventID, eventType: change.eventType.rawValue, body: body))
            }
        }
        return deliveries
    }
}

/// What the dispatcher needs of an endpoint to decide whether a change goes to it.
struct EndpointFilter: Sendable {
    var id: String
    var tenant: String
    var events: [String]
    var createdMs: Int64

    /// The endpoint's tenant's change, of a type it wants, recorded after it was created.
    func wants(_ change: LoggedChange) -> Bool {
        change.tenant == tenant && (change.recordedMs ?? .max) >= createdMs && WebhookEndpoint.wants(events, change.eventType)
    }
}
