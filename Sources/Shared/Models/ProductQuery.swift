import Foundation

/// A product listing's cursor, filters and limit, as both services accept them in the query string.
package struct ProductQuery: Sendable, Equatable {
    /// Where a page starts: after a product (forwards) or before one (backwards); both page in id order.
    package enum Cursor: Sendable, Equatable {
        case startingAfter(String)
        case endingBefore(String)
    }

    package var limit = ListLimit.default
    package var cursor: Cursor?
    package var type: String?
    /// Only the product with this handle.
    package var handle: String?
    /// Only products with a variant holding one of these SKUs (at most `maxIDs`), sorted and without duplicates.
    package var skus: [String]?
    /// Only products in this category or one of its descendants.
    package var category: String?
    /// `category` and its descendants' ids, sorted, as the Products Service found them before listing its cache
    /// (the Database Service walks the tree itself); not a parameter.
    package var categorySubtree: [String]?
    /// The locale reads are shown in (`Product.localized(to:)`); not a filter.
    package var locale: String?
    /// Only active (true) or inactive (false) products.
    package var active: Bool?
    /// Only these ids (at most `maxIDs`), sorted and without duplicates.
    package var ids: [String]?
    /// Bounds on `created_at`, in milliseconds since the Unix epoch.
    package var createdGTE: Int64?
    package var createdGT: Int64?
    package var createdLTE: Int64?
    package var createdLT: Int64?
    /// A case-insensitive substring of the name, as given.
    package var search: String? {
        didSet { foldedSearch = search.map(Self.fold) }
    }
    package private(set) var foldedSearch: String?
    /// Filters on list fields, in `Product.fields`' order: each keeps products having any of its values.
    package var anyOf: [AnyOf] = []

    /// A filter on a list field (one with an `anyOfFilter` parameter in `Product.fields`).
    package struct AnyOf: Sendable, Equatable {
        /// The field's index in `Product.fields`.
        package var field: Int
        package var values: [String]

        package init(field: Int, values: [String]) {
            self.field = field
            self.values = values
        }

        /// The field's query parameter.
        package var parameter: String { Product.fields[field].anyOfFilter! }
    }

    package static let maxIDs = 100
    package static let maxSearchLength = 250
    package static let parameterNames: Set<String> = Set([
        "limit", "starting_after", "ending_before", "type", "handle", "sku", "category", "locale", "active", "ids", "created[gte]", "created[gt]", "created[lte]",
        "created[lt]", "q",
    ]).union(anyOfParameters.keys)
    /// The list fields' filter parameters, with each field's index in `Product.fields`.
    static let anyOfParameters: [String: Int] = Dictionary(
        uniqueKeysWithValues: Product.fields.indices.compactMap { index in Product.fields[index].anyOfFilter.map { ($0, index) } })

    package init(limit: Int = ListLimit.default, cursor: Cursor? = nil) {
        self.limit = limit
        self.cursor = cursor
    }

    /// The folding `q` and names are compared under: lower case without accents ("Crème" and "CREME" are
    /// "creme"). ASCII text only needs lower-casing, which `name(_:containsFolded:)` does byte by byte.
    package static func fold(_ text: String) -> String {
        let lowered = text.lowercased()
        if lowered.utf8.allSatisfy({ $0 < 0x80 }) { return lowered }
        return lowered.folding(options: .diacriticInsensitive, locale: nil)
    }

    /// Whether any filter may leave a product out (`ids` only chooses which products are walked).
    package var hasFilters: Bool {
        type != nil || handle != nil || skus != nil || category != nil || active != nil || createdGTE != nil || createdGT != nil || createdLTE != nil || createdLT != nil || foldedSearch != nil
            || !anyOf.isEmpty
    }

    /// Whether an id lies on the paging side of the cursor (every id does without one).
    package func admitsByCursor(_ id: String) -> Bool {
        switch cursor {
        case nil: true
        case .startingAfter(let cursor): id > cursor
        case .endingBefore(let cursor): id < cursor
        }
    }

    /// The `created[...]` bounds as one inclusive range of epoch milliseconds; nil without any, or when no time
    /// is within them (then nothing matches, which a walk finds out).
    package var createdBounds: ClosedRange<Int64>? {
        guard createdGTE != nil || createdGT != nil || createdLTE != nil || createdLT != nil else { return nil }
        var lower = createdGTE ?? .min
        if let createdGT { lower = max(lower, createdGT == .max ? .max : createdGT + 1) }
        var upper = createdLTE ?? .max
        if let createdLT { upper = min(upper, createdLT == .min ? .min : createdLT - 1) }
        return lower <= upper ? lower...upper : nil
    }

    /// Whether a product passes the filters; `createdAt` is its `created_at` in epoch milliseconds.
    package func matches(_ product: Product, createdAt: Int64?) -> Bool {
        matches(
            id: product.id, type: product.type, handle: { product.handle }, skus: { product.skus.map(\.sku) },
            categories: { product.categoryIDs }, active: product.active, createdAt: createdAt,
            hasAny: { filter in Product.fields[filter.field].has(anyOf: filter.values, in: product) }
        ) { needle in Self.name(product.name, containsFolded: needle) }
    }

    /// Whether a product with these fields passes the filters; `handle` reads its handle, `hasAny` checks a list
    /// field's filter, and `nameContains` its name against the folded `q`; they are called only when the filters
    /// before them pass.
    package func matches(
        id: String, type: String, handle: () -> String, skus: () -> [String], categories: () -> [String], active: Bool,
        createdAt: Int64?, hasAny: (AnyOf) -> Bool, nameContains: (_ foldedNeedle: String) -> Bool
    ) -> Bool {
        if let wanted = self.type, wanted != type { return false }
        if let wanted = self.active, wanted != active { return false }
        if let ids, ids.binarySearch(id) == nil { return false }
        if createdGTE != nil || createdGT != nil || createdLTE != nil || createdLT != nil {
            guard let createdAt else { return false }
            if let createdGTE, createdAt < createdGTE { return false }
            if let createdGT, createdAt <= createdGT { return false }
            if let createdLTE, createdAt > createdLTE { return false }
            if let createdLT, createdAt >= createdLT { return false }
        }
        if let wanted = self.handle, wanted != handle() { return false }
        if let wanted = self.skus, !skus().contains(where: { wanted.binarySearch($0) != nil }) { return false }
        if category != nil, !categories().contains(where: { categorySubtree?.binarySearch($0) != nil }) { return false }
        for filter in anyOf where !hasAny(filter) { return false }
        if let foldedSearch, !nameContains(foldedSearch) { return false }
        return true
    }

    /// Whether `name`, case-folded, contains `needle` (already folded). ASCII names and needles, the common
    /// case, are compared byte by byte without folding a copy of the name: a search walks every product.
    package static func name(_ name: String, containsFolded needle: String) -> Bool {
        let fast: Bool? = name.utf8.withContiguousStorageIfAvailable { haystack in asciiName(haystack, containsFolded: needle) } ?? nil
        return fast ?? fold(name).contains(needle)
    }

    /// `name(_:containsFolded:)` on a name's UTF-8; nil when either is not ASCII (the caller folds the name then).
    package static func asciiName(_ haystack: UnsafeBufferPointer<UInt8>, containsFolded needle: String) -> Bool? {
        needle.utf8.withContiguousStorageIfAvailable { needle -> Bool? in
            guard needle.allSatisfy({ $0 < 0x80 }), haystack.allSatisfy({ $0 < 0x80 }) else { return nil }
            return asciiContains(haystack, folding: needle)
        } ?? nil
    }

    private static func asciiContains(_ haystack: UnsafeBufferPointer<UInt8>, folding needle: UnsafeBufferPointer<UInt8>) -> Bool {
        guard !needle.isEmpty else { return true }
        guard haystack.count >= needle.count else { return false }
        @inline(__always) func lower(_ byte: UInt8) -> UInt8 { byte &- 0x41 < 26 ? byte | 0x20 : byte }
        let first = needle[0]
        for start in 0...(haystack.count - needle.count) where lower(haystack[start]) == first {
            var offset = 1
            while offset < needle.count, lower(haystack[start + offset]) == needle[offset] { offset += 1 }
            if offset == needle.count { return true }
        }
        return false
    }

    // MARK: Query strings

    /// Parses a raw query string; unknown, repeated or invalid parameters are 400s naming the parameter.
    package static func parse(query: String?) throws(APIError) -> ProductQuery {
        var result = ProductQuery()
        var seen = Set<String>()
        for (name, value) in try QueryString.parse(query) {
            guard parameterNames.contains(name) else { throw APIError.unknownParameter(name, in: "query") }
            guard seen.insert(name).inserted else { throw APIError.invalidParameter(name, "'\(name)' may be given only once") }
            // No stored string can hold U+0000, and PostgreSQL refuses it even as a parameter.
            try ProductRules.checkNoNUL(value, param: name)
            switch name {
            case "limit":
                result.limit = try ListLimit.parse(value)
            case "starting_after", "ending_before":
                let id = try productID(value, name)
                guard result.cursor == nil else {
                    throw APIError.invalidParameter(name, "starting_after and ending_before cannot be used together")
                }
                result.cursor = name == "starting_after" ? .startingAfter(id) : .endingBefore(id)
            case "type":
                guard !value.isEmpty, value.unicodeScalars.count <= ProductRules.maxTypeLength else {
                    throw APIError.invalidParameter(name, "type must be 1 to \(ProductRules.maxTypeLength) characters")
                }
                result.type = value
            case "handle":
                result.handle = try VariantRules.checkHandle(value, param: name)
            case "sku":
                let skus = try value.split(separator: ",", omittingEmptySubsequences: false).map { sku throws(APIError) in
                    try VariantRules.checkSKU(String(sku), param: name)
                    return String(sku)
                }
                guard skus.count <= maxIDs else { throw APIError.invalidParameter(name, "sku may list at most \(maxIDs) SKUs") }
                result.skus = Array(Set(skus)).sorted()
            case "category":
                result.category = try VariantRules.checkCategoryID(value, param: name)
            case "locale":
                result.locale = try locale(value, name)
            case "active":
                result.active = try flag(value, name)
            case "ids":
                let ids = try value.split(separator: ",", omittingEmptySubsequences: false).map { id throws(APIError) in
                    try productID(String(id), name)
                }
                guard ids.count <= maxIDs else { throw APIError.invalidParameter(name, "ids may list at most \(maxIDs) ids") }
                result.ids = Array(Set(ids)).sorted()
            case _ where anyOfParameters[name] != nil:
                let field = anyOfParameters[name]!
                guard case .texts(_, let element, let maxCount, _) = Product.fields[field].kind else { continue }
                var values: [String] = []
                for text in value.split(separator: ",", omittingEmptySubsequences: false) {
                    let checked = try element(String(text), name)
                    if !values.contains(checked) { values.append(checked) }
                }
                guard values.count <= maxCount else { throw APIError.invalidParameter(name, "'\(name)' may list at most \(maxCount) values") }
                result.anyOf.append(AnyOf(field: field, values: values))
                result.anyOf.sort { $0.field < $1.field }
            case "q":
                guard !value.isEmpty, value.unicodeScalars.count <= maxSearchLength else {
                    throw APIError.invalidParameter(name, "q must be 1 to \(maxSearchLength) characters")
                }
                result.search = value
            default:  // created[...]
                let milliseconds = try time(value, name)
                switch name {
                case "created[gte]": result.createdGTE = milliseconds
                case "created[gt]": result.createdGT = milliseconds
                case "created[lte]": result.createdLTE = milliseconds
                default: result.createdLT = milliseconds
                }
            }
        }
        return result
    }

    /// The query string for this listing (filters and limit), with `cursor` in place of this one's.
    package func queryString(cursor: Cursor?) -> String {
        var pairs: [(name: String, value: String)] = [("limit", String(limit))]
        if let type { pairs.append(("type", type)) }
        if let handle { pairs.append(("handle", handle)) }
        if let skus { pairs.append(("sku", skus.joined(separator: ","))) }
        if let category { pairs.append(("category", category)) }
        if let locale { pairs.append(("locale", locale)) }
        if let active { pairs.append(("active", active ? "true" : "false")) }
        if let ids { pairs.append(("ids", ids.joined(separator: ","))) }
        for (name, bound) in [("created[gte]", createdGTE), ("created[gt]", createdGT), ("created[lte]", createdLTE), ("created[lt]", createdLT)] {
            if let bound { pairs.append((name, Timestamp.format(epochMilliseconds: bound))) }
        }
        if let search { pairs.append(("q", search)) }
        for filter in anyOf { pairs.append((filter.parameter, filter.values.joined(separator: ","))) }
        switch cursor {
        case .startingAfter(let id): pairs.append(("starting_after", id))
        case .endingBefore(let id): pairs.append(("ending_before", id))
        case nil: break
        }
        return QueryString.encode(pairs)
    }

    private static func productID(_ value: String, _ name: String) throws(APIError) -> String {
        guard !value.isEmpty, value.unicodeScalars.count <= ProductRules.maxIDLength else {
            throw APIError.invalidParameter(name, "'\(name)' must hold product ids of 1 to \(ProductRules.maxIDLength) characters")
        }
        return value
    }

    /// A BCP 47 locale, in canonical case.
    package static func locale(_ value: String, _ name: String) throws(APIError) -> String {
        guard let locale = LanguageTag.canonical(value) else {
            throw APIError.invalidParameter(name, "locale must be a BCP 47 language tag, such as fr or fr-FR")
        }
        return locale
    }

    /// `true` or `false`.
    package static func flag(_ value: String, _ name: String) throws(APIError) -> Bool {
        switch value {
        case "true": return true
        case "false": return false
        default: throw APIError.invalidParameter(name, "\(name) must be true or false")
        }
    }

    /// An RFC 3339 timestamp or whole Unix seconds, as epoch milliseconds.
    package static func time(_ value: String, _ name: String) throws(APIError) -> Int64 {
        if let milliseconds = Timestamp.epochMilliseconds(value) { return milliseconds }
        if !value.isEmpty, value.count <= 12, value.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let seconds = Int64(value) {
            return seconds * 1000
        }
        throw APIError.invalidParameter(name, "'\(name)' must be an RFC 3339 timestamp or Unix seconds")
    }
}

extension Array where Element == String {
    /// The index of the first element not less than `value` in this sorted array.
    package func insertionIndex(of value: String) -> Int {
        var low = 0
        var high = count
        while low < high {
            let mid = (low + high) / 2
            if self[mid] < value { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// The index of `value` in this sorted array, if present.
    package func binarySearch(_ value: String) -> Int? {
        let index = insertionIndex(of: value)
        return index < count && self[index] == value ? index : nil
    }
}
