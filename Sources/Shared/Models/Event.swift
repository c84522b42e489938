/// The kinds of product events, as `GET /events` and webhooks name them.
package enum EventType: String, Sendable, CaseIterable, Codable {
    case productCreated = "product.created"
    case productUpdated = "product.updated"
    case productDeleted = "product.deleted"

    /// Every type's name, for error messages.
    package static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// An event's id: `evt_` and its change-log cursor as 32 hex digits, so ids sort in log order and a cursor
/// parameter given as an id resumes exactly where it was.
package enum EventID {
    package static let prefix = "evt_"

    package static func make(_ cursor: ChangeCursor) -> String {
        prefix + hex(cursor.transaction) + hex(cursor.position)
    }

    /// The cursor an event id names; nil when it is not one.
    package static func cursor(_ id: String) -> ChangeCursor? {
        guard id.hasPrefix(prefix) else { return nil }
        let digits = id.utf8.dropFirst(prefix.utf8.count)
        guard digits.count == 32, digits.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else { return nil }
        let text = String(decoding: digits, as: UTF8.self)
        guard let transaction = UInt64(text.prefix(16), radix: 16), let position = UInt64(text.suffix(16), radix: 16),
              transaction <= UInt64(Int64.max), position <= UInt64(Int64.max)
        else { return nil }
        return ChangeCursor(transaction: Int64(transaction), position: Int64(position))
    }

    private static func hex(_ value: Int64) -> String {
        let digits = String(UInt64(value), radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// `GET /events`' limit, cursor and type filter, as both services accept them in the query string.
package struct EventQuery: Sendable, Equatable {
    package enum Cursor: Sendable, Equatable {
        case startingAfter(ChangeCursor)
        case endingBefore(ChangeCursor)
    }

    package var limit = ListLimit.default
    package var cursor: Cursor?
    package var type: EventType?

    package static let parameterNames: Set<String> = ["limit", "starting_after", "ending_before", "type"]

    package init(limit: Int = ListLimit.default, cursor: Cursor? = nil, type: EventType? = nil) {
        self.limit = limit
        self.cursor = cursor
        self.type = type
    }

    /// Parses a raw query string; unknown, repeated or invalid parameters are 400s naming the parameter.
    package static func parse(query: String?) throws(APIError) -> EventQuery {
        var result = EventQuery()
        var seen = Set<String>()
        for (name, value) in try QueryString.parse(query) {
            guard parameterNames.contains(name) else { throw APIError.unknownParameter(name, in: "query") }
            guard seen.insert(name).inserted else { throw APIError.invalidParameter(name, "'\(name)' may be given only once") }
            switch name {
            case "limit":
                result.limit = try ListLimit.parse(value)
            case "type":
                guard let type = EventType(rawValue: value) else {
                    throw APIError.invalidParameter(name, "type must be one of \(EventType.names)")
                }
                result.type = type
            default:
                guard let cursor = EventID.cursor(value) else {
                    throw APIError.invalidParameter(name, "'\(name)' must be an event id (evt_ and 32 hex digits)")
                }
                guard result.cursor == nil else {
                    throw APIError.invalidParameter(name, "starting_after and ending_before cannot be used together")
                }
                result.cursor = name == "starting_after" ? .startingAfter(cursor) : .endingBefore(cursor)
            }
        }
        return result
    }

    /// The query string for this listing, with `cursor` in place of this one's.
    package func queryString(cursor: Cursor?) -> String {
        var pairs: [(name: String, value: String)] = [("limit", String(limit))]
        if let type { pairs.append(("type", type.rawValue)) }
        switch cursor {
        case .startingAfter(let after): pairs.append(("starting_after", EventID.make(after)))
        case .endingBefore(let before): pairs.append(("ending_before", EventID.make(before)))
        case nil: break
        }
        return QueryString.encode(pairs)
    }
}

/// The Database Service's answer to `GET /api/events` carries the page's bounds in these headers, so that the
/// Products Service can pass the body through and still write its `Link` field.
package enum EventPageHeaders {
    package static let hasMore = "Page-Has-More"
    package static let first = "Page-First-ID"
    package static let last = "Page-Last-ID"
}
