import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Shared

/// `/api/events`: a tenant's product events, oldest first, read from the change log.
struct EventsController<Context: RequestContext> {
    let store: any WebhookStore

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self).get(use: list)
    }

    /// GET /api/events: a bare JSON array of events; the page's bounds in `Page-Has-More`, `Page-First-ID`, `Page-Last-ID`.
    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        let query = try EventQuery.parse(query: request.uri.query)
        let page = try await store.events(tenant: try request.tenant(), query: query)
        var body = ByteBuffer()
        body.reserveCapacity(2 + page.events.reduce(0) { $0 + 160 + ($1.productJSON?.utf8.count ?? 0) })
        body.writeInteger(UInt8(ascii: "["))
        for (index, event) in page.events.enumerated() {
            if index > 0 { body.writeInteger(UInt8(ascii: ",")) }
            event.writeEvent(into: &body)
        }
        body.writeInteger(UInt8(ascii: "]"))
        var headers = HTTPFields()
        headers[HTTPField.Name(EventPageHeaders.hasMore)!] = page.hasMore ? "true" : "false"
        if let first = page.events.first?.cursor, let last = page.events.last?.cursor {
            headers[HTTPField.Name(EventPageHeaders.first)!] = EventID.make(first)
            headers[HTTPField.Name(EventPageHeaders.last)!] = EventID.make(last)
        }
        return .json(buffer: body, headers: headers)
    }
}

/// `/api/webhook_endpoints`: a tenant's webhook endpoints and their deliveries.
struct WebhooksController<Context: RequestContext> {
    let store: any WebhookStore
    /// Whether endpoints may target loopback, private and link-local addresses (tests, local development).
    let allowPrivateTargets: Bool

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .post(use: create)
            .get(use: list)
            .get("{id}", use: show)
            .patch("{id}", use: update)
            .delete("{id}", use: delete)
            .post("{id}/rotate_secret", use: rotateSecret)
            .get("{id}/deliveries", use: deliveries)
    }

    /// How long a rotated-out secret keeps signing beside the new one.
    static var rotationOverlapMs: Int64 { 24 * 3600 * 1000 }

    /// POST /api/webhook_endpoints: creates an endpoint (201); its `secret` is in this answer only.
    @Sendable func create(_ request: Request, context: Context) async throws -> Response {
        let tenant = try request.tenant()
        let fields = try WebhookRules.fields(try await request.parseJSON(), allowed: WebhookRules.createFields)
        guard let urlValue = fields["url"] else { throw APIError.missingParameter("url", "'url' is required") }
        guard let eventsValue = fields["enabled_events"] else {
            throw APIError.missingParameter("enabled_events", "'enabled_events' is required: event types, or [\"*\"] for all")
        }
        let url = try await checkedURL(urlValue)
        let now = Timestamp.nowMilliseconds()
        let endpoint = StoredEndpoint(
            id: Self.newID(), tenant: tenant, url: url, enabledEvents: try WebhookRules.validEvents(eventsValue),
            description: try fields["description"].flatMap { value throws(APIError) in try WebhookRules.validDescription(value) },
            status: .enabled, secret: WebhookSignature.generateSecret(), createdAt: Timestamp.format(epochMilliseconds: now), createdMs: now)
        guard try await store.createEndpoint(endpoint) else {
            throw APIError(
                .badRequest, code: "webhook_endpoint_limit",
                message: "A tenant may have at most \(WebhookRules.maxEndpointsPerTenant) webhook endpoints; delete one first")
        }
        var shown = endpoint.api
        shown.secret = endpoint.secret
        return .json(shown, status: .created)
    }

    /// GET /api/webhook_endpoints: the tenant's endpoints (at most 16), oldest first, without secrets.
    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        try Self.refuseQuery(request)
        return .json(try await store.endpoints(tenant: try request.tenant()).map(\.api))
    }

    /// GET /api/webhook_endpoints/{id}: one endpoint, without its secret.
    @Sendable func show(_ request: Request, context: Context) async throws -> Response {
        try Self.refuseQuery(request)
        return .json(try await stored(request, context).api)
    }

    /// PATCH /api/webhook_endpoints/{id}: changes url, enabled_events, description or status.
    @Sendable func update(_ request: Request, context: Context) async throws -> Response {
        var endpoint = try await stored(request, context)
        let fields = try WebhookRules.fields(try await request.parseJSON(), allowed: WebhookRules.updateFields)
        if let value = fields["url"] { endpoint.url = try await checkedURL(value) }
        if let value = fields["enabled_events"] { endpoint.enabledEvents = try WebhookRules.validEvents(value) }
        if let value = fields["description"] { endpoint.description = try WebhookRules.validDescription(value) }
        var reenabled = false
        if let value = fields["status"] {
            guard case .string(let text) = value, let status = WebhookEndpoint.Status(rawValue: text) else {
                throw APIError.invalidParameter("status", "'status' must be \"enabled\" or \"disabled\"")
            }
            reenabled = status == .enabled && endpoint.status == .disabled
            endpoint.status = status
        }
        guard try await store.updateEndpoint(endpoint, reenabled: reenabled) else { throw Self.missing(endpoint.id) }
        return .json(endpoint.api)
    }

    /// DELETE /api/webhook_endpoints/{id}: deletes the endpoint and its pending deliveries.
    @Sendable func delete(_ request: Request, context: Context) async throws -> Response {
        let id = try context.parameters.require("id")
        guard try await store.deleteEndpoint(tenant: try request.tenant(), id: id) else { throw Self.missing(id) }
        return .json(DeletedEndpoint(id: id))
    }

    /// POST /api/webhook_endpoints/{id}/rotate_secret: a new secret (in this answer only); the old one keeps
    /// signing beside it for 24 hours.
    @Sendable func rotateSecret(_ request: Request, context: Context) async throws -> Response {
        var endpoint = try await stored(request, context)
        let body = try await request.collectJSONBody()
        if body.readableBytes > 0 { _ = try WebhookRules.fields(try JSONBody.parse(body), allowed: []) }
        endpoint.previousSecret = endpoint.secret
        endpoint.previousSecretExpiresMs = Timestamp.nowMilliseconds() + Self.rotationOverlapMs
        endpoint.secret = WebhookSignature.generateSecret()
        guard try await store.updateEndpoint(endpoint, reenabled: false) else { throw Self.missing(endpoint.id) }
        var shown = endpoint.api
        shown.secret = endpoint.secret
        return .json(shown)
    }

    /// GET /api/webhook_endpoints/{id}/deliveries?limit=: the endpoint's most recent tries, newest first.
    @Sendable func deliveries(_ request: Request, context: Context) async throws -> Response {
        var limit = ListLimit.default
        var seen = Set<String>()
        for (name, value) in try QueryString.parse(request.uri.query) {
            guard name == "limit" else { throw APIError.unknownParameter(name, in: "query") }
            guard seen.insert(name).inserted else { throw APIError.invalidParameter(name, "'\(name)' may be given only once") }
            limit = try ListLimit.parse(value)
        }
        let endpoint = try await stored(request, context)
        return .json(try await store.attempts(tenant: endpoint.tenant, endpointID: endpoint.id, limit: limit))
    }

    // MARK: Helpers

    private func stored(_ request: Request, _ context: Context) async throws -> StoredEndpoint {
        let id = try context.parameters.require("id")
        guard id.utf8.count <= 64, let endpoint = try await store.endpoint(tenant: try request.tenant(), id: id) else { throw Self.missing(id) }
        return endpoint
    }

    /// A valid URL whose host is not internal (unless allowed); a name that does not resolve yet is accepted,
    /// since every delivery checks again.
    private func checkedURL(_ value: JSONValue) async throws -> String {
        let url = try WebhookRules.validURL(value)
        guard !allowPrivateTargets else { return url }
        if case .failure(let refusal) = await WebhookTarget.check(url: url) {
            throw APIError(
                .badRequest, code: "url_not_allowed",
                message: "'url' must reach a public address: \(refusal) (WEBHOOK_ALLOW_PRIVATE=1 allows it in development)", param: "url")
        }
        return url
    }

    private static func refuseQuery(_ request: Request) throws {
        if let name = try QueryString.parse(request.uri.query).first?.name { throw APIError.unknownParameter(name, in: "query") }
    }

    static func missing(_ id: String) -> APIError { .notFound("No such webhook endpoint: \(id)", param: "id") }

    /// `we_` and 24 random letters and digits.
    static func newID() -> String {
        let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
        var generator = SystemRandomNumberGenerator()
        return WebhookEndpoint.idPrefix + String((0..<24).map { _ in alphabet.randomElement(using: &generator)! })
    }
}

/// The body of a successful `DELETE /webhook_endpoints/{id}`.
struct DeletedEndpoint: Encodable {
    var id: String
    var deleted = true
}
