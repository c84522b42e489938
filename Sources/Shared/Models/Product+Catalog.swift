/// What a product's variants, options and translations must agree on, and the service's part in them: variant
/// ids, positions, handles, and the localized view.
extension Product {
    /// Checks the rules across fields: every variant names each option once with one of its values, in a
    /// combination no other variant has; ids and SKUs are unique within the product; translations name options
    /// and values the product has.
    package func checkStructure() throws(APIError) {
        if options.isEmpty, variants.count > 1 {
            throw .invalidParameter("variants", "A product without options has at most one variant; add options to tell its variants apart")
        }
        var ids = Set<String>(minimumCapacity: variants.count)
        var skus = Set<String>()
        var combinations = Set<[String]>(minimumCapacity: variants.count)
        let values = options.map { Set($0.values) }
        for (index, variant) in variants.enumerated() {
            // Built only for a fault: at 10,000 variants, building it for each cost a tenth of the check.
            var param: String { "variants[\(index)]" }
            guard !variant.id.isEmpty else { throw .missingParameter(param + "[id]", "'\(param)[id]' is required") }
            guard variant.position >= 1 else {
                throw .invalidParameter(param + "[position]", "'\(param)[position]' must be at least 1 in a stored product")
            }
            guard ids.insert(variant.id).inserted else {
                throw .invalidParameter(param + "[id]", "Variant ids must be unique within the product; \(variant.id) is repeated")
            }
            if let sku = variant.sku, !skus.insert(sku).inserted {
                throw .invalidParameter(param + "[sku]", "SKU '\(sku)' is given to two variants of this product")
            }
            // An option the product lacks is named before a missing or unknown value; with every option given
            // once and nothing more, there is none to look for.
            func unknownOption() throws(APIError) {
                if let unknown = variant.options.keys.filter({ name in !options.contains { $0.name == name } }).min() {
                    throw .invalidParameter("\(param)[options][\(unknown)]", "'\(unknown)' is not an option of this product")
                }
            }
            for (option, allowed) in zip(options, values) {
                guard let value = variant.options[option.name] else {
                    try unknownOption()
                    throw .missingParameter("\(param)[options][\(option.name)]", "Each variant must give a value of option '\(option.name)'")
                }
                guard allowed.contains(value) else {
                    try unknownOption()
                    throw .invalidParameter("\(param)[options][\(option.name)]", "'\(value)' is not a value of option '\(option.name)'")
                }
            }
            if variant.options.count != options.count { try unknownOption() }
            guard combinations.insert(variant.combination(options)).inserted else {
                throw .invalidParameter(param + "[options]", "Another variant has the same options; each combination may be sold once")
            }
        }
        for (locale, translation) in translations {
            for (name, translated) in translation.options {
                let param = "translations[\(locale)][options][\(name)]"
                guard let option = options.first(where: { $0.name == name }) else {
                    throw .invalidParameter(param, "'\(name)' is not an option of this product")
                }
                if let value = translated.values.keys.filter({ !option.values.contains($0) }).min() {
                    throw .invalidParameter("\(param)[values][\(value)]", "'\(value)' is not a value of option '\(name)'")
                }
            }
        }
    }

    /// Checks the rules as `checkStructure()` does, for a product made from `previous` (which passed them). When
    /// only a few variants changed in place (a price, a SKU, at 10,000 variants), only those are checked against
    /// the others, without hashing every variant again; any doubt, or a fault, runs the whole check, which names it.
    package func checkStructure(after previous: Product?) throws(APIError) {
        if let previous, let changed = variantsChangedInPlace(since: previous), keepsStructure(changing: changed) { return }
        try checkStructure()
    }

    /// The places of the variants that differ from `previous`'s, when options and translations are the same and
    /// at most 16 variants changed without moving; nil otherwise. Variants a write did not touch share their
    /// storage with `previous`'s, which makes each comparison a few pointer checks.
    private func variantsChangedInPlace(since previous: Product) -> [Int]? {
        guard variants.count == previous.variants.count, options == previous.options, translations == previous.translations else { return nil }
        var changed: [Int] = []
        for index in variants.indices where variants[index] != previous.variants[index] {
            changed.append(index)
            if changed.count > 16 { return nil }
        }
        return changed
    }

    /// Whether the variants at `changed` keep the rules, the others having kept them before.
    private func keepsStructure(changing changed: [Int]) -> Bool {
        for index in changed {
            let variant = variants[index]
            guard !variant.id.isEmpty, variant.position >= 1, variant.options.count == options.count else { return false }
            for option in options {
                guard let value = variant.options[option.name], option.values.contains(value) else { return false }
            }
            // Every variant names exactly the product's options: the same combination is the same dictionary.
            for other in variants.indices where other != index {
                let neighbour = variants[other]
                if neighbour.id == variant.id || (variant.sku != nil && neighbour.sku == variant.sku) || neighbour.options == variant.options {
                    return false
                }
            }
        }
        return true
    }

    /// Whether every SKU of the product was one of `previous`'s too (so a write claims none): at once when each
    /// variant keeps its place and SKU.
    package func keepsSKUs(of previous: Product?) -> Bool {
        guard let previous else { return !variants.contains { $0.sku != nil } }
        if variants.count == previous.variants.count, zip(variants, previous.variants).allSatisfy({ $0.sku == $1.sku }) { return true }
        let held = Set(previous.variants.lazy.compactMap(\.sku))
        return variants.allSatisfy { $0.sku.map(held.contains) ?? true }
    }

    /// Gives ids to the variants that have none, keeping the id of the variant of `previous` with the same options
    /// (so a client resending variants without ids keeps them stable), and numbers positions 1, 2, … in the order
    /// the positions given (or, without one, the places in the list) say.
    package mutating func assignVariantIDs(previous: [Variant], newID: () -> String) {
        if variants.contains(where: \.id.isEmpty) {
            var previousIDs: [[String]: String] = [:]
            for variant in previous { previousIDs[variant.combination(options)] = variant.id }
            let given = Set(variants.lazy.map(\.id))
            for index in variants.indices where variants[index].id.isEmpty {
                if let kept = previousIDs[variants[index].combination(options)], !given.contains(kept) {
                    variants[index].id = kept
                } else {
                    variants[index].id = newID()
                }
            }
        }
        let order = variants.indices.sorted { a, b in
            let (left, right) = (variants[a].position == 0 ? Int64(a + 1) : variants[a].position, variants[b].position == 0 ? Int64(b + 1) : variants[b].position)
            return left == right ? a < b : left < right
        }
        if order != Array(variants.indices) { variants = order.map { variants[$0] } }
        for index in variants.indices { variants[index].position = Int64(index + 1) }
    }

    /// The SKUs, with the variant holding each.
    package var skus: [(sku: String, variantID: String)] { Variants(variants).skus }

    // MARK: Locales

    /// The product as a reader of `locale` sees it: its name, description and option labels from the locale's
    /// translation, else from its language's (`fr` for `fr-FR`), else its own, field by field.
    package func localized(to locale: String) -> Product {
        let chain = Translations(translations).chain(for: locale)
        guard !chain.isEmpty else { return self }
        var product = self
        if let name = chain.lazy.compactMap(\.name).first { product.name = name }
        if let description = chain.lazy.compactMap(\.description).first { product.description = description }
        var renamed: [String: String] = [:]
        var relabelled: [String: [String: String]] = [:]
        for index in product.options.indices {
            let option = options[index]
            let translated = chain.compactMap { $0.options[option.name] }
            guard !translated.isEmpty else { continue }
            let name = translated.lazy.compactMap(\.name).first ?? option.name
            var labels: [String: String] = [:]
            for value in option.values { labels[value] = translated.lazy.compactMap { $0.values[value] }.first ?? value }
            product.options[index] = ProductOption(name: name, values: option.values.map { labels[$0]! })
            renamed[option.name] = name
            relabelled[option.name] = labels
        }
        if !renamed.isEmpty {
            for index in product.variants.indices {
                var localized: [String: String] = [:]
                for (option, value) in variants[index].options {
                    localized[renamed[option] ?? option] = relabelled[option]?[value] ?? value
                }
                product.variants[index].options = localized
            }
        }
        return product
    }
}

extension APIError {
    /// A SKU held by another live variant of the shop.
    package static func skuTaken(_ sku: String, productID: String, variantID: String, param: String) -> APIError {
        APIError(
            .conflict, code: "sku_taken",
            message: "SKU '\(sku)' is already held by variant \(variantID) of product \(productID)", param: param)
    }

    /// A handle held by another live product of the shop.
    package static func handleTaken(_ handle: String, productID: String) -> APIError {
        APIError(.conflict, code: "handle_taken", message: "Handle '\(handle)' is already held by product \(productID)", param: "handle")
    }
}
