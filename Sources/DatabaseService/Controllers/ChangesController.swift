import Hummingbird
import Shared

/// `/api/changes`: the change log, which every Products Service replica follows to keep its cache current.
struct ChangesController<Context: RequestContext> {
    let store: any ChangeStore
    /// How often a waiting poll looks at the log again even without a wake-up (a lost notification, or a
    /// PostgreSQL transaction still running below the change).
    var recheckInterval: Duration = .milliseconds(500)

    static var maxWait: Double { 30 }

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .get(use: list)
            .get("head", use: head)
    }

    /// GET /api/changes?after=&limit=&wait=: up to `limit` changes after the cursor, oldest first, across
    /// tenants; when there are none, waits up to `wait` seconds for one. 410 `cursor_expired` when changes after
    /// the cursor were purged, `cursor_ahead` when the log does not reach the cursor: the caller must reload in full.
    @Sendable func list(_ request: Request, context: Context) async throws -> ChangeLogPage {
        var after = ChangeCursor.start
        var limit = 1000
        var wait = 0.0
        var seen = Set<String>()
        for (name, value) in try QueryString.parse(request.uri.query) {
            guard seen.insert(name).inserted else { throw APIError.invalidParameter(name, "'\(name)' may be given only once") }
            switch name {
            case "after":
                guard let cursor = ChangeCursor(value) else {
                    throw APIError.invalidParameter(name, "after must be a cursor '<transaction>.<position>' as returned in next")
                }
                after = cursor
            case "limit":
                guard let value = Int(value), (1...1000).contains(value) else { throw APIError.invalidParameter(name, "limit must be 1 to 1000") }
                limit = value
            case "wait":
                guard let value = Double(value), value.isFinite, (0...Self.maxWait).contains(value) else {
                    throw APIError.invalidParameter(name, "wait must be 0 to \(Int(Self.maxWait)) seconds")
                }
                wait = value
            default:
                throw APIError.unknownParameter(name, in: "query")
            }
        }
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(wait)
        var headChecked = false
        while true {
            let generation = store.changeSignal.generation
            switch try await store.changes(after: after, limit: limit) {
            case .expired(let purgedThrough):
                throw APIError(
                    .gone, code: "cursor_expired",
                    message: "Changes after \(after) are past the log's retention (purged through \(purgedThrough)); reload in full",
                    param: "after")
            case .page(let page):
                if page.changes.isEmpty, !headChecked, after > .start {
                    // A cursor no change in the log reaches: this database lost changes the caller had seen (a
                    // restore from an older backup, a failover to a standby that had not received them). New
                    // changes may sort below the cursor and would never be returned: the caller must reload.
                    headChecked = true
                    let head = try await store.changeHead()
                    if after > head {
                        throw APIError(
                            .gone, code: "cursor_ahead",
                            message: "Changes through \(after) are not in the log, whose newest is \(head): the database lost changes or was restored from a backup; reload in full",
                            param: "after")
                    }
                }
                let remaining = deadline - clock.now
                if !page.changes.isEmpty || remaining <= .zero { return page.bounded() }
                await store.changeSignal.wait(after: generation, timeout: min(remaining, recheckInterval))
                if Task.isCancelled { return page }
            }
        }
    }

    /// GET /api/changes/head: the cursor of the newest change; following from it misses nothing committed later.
    @Sendable func head(_ request: Request, context: Context) async throws -> ChangeHead {
        guard request.uri.query?.isEmpty ?? true else {
            throw APIError.unknownParameter(try QueryString.parse(request.uri.query).first?.0 ?? "query", in: "query")
        }
        return ChangeHead(cursor: try await store.changeHead())
    }
}
