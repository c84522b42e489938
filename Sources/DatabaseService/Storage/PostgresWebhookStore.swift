import PostgresNIO
import Shared

/// Events and webhooks on PostgreSQL: several processes may serve one database, so the dispatcher's cursor and
/// each delivery's try are claimed with `FOR UPDATE SKIP LOCKED`, and a claimed try is leased until it is recorded.
struct PostgresWebhookStore: WebhookStore, PostgresFeatureStore {
    let database: PostgresStore

    func events(tenant: String, query: EventQuery) async throws -> EventPage {
        var sql = "SELECT \(Self.changeColumns) FROM product_changes WHERE tenant = $1 AND transaction_id < \(Self.horizon)"
        var binds = PostgresBindings()
        binds.append(tenant)
        var descending = false
        switch query.cursor {
        case .startingAfter(let cursor):
            binds.append(cursor.transaction)
            binds.append(cursor.position)
            sql += " AND (transaction_id, position) > ($2, $3)"
        case .endingBefore(let cursor):
            binds.append(cursor.transaction)
            binds.append(cursor.position)
            sql += " AND (transaction_id, position) < ($2, $3)"
            descending = true
        case nil: break
        }
        if let type = query.type { sql += WebhookSchema.eventTypeFilter(type) }
        sql += descending ? " ORDER BY transaction_id DESC, position DESC" : " ORDER BY transaction_id, position"
        sql += " LIMIT \(query.limit + 1)"
        var events = try await Self.changes(try await self.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger))
        let hasMore = events.count > query.limit
        if hasMore { events.removeLast() }
        if descending { events.reverse() }
        return EventPage(events: events, hasMore: hasMore)
    }

    func createEndpoint(_ endpoint: StoredEndpoint) async throws -> Bool {
        try await transaction(logger: logger) { connection in
            // One creation per tenant at a time across processes, so the count holds.
            try await connection.query("SELECT pg_advisory_xact_lock(7206114, hashtext(\(endpoint.tenant)))", logger: self.logger)
            var count: Int64 = 0
            for try await value in try await connection.query(
                "SELECT COUNT(*) FROM webhook_endpoints WHERE tenant = \(endpoint.tenant)", logger: self.logger
            ).decode(Int64.self) { count = value }
            guard count < WebhookRules.maxEndpointsPerTenant else { return false }
            try await connection.query(
                """
                INSERT INTO webhook_endpoints (id, tenant, url, enabled_events, description, status, secret, created_at, created_ms)
                VALUES (\(endpoint.id), \(endpoint.tenant), \(endpoint.url), \(EnabledEventsColumn.encode(endpoint.enabledEvents)),
                        \(endpoint.description), \(endpoint.status.rawValue), \(endpoint.secret), \(endpoint.createdAt), \(endpoint.createdMs))
                """, logger: self.logger)
            return true
        }
    }

    private static let endpointColumns = """
        id, tenant, url, enabled_events, description, status, secret, previous_secret, previous_secret_expires_ms, created_at, created_ms
        """

    func endpoints(tenant: String) async throws -> [StoredEndpoint] {
        try await Self.endpoints(try await query(
            PostgresQuery(
                unsafeSQL: "SELECT \(Self.endpointColumns) FROM webhook_endpoints WHERE tenant = $1 ORDER BY created_ms, id",
                binds: { var binds = PostgresBindings(); binds.append(tenant); return binds }()),
            logger: logger))
    }

    func endpoint(tenant: String, id: String) async throws -> StoredEndpoint? {
        try await Self.endpoints(try await query(
            PostgresQuery(
                unsafeSQL: "SELECT \(Self.endpointColumns) FROM webhook_endpoints WHERE tenant = $1 AND id = $2",
                binds: { var binds = PostgresBindings(); binds.append(tenant); binds.append(id); return binds }()),
            logger: logger)).first
    }

    func updateEndpoint(_ endpoint: StoredEndpoint, reenabled: Bool) async throws -> Bool {
        let rows = try await query(
            """
            UPDATE webhook_endpoints SET url = \(endpoint.url), enabled_events = \(EnabledEventsColumn.encode(endpoint.enabledEvents)),
                description = \(endpoint.description), status = \(endpoint.status.rawValue), secret = \(endpoint.secret),
                previous_secret = \(endpoint.previousSecret), previous_secret_expires_ms = \(endpoint.previousSecretExpiresMs),
                failing_since_ms = CASE WHEN \(reenabled) THEN NULL ELSE failing_since_ms END
            WHERE tenant = \(endpoint.tenant) AND id = \(endpoint.id) RETURNING id
            """, logger: logger)
        for try await _ in rows.decode(String.self) { return true }
        return false
    }

    func deleteEndpoint(tenant: String, id: String) async throws -> Bool {
        try await transaction(logger: logger) { connection in
            var deleted = false
            for try await _ in try await connection.query(
                "DELETE FROM webhook_endpoints WHERE tenant = \(tenant) AND id = \(id) RETURNING id", logger: self.logger
            ).decode(String.self) { deleted = true }
            guard deleted else { return false }
            try await connection.query("DELETE FROM webhook_deliveries WHERE endpoint_id = \(id)", logger: self.logger)
            try await connection.query("DELETE FROM webhook_attempts WHERE endpoint_id = \(id)", logger: self.logger)
            return true
        }
    }

    func attempts(tenant: String, endpointID: String, limit: Int) async throws -> [WebhookAttempt] {
        let rows = try await query(
            """
            SELECT a.id, a.event_id, a.event_type, a.attempt, a.status, a.response_code, a.latency_ms, a.error, a.attempted_at, a.delivery_status
            FROM webhook_attempts a JOIN webhook_endpoints e ON e.id = a.endpoint_id
            WHERE e.tenant = \(tenant) AND a.endpoint_id = \(endpointID) ORDER BY a.id DESC LIMIT \(limit)
            """, logger: logger)
        var attempts: [WebhookAttempt] = []
        for try await (id, eventID, eventType, attempt, status, code, latency, error, attemptedAt, deliveryStatus) in rows.decode(
            (Int64, String, String, Int, String, Int?, Int, String?, String, String).self)
        {
            attempts.append(WebhookAttempt(
                id: "wha_\(id)", eventID: eventID, eventType: eventType, attempt: attempt, status: status, responseCode: code,
                latencyMs: latency, error: error, attemptedAt: attemptedAt, deliveryStatus: deliveryStatus))
        }
        return attempts
    }

    func dispatchEvents(limit: Int, nowMs: Int64) async throws -> Int? {
        try await retryingConflicts {
            try await self.transaction(logger: self.logger) { connection -> Int? in
                var cursor: ChangeCursor?
                for try await (transaction, position) in try await connection.query(
                    "SELECT transaction_id, position FROM webhook_dispatch_state WHERE id = 1 FOR UPDATE SKIP LOCKED", logger: self.logger
                ).decode((Int64, Int64).self) { cursor = ChangeCursor(transaction: transaction, position: position) }
                guard let cursor else { return nil }
                let changes = try await Self.changes(
                    try await connection.query(Self.settledChanges(after: cursor, limit: limit), logger: self.logger))
                guard let last = changes.last?.cursor else { return 0 }
                var endpoints: [EndpointFilter] = []
                for try await (id, tenant, events, createdMs) in try await connection.query(
                    "SELECT id, tenant, enabled_events, created_ms FROM webhook_endpoints WHERE status = 'enabled'", logger: self.logger
                ).decode((String, String, String, Int64).self) {
                    endpoints.append(EndpointFilter(id: id, tenant: tenant, events: EnabledEventsColumn.decode(events), createdMs: createdMs))
                }
                let deliveries = NewDelivery.fanOut(changes, to: endpoints)
                if !deliveries.isEmpty {
                    let (endpointIDs, eventIDs) = (deliveries.map(\.endpointID), deliveries.map(\.eventID))
                    let (types, bodies) = (deliveries.map(\.eventType), deliveries.map(\.body))
                    try await connection.query(
                        """
                        INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, body, status, next_attempt_ms, created_ms, updated_ms)
                        SELECT e, v, t, b, 'pending', \(nowMs), \(nowMs), \(nowMs)
                        FROM UNNEST(\(endpointIDs)::text[], \(eventIDs)::text[], \(types)::text[], \(bodies)::text[]) AS d(e, v, t, b)
                        ON CONFLICT (endpoint_id, event_id) DO NOTHING
                        """, logger: self.logger)
                }
                try await connection.query(
                    "UPDATE webhook_dispatch_state SET transaction_id = \(last.transaction), position = \(last.position) WHERE id = 1",
                    logger: self.logger)
                return changes.count
            }
        }
    }

    func dueEndpoints(nowMs: Int64, limit: Int) async throws -> [String] {
        let rows = try await query(
            """
            SELECT d.endpoint_id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.status = 'enabled'
            WHERE d.status = 'pending' AND d.next_attempt_ms <= \(nowMs)
            GROUP BY d.endpoint_id ORDER BY MIN(d.next_attempt_ms) LIMIT \(limit)
            """, logger: logger)
        var ids: [String] = []
        for try await id in rows.decode(String.self) { ids.append(id) }
        return ids
    }

    func claimDeliveries(endpointID: String, nowMs: Int64, leaseMs: Int64, limit: Int) async throws -> ClaimedDeliveries? {
        try await transaction(logger: logger) { connection -> ClaimedDeliveries? in
            guard let endpoint = try await Self.endpoints(try await connection.query(
                PostgresQuery(
                    unsafeSQL: "SELECT \(Self.endpointColumns) FROM webhook_endpoints WHERE id = $1 AND status = 'enabled'",
                    binds: { var binds = PostgresBindings(); binds.append(endpointID); return binds }()),
                logger: self.logger)).first
            else { return nil }
            let rows = try await connection.query(
                """
                UPDATE webhook_deliveries d SET attempts = d.attempts + 1, next_attempt_ms = \(nowMs + leaseMs), updated_ms = \(nowMs)
                FROM (
                    SELECT id FROM webhook_deliveries
                    WHERE endpoint_id = \(endpointID) AND status = 'pending' AND next_attempt_ms <= \(nowMs)
                    ORDER BY next_attempt_ms, id LIMIT \(limit) FOR UPDATE SKIP LOCKED
                ) due
                WHERE d.id = due.id
                RETURNING d.id, d.event_id, d.event_type, d.body, d.attempts
                """, logger: self.logger)
            var deliveries: [ClaimedDelivery] = []
            for try await (id, eventID, eventType, body, attempts) in rows.decode((Int64, String, String, String, Int).self) {
                deliveries.append(ClaimedDelivery(id: id, eventID: eventID, eventType: eventType, body: body, attempt: attempts))
            }
            deliveries.sort { $0.id < $1.id }
            return ClaimedDeliveries(endpoint: endpoint, deliveries: deliveries)
        }
    }

    func recordAttempts(_ attempts: [AttemptRecord], endpointID: String, nowMs: Int64, disableAfterMs: Int64) async throws -> Bool {
        try await retryingConflicts {
            try await self.transaction(logger: self.logger) { connection -> Bool in
                for attempt in attempts {
                    try await connection.query(
                        """
                        INSERT INTO webhook_attempts (delivery_id, endpoint_id, event_id, event_type, attempt, status, response_code, latency_ms,
                            error, delivery_status, attempted_at, attempted_ms)
                        VALUES (\(attempt.deliveryID), \(endpointID), \(attempt.eventID), \(attempt.eventType), \(attempt.attempt),
                                \(attempt.succeeded ? "succeeded" : "failed"), \(attempt.responseCode), \(attempt.latencyMs), \(attempt.error),
                                \(attempt.deliveryStatus), \(attempt.attemptedAt), \(attempt.attemptedMs))
                        """, logger: self.logger)
                    try await connection.query(
                        """
                        UPDATE webhook_deliveries SET status = \(attempt.deliveryStatus), next_attempt_ms = \(attempt.nextAttemptMs ?? nowMs),
                            updated_ms = \(nowMs)
                        WHERE id = \(attempt.deliveryID) AND status = 'pending'
                        """, logger: self.logger)
                }
                if attempts.contains(where: \.succeeded) {
                    try await connection.query("UPDATE webhook_endpoints SET failing_since_ms = NULL WHERE id = \(endpointID)", logger: self.logger)
                    return false
                }
                guard let firstFailure = attempts.map(\.attemptedMs).min() else { return false }
                var state: (status: String, failingSince: Int64?)?
                for try await row in try await connection.query(
                    "SELECT status, failing_since_ms FROM webhook_endpoints WHERE id = \(endpointID) FOR UPDATE", logger: self.logger
                ).decode((String, Int64?).self) { state = row }
                guard let state else { return false }
                let failingSince = state.failingSince ?? firstFailure
                let disable = state.status == "enabled" && failingSince <= nowMs - disableAfterMs
                try await connection.query(
                    """
                    UPDATE webhook_endpoints SET failing_since_ms = \(failingSince), status = \(disable ? "disabled" : state.status)
                    WHERE id = \(endpointID)
                    """, logger: self.logger)
                return disable
            }
        }
    }

    func oldestPendingDeliveryMs() async throws -> Int64? {
        let rows = try await query(
            """
            SELECT MIN(d.created_ms) FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.status = 'enabled'
            WHERE d.status = 'pending'
            """, logger: logger)
        for try await oldest in rows.decode(Int64?.self) { return oldest }
        return nil
    }

    func purgeDeliveries(before cutoffMs: Int64) async throws -> Int {
        var purged = 0
        for sql: PostgresQuery in [
            "WITH gone AS (DELETE FROM webhook_deliveries WHERE status <> 'pending' AND updated_ms < \(cutoffMs) RETURNING 1) SELECT count(*) FROM gone",
            "WITH gone AS (DELETE FROM webhook_attempts WHERE attempted_ms < \(cutoffMs) RETURNING 1) SELECT count(*) FROM gone",
        ] {
            for try await count in try await query(sql, logger: logger).decode(Int64.self) { purged += Int(count) }
        }
        return purged
    }

    private static func endpoints(_ rows: some AsyncSequence<PostgresRow, any Error>) async throws -> [StoredEndpoint] {
        var endpoints: [StoredEndpoint] = []
        for try await (id, tenant, url, events, description, status, secret, previousSecret, previousExpires, createdAt, createdMs) in rows.decode(
            (String, String, String, String, String?, String, String, String?, Int64?, String, Int64).self)
        {
            endpoints.append(StoredEndpoint(
                id: id, tenant: tenant, url: url, enabledEvents: EnabledEventsColumn.decode(events), description: description,
                status: WebhookEndpoint.Status(rawValue: status) ?? .disabled, secret: secret, previousSecret: previousSecret,
                previousSecretExpiresMs: previousExpires, createdAt: createdAt, createdMs: createdMs))
        }
        return endpoints
    }
}
