import NIOCore

/// A product's texts in one locale; what is left out falls back (`fr-FR` → `fr` → the product's own).
package struct Translation: Sendable, Equatable, Codable {
    package var name: String?
    package var description: String?
    /// By the product's option name: the option's translated name and values.
    package var options: [String: OptionTranslation]

    package init(name: String? = nil, description: String? = nil, options: [String: OptionTranslation] = [:]) {
        self.name = name
        self.description = description
        self.options = options
    }

    enum CodingKeys: String, CodingKey { case name, description, options }

    /// As its JSON holds it: what is not translated is left out.
    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            name: try container.decodeIfPresent(String.self, forKey: .name),
            description: try container.decodeIfPresent(String.self, forKey: .description),
            options: try container.decodeIfPresent([String: OptionTranslation].self, forKey: .options) ?? [:])
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(name, forKey: .name)
        try container.encodeIfPresent(description, forKey: .description)
        if !options.isEmpty { try container.encode(options, forKey: .options) }
    }
}

/// An option's name and values in one locale.
package struct OptionTranslation: Sendable, Equatable, Codable {
    package var name: String?
    /// By the option's own value.
    package var values: [String: String]

    package init(name: String? = nil, values: [String: String] = [:]) {
        self.name = name
        self.values = values
    }

    enum CodingKeys: String, CodingKey { case name, values }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            name: try container.decodeIfPresent(String.self, forKey: .name),
            values: try container.decodeIfPresent([String: String].self, forKey: .values) ?? [:])
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(name, forKey: .name)
        try container.encode(values, forKey: .values)
    }
}

/// A product's translations by BCP 47 locale, in canonical case (`fr-FR`, `zh-Hant-TW`).
package struct Translations: StructuredValue {
    package var locales: [String: Translation]

    package init(_ locales: [String: Translation]) { self.locales = locales }

    package static let empty = Translations([:])
    package static let jsonType = "object"
    package static let maxLocales = 100

    package init(json: JSONValue, param: String) throws(APIError) {
        var locales: [String: Translation] = [:]
        for (locale, value) in try json.members(param) {
            let localeParam = "\(param)[\(locale)]"
            let members = try value.members(localeParam, allowed: ["name", "description", "options"])
            var options: [String: OptionTranslation] = [:]
            for (option, translated) in try (members["options"] ?? .object([:])).members(localeParam + "[options]") {
                let optionParam = "\(localeParam)[options][\(option)]"
                let fields = try translated.members(optionParam, allowed: ["name", "values"])
                options[option] = OptionTranslation(
                    name: try JSONValue.optionalText(fields["name"], optionParam + "[name]"),
                    values: try (fields["values"] ?? .object([:])).texts(optionParam + "[values]"))
            }
            let canonical = LanguageTag.canonical(locale) ?? locale
            guard locales[canonical] == nil else {
                throw .invalidParameter(localeParam, "'\(localeParam)' names the same locale as another key, \(canonical)")
            }
            locales[canonical] = Translation(
                name: try JSONValue.optionalText(members["name"], localeParam + "[name]"),
                description: try JSONValue.optionalText(members["description"], localeParam + "[description]"),
                options: options)
        }
        self.init(locales)
    }

    package func validate(param: String) throws(APIError) {
        guard locales.count <= Self.maxLocales else {
            throw .invalidParameter(param, "'\(param)' may hold at most \(Self.maxLocales) locales")
        }
        for (locale, translation) in locales {
            let localeParam = "\(param)[\(locale)]"
            guard LanguageTag.canonical(locale) == locale else {
                throw .invalidParameter(localeParam, "'\(locale)' must be a BCP 47 language tag, such as fr or fr-FR")
            }
            if let name = translation.name { _ = try ProductRules.validName(name, param: localeParam + "[name]") }
            if let description = translation.description {
                _ = try ProductRules.validDescription(description, param: localeParam + "[description]")
            }
            for (option, translated) in translation.options {
                let optionParam = "\(localeParam)[options][\(option)]"
                if let name = translated.name { try VariantRules.checkLabel(name, param: optionParam + "[name]") }
                for (value, text) in translated.values { try VariantRules.checkLabel(text, param: "\(optionParam)[values][\(value)]") }
            }
        }
    }

    package func writeJSON(into buffer: inout ByteBuffer) {
        buffer.writeJSONArray(locales.keys.sorted(), opening: "{", closing: "}") { locale, buffer in
            let translation = locales[locale]!
            JSONWriter.writeString(locale, into: &buffer)
            buffer.writeStaticString(":{")
            var first = true
            func key(_ name: StaticString) {
                if !first { buffer.writeInteger(UInt8(ascii: ",")) }
                first = false
                buffer.writeStaticString(name)
            }
            if let name = translation.name {
                key("\"name\":")
                JSONWriter.writeString(name, into: &buffer)
            }
            if let description = translation.description {
                key("\"description\":")
                JSONWriter.writeString(description, into: &buffer)
            }
            if !translation.options.isEmpty {
                key("\"options\":")
                buffer.writeJSONArray(translation.options.keys.sorted(), opening: "{", closing: "}") { option, buffer in
                    let translated = translation.options[option]!
                    JSONWriter.writeString(option, into: &buffer)
                    buffer.writeStaticString(":{")
                    if let name = translated.name { buffer.writeJSONString(name, after: "\"name\":") ; buffer.writeInteger(UInt8(ascii: ",")) }
                    buffer.writeStaticString("\"values\":")
                    JSONWriter.writeObject(translated.values, into: &buffer)
                    buffer.writeInteger(UInt8(ascii: "}"))
                }
            }
            buffer.writeInteger(UInt8(ascii: "}"))
        }
    }

    package var textBytes: (bytes: Int, strings: Int) {
        locales.reduce((0, 0)) { total, entry in
            let translation = entry.value
            var bytes = entry.key.utf8.count + (translation.name?.utf8.count ?? 0) + (translation.description?.utf8.count ?? 0) + 32
            var strings = 3
            for (option, translated) in translation.options {
                bytes += option.utf8.count + (translated.name?.utf8.count ?? 0) + 24
                bytes += translated.values.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count }
                strings += 2 + 2 * translated.values.count
            }
            return (total.0 + bytes, total.1 + strings)
        }
    }

    /// The locales a request's `locale` falls back through that this product has: `fr-FR`, then `fr`.
    package func chain(for locale: String) -> [Translation] {
        var chain: [Translation] = []
        if let exact = locales[locale] { chain.append(exact) }
        if let dash = locale.firstIndex(of: "-"), let language = locales[String(locale[..<dash])] { chain.append(language) }
        return chain
    }

    package init(from decoder: any Decoder) throws { locales = try [String: Translation](from: decoder) }
    package func encode(to encoder: any Encoder) throws { try locales.encode(to: encoder) }
}

/// BCP 47 language tags, as far as the catalog needs them.
package enum LanguageTag {
    /// The tag in canonical case (`fr-FR`, `zh-Hant-TW`, `es-419`), or nil when it is not a well-formed tag:
    /// a language of 2 or 3 letters, then subtags of 1 to 8 letters or digits.
    package static func canonical(_ tag: String) -> String? {
        let subtags = tag.split(separator: "-", omittingEmptySubsequences: false)
        guard let language = subtags.first, (2...3).contains(language.count), language.utf8.allSatisfy(isLetter),
              tag.utf8.count <= 35
        else { return nil }
        var canonical = [language.lowercased()]
        for subtag in subtags.dropFirst() {
            guard (1...8).contains(subtag.count), subtag.utf8.allSatisfy({ isLetter($0) || (0x30...0x39).contains($0) }) else { return nil }
            if subtag.count == 2, subtag.utf8.allSatisfy(isLetter) {
                canonical.append(subtag.uppercased())
            } else if subtag.count == 4, subtag.utf8.allSatisfy(isLetter) {
                canonical.append(subtag.prefix(1).uppercased() + subtag.dropFirst().lowercased())
            } else {
                canonical.append(subtag.lowercased())
            }
        }
        return canonical.joined(separator: "-")
    }

    private static func isLetter(_ byte: UInt8) -> Bool { (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) }
}
