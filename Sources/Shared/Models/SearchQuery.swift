import Foundation

/// A storefront search, `GET /products/search`: words, filters on what the model holds, facet counts and a sort.
/// Parsed and checked here; which option names exist is the shop's to say (the index checks them).
package struct SearchQuery: Sendable, Equatable {
    /// The words of `q`, folded as names are (`ProductQuery.fold`); the last one matches as a prefix.
    package var words: [String] = []
    package var types: [String]?
    package var tags: [String]?
    package var categories: [String]?
    /// `option.<Name>` filters, by option name, sorted by name.
    package var options: [(name: String, values: [String])] = []
    package var priceGTE: Int64?
    package var priceLTE: Int64?
    package var currency: String?
    package var active: Bool?
    package var createdGTE: Int64?
    package var createdGT: Int64?
    package var createdLTE: Int64?
    package var createdLT: Int64?
    package var sort: Sort = .created
    package var facets: [Facet] = []
    package var limit = 20
    package var locale: String?
    package var pageToken: PageToken?

    package init() {}

    /// The order of results; ties break by id.
    package enum Sort: String, Sendable, CaseIterable {
        case relevance, price, priceDescending = "-price", created, createdDescending = "-created", name, nameDescending = "-name"
        /// Whether keys run from high to low: relevance, and the sorts named with `-`.
        package var descending: Bool { [.relevance, .priceDescending, .createdDescending, .nameDescending].contains(self) }
    }

    /// A facet asked for.
    package enum Facet: Sendable, Equatable, Hashable {
        case type, tag, category, price
        case option(String)

        package var name: String {
            switch self {
            case .type: "type"
            case .tag: "tag"
            case .category: "category"
            case .price: "price"
            case .option(let name): "option.\(name)"
            }
        }
    }

    /// Where the previous page ended: its last result's sort key and id, and the query it was for.
    package struct PageToken: Sendable, Equatable {
        package var key: SortKey
        package var id: String
        /// `SearchQuery.fingerprint` of the query the token was made for.
        package var fingerprint: String

        package init(key: SortKey, id: String, fingerprint: String) {
            self.key = key
            self.id = id
            self.fingerprint = fingerprint
        }

        /// URL-safe base64 of the key, id and fingerprint: opaque to clients, and valid for as long as the query is.
        package var encoded: String {
            let key: String = switch self.key {
            case .number(let value): "n\(value)"
            case .text(let value): "t\(value)"
            case .missing: "m"
            }
            let text = [fingerprint, id, key].joined(separator: "\u{1}")
            return Data(text.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }

        package init?(encoded: String) {
            var base64 = encoded.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
            guard encoded.count <= 2048, let data = Data(base64Encoded: base64), let text = String(data: data, encoding: .utf8) else { return nil }
            let parts = text.split(separator: "\u{1}", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 3, let tag = parts[2].first else { return nil }
            let value = String(parts[2].dropFirst())
            switch tag {
            case "n": guard let number = Int64(value) else { return nil }; key = .number(number)
            case "t": key = .text(value)
            case "m" where value.isEmpty: key = .missing
            default: return nil
            }
            (fingerprint, id) = (parts[0], parts[1])
        }
    }

    /// A result's place in the sort: a number (price, creation time, relevance), a folded name, or no price in the
    /// currency (those come last, whichever the direction).
    package enum SortKey: Sendable, Equatable, Comparable {
        case number(Int64)
        case text(String)
        case missing
    }

    package static let maxWords = 16
    package static let maxListValues = 100
    package static let maxFacetValues = 100
    package static let maxLimit = 100
    package static let maxOptionFilters = 20

    package static let parameterNames: Set<String> = [
        "q", "type", "tag", "category", "price[gte]", "price[lte]", "currency", "active", "created[gte]", "created[gt]", "created[lte]",
        "created[lt]", "sort", "facets", "limit", "page_token", "locale",
    ]

    /// Parses a raw query string; unknown, repeated or invalid parameters are 400s naming the parameter.
    package static func parse(query: String?) throws(APIError) -> SearchQuery {
        var result = SearchQuery()
        var seen = Set<String>()
        var sortGiven = false
        var token: String?
        for (name, value) in try QueryString.parse(query) {
            guard parameterNames.contains(name) || name.hasPrefix("option.") else { throw APIError.unknownParameter(name, in: "query") }
            guard seen.insert(name).inserted else { throw APIError.invalidParameter(name, "'\(name)' may be given only once") }
            try ProductRules.checkNoNUL(value, param: name)
            switch name {
            case "q":
                guard !value.isEmpty, value.unicodeScalars.count <= ProductQuery.maxSearchLength else {
                    throw APIError.invalidParameter(name, "q must be 1 to \(ProductQuery.maxSearchLength) characters")
                }
                result.words = SearchText.words(in: value)
                guard result.words.count <= maxWords else { throw APIError.invalidParameter(name, "q may hold at most \(maxWords) words") }
            case "type": result.types = try list(value, name)
            case "tag": result.tags = try list(value, name)
            case "category":
                result.categories = try list(value, name).map { id throws(APIError) in try VariantRules.checkCategoryID(id, param: name) }
            case "price[gte]", "price[lte]":
                guard let amount = Int64(value), (0...VariantRules.maxAmount).contains(amount) else {
                    throw APIError.invalidParameter(name, "'\(name)' must be an integer from 0 to 10^13, in minor units")
                }
                if name == "price[gte]" { result.priceGTE = amount } else { result.priceLTE = amount }
            case "currency":
                guard VariantRules.currencies.contains(value) else {
                    throw APIError.invalidParameter(name, "currency must be an ISO 4217 currency code in upper case, such as EUR")
                }
                result.currency = value
            case "active": result.active = try ProductQuery.flag(value, name)
            case "created[gte]", "created[gt]", "created[lte]", "created[lt]":
                let milliseconds = try ProductQuery.time(value, name)
                switch name {
                case "created[gte]": result.createdGTE = milliseconds
                case "created[gt]": result.createdGT = milliseconds
                case "created[lte]": result.createdLTE = milliseconds
                default: result.createdLT = milliseconds
                }
            case "sort":
                guard let sort = Sort(rawValue: value) else {
                    throw APIError.invalidParameter(name, "sort must be one of \(Sort.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                (result.sort, sortGiven) = (sort, true)
            case "facets":
                var facets: [Facet] = []
                for item in value.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
                    let facet: Facet
                    switch item {
                    case "type": facet = .type
                    case "tag": facet = .tag
                    case "category": facet = .category
                    case "price": facet = .price
                    case _ where item.hasPrefix("option.") && item.count > 7:
                        let option = String(item.dropFirst(7))
                        try VariantRules.checkLabel(option, param: name)
                        facet = .option(option)
                    default: throw APIError.invalidParameter(name, "unknown facet '\(item)': facets may name type, tag, category, price and option.<Name>")
                    }
                    if !facets.contains(facet) { facets.append(facet) }
                }
                guard facets.count <= 12 else { throw APIError.invalidParameter(name, "facets may name at most 12 facets") }
                result.facets = facets
            case "limit":
                guard let limit = Int(value), (1...maxLimit).contains(limit) else {
                    throw APIError.invalidParameter(name, "limit must be an integer from 1 to \(maxLimit)")
                }
                result.limit = limit
            case "page_token": token = value
            case "locale": result.locale = try ProductQuery.locale(value, name)
            default:  // option.<Name>
                let option = String(name.dropFirst(7))
                try VariantRules.checkLabel(option, param: name)
                result.options.append((option, try list(value, name)))
            }
        }
        result.options.sort { $0.name < $1.name }
        if result.options.count > maxOptionFilters, let extra = result.options.last {
            throw APIError.invalidParameter("option.\(extra.name)", "at most \(maxOptionFilters) option filters")
        }
        if !sortGiven, !result.words.isEmpty { result.sort = .relevance }
        if result.sort == .relevance, result.words.isEmpty {
            throw APIError.invalidParameter("sort", "sort=relevance needs q")
        }
        let needsCurrency = result.priceGTE != nil || result.priceLTE != nil || result.facets.contains(.price)
            || result.sort == .price || result.sort == .priceDescending
        if needsCurrency, result.currency == nil {
            throw APIError.missingParameter("currency", "currency is required with price[gte], price[lte], facets=price and price sorts")
        }
        if let low = result.priceGTE, let high = result.priceLTE, low > high {
            throw APIError.invalidParameter("price[gte]", "price[gte] must not be above price[lte]")
        }
        if let token {
            guard let decoded = PageToken(encoded: token), decoded.fingerprint == result.fingerprint else {
                throw APIError.invalidParameter("page_token", "page_token is not one this search returned; page with the same parameters")
            }
            result.pageToken = decoded
        }
        return result
    }

    /// Names what a page token depends on: every parameter but `page_token`, `limit`, `facets` and `locale`.
    package var fingerprint: String {
        var parts = [sort.rawValue, words.joined(separator: " ")]
        parts.append((types ?? []).joined(separator: ","))
        parts.append((tags ?? []).joined(separator: ","))
        parts.append((categories ?? []).joined(separator: ","))
        parts.append(options.map { "\($0.name)=\($0.values.joined(separator: ","))" }.joined(separator: ";"))
        parts.append([priceGTE, priceLTE, createdGTE, createdGT, createdLTE, createdLT].map { $0.map(String.init) ?? "" }.joined(separator: ","))
        parts.append((currency ?? "") + (active.map { $0 ? "1" : "0" } ?? ""))
        var hasher = FNV1a()
        for part in parts { hasher.add(part); hasher.add("\u{2}") }
        return String(hasher.value, radix: 36)
    }

    /// A comma-separated list of 1 to `maxListValues` distinct values of 1 to 255 characters.
    private static func list(_ value: String, _ name: String) throws(APIError) -> [String] {
        var values: [String] = []
        for item in value.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
            guard !item.isEmpty, item.unicodeScalars.count <= 255 else {
                throw APIError.invalidParameter(name, "'\(name)' must list values of 1 to 255 characters, separated by commas")
            }
            if !values.contains(item) { values.append(item) }
        }
        guard values.count <= maxListValues else { throw APIError.invalidParameter(name, "'\(name)' may list at most \(maxListValues) values") }
        return values
    }

    package static func == (lhs: SearchQuery, rhs: SearchQuery) -> Bool {
        lhs.fingerprint == rhs.fingerprint && lhs.limit == rhs.limit && lhs.facets == rhs.facets && lhs.locale == rhs.locale
            && lhs.pageToken == rhs.pageToken
    }
}

/// How search text is cut into words: folded as names are (lower case, no accents), split at anything that is not
/// a letter or a digit.
package enum SearchText {
    /// The text folded (`ProductQuery.fold`) and cut into runs of letters and digits.
    package static func words(in text: String) -> [String] {
        var text = text
        // ASCII (nearly every SKU, tag and option value) is cut byte by byte: the same words, without the cost of
        // Unicode's character properties (a quarter of an index's build).
        if let words = text.withUTF8(asciiWords) { return words }
        return ProductQuery.fold(text).split { !($0.isLetter || $0.isNumber) }.map(String.init)
    }

    /// The words of ASCII text, lower-cased; nil for text that is not all ASCII.
    private static func asciiWords(_ bytes: UnsafeBufferPointer<UInt8>) -> [String]? {
        var words: [String] = []
        var word: [UInt8] = []
        for byte in bytes {
            guard byte < 0x80 else { return nil }
            let isUpper = byte &- UInt8(ascii: "A") < 26
            if isUpper || byte &- UInt8(ascii: "a") < 26 || byte &- UInt8(ascii: "0") < 10 {
                word.append(isUpper ? byte | 0x20 : byte)
            } else if !word.isEmpty {
                words.append(String(decoding: word, as: UTF8.self))
                word.removeAll(keepingCapacity: true)
            }
        }
        if !word.isEmpty { words.append(String(decoding: word, as: UTF8.self)) }
        return words
    }
}

/// FNV-1a, 64 bits: a stable digest (Swift's `Hasher` is seeded per process, and tokens outlive processes).
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func add(_ text: String) {
        for byte in text.utf8 {
            value ^= UInt64(byte)
            value = value &* 0x100_0000_01b3
        }
    }
}
