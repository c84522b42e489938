import NIOCore

/// One of a product's options, `{"name": "Color", "values": ["Red", "Blue"]}`: its variants each pick one value.
package struct ProductOption: Sendable, Equatable, Codable {
    package var name: String
    package var values: [String]

    package init(name: String, values: [String]) {
        self.name = name
        self.values = values
    }
}

/// A price in one currency, in its minor units.
package struct Price: Sendable, Equatable, Codable {
    /// An ISO 4217 code, upper case.
    package var currency: String
    package var amount: Int64

    package init(currency: String, amount: Int64) {
        self.currency = currency
        self.amount = amount
    }
}

/// A sellable version of a product: one value of each option, an optional SKU, prices.
package struct Variant: Sendable, Equatable, Codable {
    /// `var_…`, given by the service, stable across updates.
    package var id: String
    /// Unique among a shop's live variants.
    package var sku: String?
    /// Each product option's name, with the value this variant has.
    package var options: [String: String]
    package var prices: [Price]
    package var position: Int64
    package var metadata: [String: String]

    package init(
        id: String, sku: String? = nil, options: [String: String] = [:], prices: [Price] = [], position: Int64 = 1,
        metadata: [String: String] = [:]
    ) {
        self.id = id
        self.sku = sku
        self.options = options
        self.prices = prices
        self.position = position
        self.metadata = metadata
    }

    /// The members a variant's JSON may hold.
    package static let memberNames: Set<String> = ["id", "sku", "options", "prices", "position", "metadata"]

    /// A variant read from JSON, its types checked; a client's may leave out its `id` (empty then) and `position` (0).
    package init(json: JSONValue, param: String) throws(APIError) {
        let members = try json.members(param, allowed: Self.memberNames)
        let id = try members["id"]?.text(param + "[id]") ?? ""
        var sku: String?
        if let given = members["sku"], given != .null { sku = try given.text(param + "[sku]") }
        var prices: [Price] = []
        for (index, price) in try (members["prices"] ?? .array([])).elements(param + "[prices]").enumerated() {
            let priceParam = "\(param)[prices][\(index)]"
            let fields = try price.members(priceParam, allowed: ["currency", "amount"])
            guard let currency = fields["currency"] else { throw .missingParameter(priceParam + "[currency]", "'\(priceParam)[currency]' is required") }
            guard let amount = fields["amount"] else { throw .missingParameter(priceParam + "[amount]", "'\(priceParam)[amount]' is required") }
            prices.append(Price(currency: try currency.text(priceParam + "[currency]"), amount: try amount.integer(priceParam + "[amount]")))
        }
        self.init(
            id: id, sku: sku, options: try (members["options"] ?? .object([:])).texts(param + "[options]"), prices: prices,
            position: try members["position"]?.integer(param + "[position]") ?? 0,
            metadata: try (members["metadata"] ?? .object([:])).texts(param + "[metadata]"))
    }

    /// A variant read at the parser, its types checked as `init(json:param:)` checks them.
    init(parsing parser: inout JSONParser, param: () -> String) throws(JSONSyntaxError) {
        self.init(id: "", position: 0)
        var variant = self
        try parser.members(param(), known: Self.memberNames.contains) { parser, key throws(JSONSyntaxError) in
            switch key {
            case "id": variant.id = try parser.string(param: param() + "[id]")
            case "sku": variant.sku = try parser.optionalString(param: param() + "[sku]")
            case "options": variant.options = try parser.stringObject(param: param() + "[options]")
            case "position": variant.position = try parser.integer(param: param() + "[position]")
            case "metadata": variant.metadata = try parser.stringObject(param: param() + "[metadata]")
            default:
                guard parser.current == UInt8(ascii: "[") else { throw try parser.mismatch(param() + "[prices]", "an array") }
                try parser.elements { parser throws(JSONSyntaxError) in
                    let index = variant.prices.count
                    func priceParam() -> String { "\(param())[prices][\(index)]" }
                    var currency: String?, amount: Int64?
                    try parser.members(priceParam(), known: { $0 == "currency" || $0 == "amount" }) { parser, key throws(JSONSyntaxError) in
                        if key == "currency" {
                            currency = try parser.string(param: priceParam() + "[currency]")
                        } else {
                            amount = try parser.integer(param: priceParam() + "[amount]")
                        }
                    }
                    variant.prices.append(
                        Price(currency: try JSONSyntaxError.required(currency, priceParam() + "[currency]"), amount: try JSONSyntaxError.required(amount, priceParam() + "[amount]")))
                }
            }
        }
        self = variant
    }

    /// Checks the variant's own rules (not those against the product's options: `Product.checkStructure`).
    package func validate(param: String) throws(APIError) {
        // A client's variant may leave its id out, given later (`Product.assignVariantIDs`); a stored one has it.
        if !id.isEmpty { try VariantRules.checkID(id, param: param + "[id]") }
        if let sku { try VariantRules.checkSKU(sku, param: param + "[sku]") }
        guard prices.count <= VariantRules.maxPrices else {
            throw .invalidParameter(param + "[prices]", "'\(param)[prices]' may hold at most \(VariantRules.maxPrices) prices")
        }
        var currencies = Set<String>()
        for (index, price) in prices.enumerated() {
            let priceParam = "\(param)[prices][\(index)]"
            guard VariantRules.currencies.contains(price.currency) else {
                throw .invalidParameter(priceParam + "[currency]", "'\(priceParam)[currency]' must be an ISO 4217 currency code in upper case, such as EUR")
            }
            guard (0...VariantRules.maxAmount).contains(price.amount) else {
                throw .invalidParameter(priceParam + "[amount]", "'\(priceParam)[amount]' must be an integer from 0 to 10^13, in minor units")
            }
            guard currencies.insert(price.currency).inserted else {
                throw .invalidParameter(priceParam + "[currency]", "'\(param)[prices]' may hold one price per currency; \(price.currency) is repeated")
            }
        }
        guard position >= 0 else { throw .invalidParameter(param + "[position]", "'\(param)[position]' must be at least 1") }
        guard metadata.count <= ProductRules.maxMetadataKeys else {
            throw .invalidParameter(param + "[metadata]", "'\(param)[metadata]' may hold at most \(ProductRules.maxMetadataKeys) keys")
        }
        for (key, value) in metadata { try ProductRules.validateMetadataEntry(key, value, param: param + "[metadata]") }
    }

    package func writeJSON(into buffer: inout ByteBuffer) {
        buffer.writeJSONString(id, after: "{\"id\":")
        if let sku { buffer.writeJSONString(sku, after: ",\"sku\":") } else { buffer.writeStaticString(",\"sku\":null") }
        buffer.writeStaticString(",\"options\":")
        JSONWriter.writeObject(options, into: &buffer)
        buffer.writeJSONArray(prices, opening: ",\"prices\":[", closing: "]") { price, buffer in
            buffer.writeJSONString(price.currency, after: "{\"currency\":")
            buffer.writeStaticString(",\"amount\":")
            JSONWriter.writeInteger(price.amount, into: &buffer)
            buffer.writeInteger(UInt8(ascii: "}"))
        }
        buffer.writeStaticString(",\"position\":")
        JSONWriter.writeInteger(position, into: &buffer)
        buffer.writeStaticString(",\"metadata\":")
        JSONWriter.writeObject(metadata, into: &buffer)
        buffer.writeInteger(UInt8(ascii: "}"))
    }

    /// The variant's JSON in a buffer of its own.
    package var json: ByteBuffer {
        var buffer = ByteBuffer()
        writeJSON(into: &buffer)
        return buffer
    }

    var textBytes: (bytes: Int, strings: Int) {
        let options = self.options.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count }
        let metadata = self.metadata.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count }
        return (id.utf8.count + (sku?.utf8.count ?? 4) + options + metadata + 60 + prices.count * 40,
                2 + 2 * self.options.count + 2 * self.metadata.count + prices.count)
    }

    /// The option values, in the product's option order: what makes the variant unique within its product.
    package func combination(_ options: [ProductOption]) -> [String] { options.map { self.options[$0.name] ?? "" } }
}

/// A product's options, in display order.
package struct ProductOptions: StructuredValue {
    package var list: [ProductOption]

    package init(_ list: [ProductOption]) { self.list = list }

    package static let empty = ProductOptions([])
    package static let jsonType = "array"

    package init(json: JSONValue, param: String) throws(APIError) {
        var list: [ProductOption] = []
        for (index, option) in try json.elements(param).enumerated() {
            let optionParam = "\(param)[\(index)]"
            let members = try option.members(optionParam, allowed: ["name", "values"])
            guard let name = members["name"] else { throw .missingParameter(optionParam + "[name]", "'\(optionParam)[name]' is required") }
            guard let values = members["values"] else { throw .missingParameter(optionParam + "[values]", "'\(optionParam)[values]' is required") }
            list.append(ProductOption(name: try name.text(optionParam + "[name]"), values: try values.textList(optionParam + "[values]")))
        }
        self.init(list)
    }

    package init(parsing parser: inout JSONParser, param: @autoclosure () -> String) throws(JSONSyntaxError) {
        guard parser.current == UInt8(ascii: "[") else { throw try parser.mismatch(param(), "an array") }
        var list: [ProductOption] = []
        try parser.elements { parser throws(JSONSyntaxError) in
            let index = list.count
            func optionParam() -> String { "\(param())[\(index)]" }
            var name: String?, values: [String]?
            try parser.members(optionParam(), known: { $0 == "name" || $0 == "values" }) { parser, key throws(JSONSyntaxError) in
                if key == "name" {
                    name = try parser.string(param: optionParam() + "[name]")
                } else {
                    values = try parser.stringArray(param: optionParam() + "[values]")
                }
            }
            list.append(ProductOption(name: try JSONSyntaxError.required(name, optionParam() + "[name]"), values: try JSONSyntaxError.required(values, optionParam() + "[values]")))
        }
        self.init(list)
    }

    package func validate(param: String) throws(APIError) {
        guard list.count <= VariantRules.maxOptions else {
            throw .invalidParameter(param, "'\(param)' may hold at most \(VariantRules.maxOptions) options")
        }
        var names = Set<String>()
        for (index, option) in list.enumerated() {
            let optionParam = "\(param)[\(index)]"
            try VariantRules.checkLabel(option.name, param: optionParam + "[name]")
            guard names.insert(option.name.lowercased()).inserted else {
                throw .invalidParameter(optionParam + "[name]", "Option names must be unique, ignoring case; '\(option.name)' is repeated")
            }
            guard (1...VariantRules.maxOptionValues).contains(option.values.count) else {
                throw .invalidParameter(optionParam + "[values]", "'\(optionParam)[values]' must hold 1 to \(VariantRules.maxOptionValues) values")
            }
            var values = Set<String>()
            for (valueIndex, value) in option.values.enumerated() {
                try VariantRules.checkLabel(value, param: "\(optionParam)[values][\(valueIndex)]")
                guard values.insert(value).inserted else {
                    throw .invalidParameter("\(optionParam)[values][\(valueIndex)]", "The values of option '\(option.name)' must be unique; '\(value)' is repeated")
                }
            }
        }
    }

    package func writeJSON(into buffer: inout ByteBuffer) {
        buffer.writeJSONArray(list, opening: "[", closing: "]") { option, buffer in
            buffer.writeJSONString(option.name, after: "{\"name\":")
            buffer.writeStaticString(",\"values\":")
            JSONWriter.writeArray(option.values, into: &buffer)
            buffer.writeInteger(UInt8(ascii: "}"))
        }
    }

    package var textBytes: (bytes: Int, strings: Int) {
        list.reduce((0, 0)) { total, option in
            (total.0 + option.name.utf8.count + option.values.reduce(0) { $0 + $1.utf8.count } + 24, total.1 + 1 + option.values.count)
        }
    }

    package init(from decoder: any Decoder) throws { list = try [ProductOption](from: decoder) }
    package func encode(to encoder: any Encoder) throws { try list.encode(to: encoder) }
}

/// A product's variants, in position order.
package struct Variants: StructuredValue {
    package var list: [Variant]

    package init(_ list: [Variant]) { self.list = list }

    package static let empty = Variants([])
    package static let jsonType = "array"

    package init(json: JSONValue, param: String) throws(APIError) {
        var list: [Variant] = []
        let elements = try json.elements(param)
        guard elements.count <= VariantRules.maxVariants else {
            throw .invalidParameter(param, "'\(param)' may hold at most \(VariantRules.maxVariants) variants")
        }
        list.reserveCapacity(elements.count)
        for (index, variant) in elements.enumerated() {
            list.append(try Variant(json: variant, param: "\(param)[\(index)]"))
        }
        self.init(list)
    }

    package init(parsing parser: inout JSONParser, param: @autoclosure () -> String) throws(JSONSyntaxError) {
        guard parser.current == UInt8(ascii: "[") else { throw try parser.mismatch(param(), "an array") }
        var list: [Variant] = []
        try parser.elements { parser throws(JSONSyntaxError) in
            guard list.count < VariantRules.maxVariants else {
                let named = param()
                throw JSONSyntaxError(description: "'\(named)' may hold at most \(VariantRules.maxVariants) variants", fault: .invalid(param: named))
            }
            list.append(try Variant(parsing: &parser, param: { "\(param())[\(list.count)]" }))
        }
        self.init(list)
    }

    /// The SKUs of the variants array at the parser, with the variant holding each, reading nothing else; the value
    /// must be well formed, as a cached product's is.
    package static func skus(parsing parser: inout JSONParser) throws(JSONSyntaxError) -> [(sku: String, variantID: String)] {
        var skus: [(sku: String, variantID: String)] = []
        try parser.elements { parser throws(JSONSyntaxError) in
            var id = "", sku: String?
            try parser.members { parser, key throws(JSONSyntaxError) in
                switch key {
                case "id": id = try parser.stringValue()
                case "sku": sku = try parser.optionalString(param: "sku")
                default: _ = try parser.skipValue()
                }
            }
            if let sku { skus.append((sku, id)) }
        }
        return skus
    }

    package func validate(param: String) throws(APIError) {
        guard list.count <= VariantRules.maxVariants else {
            throw .invalidParameter(param, "'\(param)' may hold at most \(VariantRules.maxVariants) variants")
        }
        for (index, variant) in list.enumerated() { try variant.validate(param: "\(param)[\(index)]") }
    }

    package func writeJSON(into buffer: inout ByteBuffer) {
        buffer.writeJSONArray(list, opening: "[", closing: "]") { variant, buffer in variant.writeJSON(into: &buffer) }
    }

    package var textBytes: (bytes: Int, strings: Int) {
        list.reduce((0, 0)) { total, variant in
            let counted = variant.textBytes
            return (total.0 + counted.bytes, total.1 + counted.strings)
        }
    }

    /// The SKUs, with the variant holding each.
    package var skus: [(sku: String, variantID: String)] { list.compactMap { variant in variant.sku.map { ($0, variant.id) } } }

    package init(from decoder: any Decoder) throws { list = try [Variant](from: decoder) }
    package func encode(to encoder: any Encoder) throws { try list.encode(to: encoder) }
}

extension Variant {
    enum CodingKeys: String, CodingKey { case id, sku, options, prices, position, metadata }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            id: try container.decode(String.self, forKey: .id), sku: try container.decodeIfPresent(String.self, forKey: .sku),
            options: try container.decode([String: String].self, forKey: .options), prices: try container.decode([Price].self, forKey: .prices),
            position: try container.decode(Int64.self, forKey: .position), metadata: try container.decode([String: String].self, forKey: .metadata))
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(sku, forKey: .sku)
        try container.encode(options, forKey: .options)
        try container.encode(prices, forKey: .prices)
        try container.encode(position, forKey: .position)
        try container.encode(metadata, forKey: .metadata)
    }
}
