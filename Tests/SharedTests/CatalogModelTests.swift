import Foundation
import NIOCore
import Testing
@testable import Shared

/// Options, variants, prices, handles and translations: their rules, their JSON, and the localized view.
@Suite("Catalog model")
struct CatalogModelTests {
    static let shirt = Product(
        id: "prod_1", name: "T-Shirt", handle: "t-shirt",
        options: [ProductOption(name: "Color", values: ["Red", "Blue"]), ProductOption(name: "Size", values: ["S", "M"])],
        variants: [
            Variant(id: "var_1", sku: "TS-RED-S", options: ["Color": "Red", "Size": "S"], prices: [Price(currency: "EUR", amount: 1999)], position: 1),
            Variant(id: "var_2", sku: nil, options: ["Color": "Blue", "Size": "M"], prices: [], position: 2, metadata: ["x": "y"]),
        ],
        categoryIDs: ["cat_shirts"],
        translations: ["fr-FR": Translation(name: "T-shirt", options: ["Color": OptionTranslation(name: "Couleur", values: ["Red": "Rouge"])]),
                       "fr": Translation(description: "En coton")],
        metadata: [:], createdAt: "2026-01-01T00:00:00Z", updatedAt: "2026-01-01T00:00:00Z", version: 1)

    /// The `param` and `code` of the error `body` throws.
    func fault(_ body: () throws -> Void) -> (code: String, param: String?)? {
        do { try body() } catch let error as APIError { return (error.code, error.param) } catch { return ("unexpected", "\(error)") }
        return nil
    }

    @Test("a product's JSON reads back the same, with the strict parser and with Foundation")
    func roundTrip() throws {
        let json = Self.shirt.json
        #expect(try Product(json: String(buffer: json)) == Self.shirt)
        #expect(try JSONDecoder().decode(Product.self, from: Data(buffer: json)) == Self.shirt)
        let text = String(buffer: json)
        #expect(text.contains(#""handle":"t-shirt""#) && text.contains(#"{"id":"var_2","sku":null,"options":{"Color":"Blue","Size":"M"}"#))
        try Self.shirt.validate()
    }

    @Test("a stored product's options and variants are read straight from the JSON, faults named as a client's are", arguments: [
        (#"{"sku":"A","x":1}"#, JSONSyntaxError.Fault.unknown(param: "product[variants][0][x]")),
        (#"{"sku":7}"#, .invalid(param: "product[variants][0][sku]")),
        (#"{"options":{"Color":1}}"#, .invalid(param: "product[variants][0][options][Color]")),
        (#"{"prices":[{"currency":"EUR"}]}"#, .missing(param: "product[variants][0][prices][0][amount]")),
        (#"{"prices":[{"currency":"EUR","amount":1,"tax":0}]}"#, .unknown(param: "product[variants][0][prices][0][tax]")),
        (#"{"prices":[{"currency":"EUR","amount":1.5}]}"#, .invalid(param: "product[variants][0][prices][0][amount]")),
        (#"{"prices":{}}"#, .invalid(param: "product[variants][0][prices]")),
        (#"{"metadata":{"a":null}}"#, .invalid(param: "product[variants][0][metadata][a]")),
        (#""var_1""#, .invalid(param: "product[variants][0]")),
    ])
    func strictVariants(variant: String, fault: JSONSyntaxError.Fault) throws {
        let text = String(buffer: Self.shirt.json)
        let variants = text.range(of: #""variants":["#)!.upperBound
        let second = text.range(of: #",{"id":"var_2""#)!.lowerBound
        let faulty = String(text[..<variants]) + variant + String(text[second...])
        #expect(throws: JSONSyntaxError.self) { try Product(json: faulty) }
        do { _ = try Product(json: faulty) } catch { #expect(error.fault == fault, "\(error)") }
        var options = text.replacingOccurrences(of: #""values":["Red","Blue"]"#, with: #""values":["Red","Blue"],"x":[]"#)
        do { _ = try Product(json: options) } catch { #expect(error.fault == .unknown(param: "product[options][0][x]"), "\(error)") }
        options = text.replacingOccurrences(of: #"{"name":"Color","values":["Red","Blue"]}"#, with: #"{"name":"Color"}"#)
        do { _ = try Product(json: options) } catch { #expect(error.fault == .missing(param: "product[options][0][values]"), "\(error)") }
    }

    @Test("handles are made from names: lower case, accents folded, other characters a single hyphen")
    func handles() throws {
        #expect(VariantRules.handle(from: "  Crème Brûlée — 500 g!") == "creme-brulee-500-g")
        #expect(VariantRules.handle(from: "日本") == "product")
        #expect(VariantRules.handle("shirt", candidate: 1) == "shirt" && VariantRules.handle("shirt", candidate: 3) == "shirt-3")
        #expect(VariantRules.handle(String(repeating: "a", count: 300), candidate: 12).utf8.count == VariantRules.maxHandleLength)
        for bad in ["Shirt", "-shirt", "shirt-", "a--b", "a b", String(repeating: "a", count: 256)] {
            #expect(fault { _ = try VariantRules.checkHandle(bad) }?.param == "handle", "\(bad)")
        }
    }

    @Test("SKUs: 1 to 64 visible characters, without spaces or commas, ASCII or not")
    func skus() {
        for good in ["TS-RED-S", "~!#$%&'()*+-./:;<=>?@[]^_`{|}", String(repeating: "A", count: 64), "ÄÖ-1", String(repeating: "é", count: 64)] {
            #expect(fault { try VariantRules.checkSKU(good, param: "sku") } == nil, "\(good)")
        }
        for bad in ["", "a,b", "a b", "a\tb", "a\u{0}b", String(repeating: "A", count: 65), String(repeating: "é", count: 65), "a\u{00A0}b", "a\u{7F}"] {
            #expect(fault { try VariantRules.checkSKU(bad, param: "sku") }?.param == "sku", "\(bad.debugDescription)")
        }
    }

    @Test("each rule across fields fails with its code and param", arguments: [
        (#"{"name":"x","variants":[{"sku":"A"},{"sku":"B"}]}"#, "parameter_invalid", "variants"),
        (#"{"name":"x","options":[{"name":"Size","values":["S"]}],"variants":[{"options":{}}]}"#, "parameter_missing", "variants[0][options][Size]"),
        (#"{"name":"x","options":[{"name":"Size","values":["S"]}],"variants":[{"options":{"Size":"XL"}}]}"#, "parameter_invalid", "variants[0][options][Size]"),
        (#"{"name":"x","options":[{"name":"Size","values":["S"]}],"variants":[{"options":{"Size":"S","Color":"Red"}}]}"#, "parameter_invalid", "variants[0][options][Color]"),
        (#"{"name":"x","options":[{"name":"Size","values":["S","M"]}],"variants":[{"options":{"Size":"S"}},{"options":{"Size":"S"}}]}"#, "parameter_invalid", "variants[1][options]"),
        (#"{"name":"x","options":[{"name":"Size","values":["S","M"]}],"variants":[{"sku":"A","options":{"Size":"S"}},{"sku":"A","options":{"Size":"M"}}]}"#, "parameter_invalid", "variants[1][sku]"),
        (#"{"name":"x","options":[{"name":"Size","values":["S"]}],"translations":{"fr":{"options":{"Taille":{"name":"T"}}}}}"#, "parameter_invalid", "translations[fr][options][Taille]"),
        (#"{"name":"x","options":[{"name":"Size","values":["S"]}],"translations":{"fr":{"options":{"Size":{"values":{"L":"G"}}}}}}"#, "parameter_invalid", "translations[fr][options][Size][values][L]"),
    ])
    func structure(body: String, code: String, param: String) throws {
        var product = Product(id: "prod_2", createdAt: "2026-01-01T00:00:00Z", updatedAt: "2026-01-01T00:00:00Z", version: 1)
        let json = try JSONValue.parse(ByteBuffer(string: body))
        guard case .object(let members) = json else { return }
        for field in Product.editableFields { if let value = members[field.name] { try field.take(value, into: &product) } }
        product.assignVariantIDs(previous: [], newID: { "var_\(UUID().uuidString.prefix(8))" })
        let found = fault { try product.checkStructure() }
        #expect(found?.code == code && found?.param == param, "\(String(describing: found))")
    }

    @Test("a change of a few variants in place is checked against the others as the whole check would, fault for fault")
    func structureAfterChange() {
        let sizes = (0..<40).map { "S\($0)" }
        let colors = (0..<25).map { "C\($0)" }
        var base = Product(id: "prod_w", createdAt: "2026-01-01T00:00:00Z", updatedAt: "2026-01-01T00:00:00Z", version: 1)
        base.options = [ProductOption(name: "Size", values: sizes), ProductOption(name: "Color", values: colors)]
        base.variants = (0..<600).map { (index: Int) -> Variant in
            let sku: String? = index % 3 == 0 ? nil : "SKU-\(index)"
            let options: [String: String] = ["Size": sizes[index % 40], "Color": colors[index / 40]]
            return Variant(id: "var_\(index)", sku: sku, options: options, prices: [Price(currency: "EUR", amount: Int64(index))], position: Int64(index + 1))
        }
        #expect(fault { try base.checkStructure() } == nil)
        var generator = SystemRandomNumberGenerator()
        var faults = 0
        for _ in 0..<2_000 {
            var changed = base
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                let index = Int.random(in: 0..<600, using: &generator)
                var variant = changed.variants[index]
                switch Int.random(in: 0..<8, using: &generator) {
                case 0: variant.prices = [Price(currency: "USD", amount: 5)]
                case 1: variant.sku = "SKU-\(Int.random(in: 0..<700, using: &generator))"
                case 2: variant.sku = nil
                case 3: variant.options["Size"] = sizes.randomElement(using: &generator)
                case 4: variant.options["Color"] = ["C1", "C99"].randomElement(using: &generator)
                case 5: variant.options["Fit"] = "Slim"
                case 6: variant.options["Size"] = nil
                default: variant.id = ["", "var_\(Int.random(in: 0..<700, using: &generator))"].randomElement(using: &generator)!
                }
                changed.variants[index] = variant
            }
            let whole = fault { try changed.checkStructure() }
            let incremental = fault { try changed.checkStructure(after: base) }
            #expect(whole?.code == incremental?.code && whole?.param == incremental?.param, "\(String(describing: whole)) vs \(String(describing: incremental))")
            if whole != nil { faults += 1 }
        }
        #expect(faults > 200 && faults < 1_900, "both outcomes are tried: \(faults) faults")
        // A fault is named as the whole check names it: at the later of the two variants, though it changed the earlier.
        var moved = base
        moved.variants.swapAt(0, 1)
        moved.variants[1].sku = "SKU-2"
        #expect(fault { try moved.checkStructure(after: base) }?.param == "variants[2][sku]")
    }

    @Test("SKUs kept: none new when each variant keeps its SKU, or the SKUs only move among the variants")
    func keptSKUs() {
        var changed = Self.shirt
        #expect(changed.keepsSKUs(of: Self.shirt) && !changed.keepsSKUs(of: nil))
        changed.variants[1].prices = [Price(currency: "USD", amount: 1)]
        #expect(changed.keepsSKUs(of: Self.shirt))
        changed.variants.reverse()
        #expect(changed.keepsSKUs(of: Self.shirt))
        changed.variants[0].sku = "TS-BLUE-M"
        #expect(!changed.keepsSKUs(of: Self.shirt))
        var none = Self.shirt
        none.variants = none.variants.map { var variant = $0; variant.sku = nil; return variant }
        #expect(none.keepsSKUs(of: nil))
    }

    @Test("each field's own rule fails with its code and param", arguments: [
        (#"{"options":[{"name":"Size","values":[]}]}"#, "parameter_invalid", "options[0][values]"),
        (#"{"options":[{"name":"Size","values":["S","S"]}]}"#, "parameter_invalid", "options[0][values][1]"),
        (#"{"options":[{"name":"Size","values":["S"]},{"name":"size","values":["M"]}]}"#, "parameter_invalid", "options[1][name]"),
        (#"{"options":[{"name":"Size"}]}"#, "parameter_missing", "options[0][values]"),
        (#"{"options":[{"name":"Size","values":["S"],"x":1}]}"#, "parameter_unknown", "options[0][x]"),
        (#"{"variants":[{"sku":"has space"}]}"#, "parameter_invalid", "variants[0][sku]"),
        (#"{"variants":[{"prices":[{"currency":"EURO","amount":1}]}]}"#, "parameter_invalid", "variants[0][prices][0][currency]"),
        (#"{"variants":[{"prices":[{"currency":"ABC","amount":1}]}]}"#, "parameter_invalid", "variants[0][prices][0][currency]"),
        (#"{"variants":[{"prices":[{"currency":"EUR","amount":-1}]}]}"#, "parameter_invalid", "variants[0][prices][0][amount]"),
        (#"{"variants":[{"prices":[{"currency":"EUR","amount":10000000000001}]}]}"#, "parameter_invalid", "variants[0][prices][0][amount]"),
        (#"{"variants":[{"prices":[{"currency":"EUR","amount":1.5}]}]}"#, "parameter_invalid", "variants[0][prices][0][amount]"),
        (#"{"variants":[{"prices":[{"currency":"EUR","amount":1},{"currency":"EUR","amount":2}]}]}"#, "parameter_invalid", "variants[0][prices][1][currency]"),
        (#"{"variants":[{"id":"nope"}]}"#, "parameter_invalid", "variants[0][id]"),
        (#"{"variants":[{"position":-1}]}"#, "parameter_invalid", "variants[0][position]"),
        (#"{"variants":{}}"#, "parameter_invalid", "variants"),
        (#"{"category_ids":["shirts"]}"#, "parameter_invalid", "category_ids[0]"),
        (#"{"translations":{"french":{"name":"x"}}}"#, "parameter_invalid", "translations[french]"),
        (#"{"translations":{"fr":{"name":" "}}}"#, "parameter_invalid", "translations[fr][name]"),
        (#"{"translations":{"fr":{"title":"x"}}}"#, "parameter_unknown", "translations[fr][title]"),
        (#"{"translations":{"fr-fr":{"name":"a"},"fr-FR":{"name":"b"}}}"#, "parameter_invalid", "translations[fr-fr]"),
        (#"{"handle":"Big Shirt"}"#, "parameter_invalid", "handle"),
    ])
    func fieldRules(body: String, code: String, param: String) throws {
        var product = Product.blank
        guard case .object(let members) = try JSONValue.parse(ByteBuffer(string: body)) else { return }
        let found = fault {
            for field in Product.editableFields { if let value = members[field.name] { try field.take(value, into: &product) } }
        }
        // Two spellings of one locale: which is met first depends on the object's order.
        if param == "translations[fr-fr]" {
            #expect(found?.code == code && found?.param?.hasPrefix("translations[fr-") == true, "\(String(describing: found))")
        } else {
            #expect(found?.code == code && found?.param == param, "\(String(describing: found))")
        }
    }

    @Test("limits: 10 options, 255 values, 10,000 variants, 50 prices, 32 categories, 100 locales")
    func limits() throws {
        var product = Product.blank
        func take(_ name: String, _ json: String) -> (code: String, param: String?)? {
            fault { try Product.fields[Product.fieldIndex(of: name)!].take(try! JSONValue.parse(ByteBuffer(string: json)), into: &product) }
        }
        let options = (0...10).map { #"{"name":"o\#($0)","values":["v"]}"# }.joined(separator: ",")
        #expect(take("options", "[\(options)]")?.param == "options")
        #expect(take("options", #"[{"name":"o","values":[\#((0...255).map { "\"\($0)\"" }.joined(separator: ","))]}]"#)?.param == "options[0][values]")
        #expect(take("variants", "[\(Array(repeating: "{}", count: 10_001).joined(separator: ","))]")?.param == "variants")
        #expect(take("variants", "[\(Array(repeating: "{}", count: 10_000).joined(separator: ","))]") == nil)
        let prices = (0...50).map { #"{"currency":"EUR","amount":\#($0)}"# }.joined(separator: ",")
        #expect(take("variants", #"[{"prices":[\#(prices)]}]"#)?.param == "variants[0][prices]")
        #expect(take("category_ids", "[\((0...32).map { "\"cat_\($0)\"" }.joined(separator: ","))]")?.param == "category_ids")
        let locales = (0...100).map { "\"x\(String(UnicodeScalar(97 + $0 / 26)!))\(String(UnicodeScalar(97 + $0 % 26)!))\":{}" }.joined(separator: ",")
        #expect(take("translations", "{\(locales)}")?.param == "translations")
    }

    @Test("variant ids: kept for the variant with the same options, new otherwise; positions numbered in order")
    func variantIDs() {
        var product = Self.shirt
        product.variants = [
            Variant(id: "", options: ["Color": "Blue", "Size": "M"], position: 0),
            Variant(id: "", options: ["Color": "Red", "Size": "M"], position: 0),
            Variant(id: "", options: ["Color": "Red", "Size": "S"], position: 0),
        ]
        var next = 0
        product.assignVariantIDs(previous: Self.shirt.variants) { next += 1; return "var_new\(next)" }
        #expect(product.variants.map(\.id) == ["var_2", "var_new1", "var_1"])
        #expect(product.variants.map(\.position) == [1, 2, 3])
        product.variants[0].position = 9
        product.assignVariantIDs(previous: []) { "unused" }
        #expect(product.variants.map(\.id) == ["var_new1", "var_1", "var_2"], "a position moves its variant")
    }

    @Test("localized: the locale's text, else its language's, else the product's own, field by field")
    func localized() {
        let french = Self.shirt.localized(to: "fr-FR")
        #expect(french.name == "T-shirt" && french.description == "En coton")
        #expect(french.options.map(\.name) == ["Couleur", "Size"] && french.options[0].values == ["Rouge", "Blue"])
        #expect(french.variants[0].options == ["Couleur": "Rouge", "Size": "S"])
        let canadian = Self.shirt.localized(to: "fr-CA")
        #expect(canadian.name == "T-Shirt" && canadian.description == "En coton")
        #expect(Self.shirt.localized(to: "de") == Self.shirt)
        #expect(LanguageTag.canonical("ZH-hant-tw") == "zh-Hant-TW" && LanguageTag.canonical("es-419") == "es-419")
        #expect(LanguageTag.canonical("f") == nil && LanguageTag.canonical("fr_FR") == nil && LanguageTag.canonical("fr--FR") == nil)
    }
}
