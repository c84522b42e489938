import Foundation

/// The rules of what a storefront sells: options, variants, SKUs, prices, handles and categories. Both services
/// enforce them; the OpenAPI documents state the same limits.
package enum VariantRules {
    package static let maxOptions = 10
    package static let maxOptionValues = 255
    package static let maxLabelLength = 64
    package static let maxVariants = 10_000
    package static let maxPrices = 50
    package static let maxAmount: Int64 = 10_000_000_000_000
    package static let maxSKULength = 64
    package static let maxVariantIDLength = 64
    package static let variantIDPrefix = "var_"
    package static let maxHandleLength = 255
    package static let maxCategories = 32
    package static let categoryIDPrefix = "cat_"

    /// An option's name or value: trimmed by nobody, 1 to 64 characters, not blank, no NUL.
    package static func checkLabel(_ label: String, param: String) throws(APIError) {
        try ProductRules.checkNoNUL(label, param: param)
        guard !ProductRules.trimmed(label).isEmpty, label.unicodeScalars.count <= maxLabelLength else {
            throw .invalidParameter(param, "'\(param)' must be 1 to \(maxLabelLength) characters, not blank")
        }
    }

    /// A variant id: `var_` then 1 to 60 letters, digits, `_` or `-`.
    static func checkID(_ id: String, param: String) throws(APIError) {
        guard id.hasPrefix(variantIDPrefix), id.utf8.count > variantIDPrefix.utf8.count, id.utf8.count <= maxVariantIDLength,
              id.utf8.allSatisfy(isIDByte)
        else {
            throw .invalidParameter(param, "'\(param)' must be a variant id: var_ then up to 60 letters, digits, _ or -")
        }
    }

    /// A category id: `cat_` then 1 to 60 letters, digits, `_` or `-`.
    package static func checkCategoryID(_ id: String, param: String) throws(APIError) -> String {
        guard id.hasPrefix(categoryIDPrefix), id.utf8.count > categoryIDPrefix.utf8.count, id.utf8.count <= maxVariantIDLength,
              id.utf8.allSatisfy(isIDByte)
        else {
            throw .invalidParameter(param, "'\(param)' must be a category id: cat_ then up to 60 letters, digits, _ or -")
        }
        return id
    }

    private static func isIDByte(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || byte == UInt8(ascii: "_")
            || byte == UInt8(ascii: "-")
    }

    /// A SKU: 1 to 64 visible characters: no white space, no control characters, and no comma (`?sku=` lists SKUs
    /// with commas).
    package static func checkSKU(_ sku: String, param: String) throws(APIError) {
        // Printable ASCII without a comma, the common case, is judged by its bytes.
        if !sku.isEmpty, sku.utf8.count <= maxSKULength, sku.utf8.allSatisfy({ (0x21...0x7E).contains($0) && $0 != UInt8(ascii: ",") }) { return }
        guard !sku.isEmpty, sku.unicodeScalars.count <= maxSKULength,
              sku.unicodeScalars.allSatisfy({
                  !$0.properties.isWhitespace && $0.properties.generalCategory != .control && $0.value != 0 && $0 != ","
              })
        else {
            throw .invalidParameter(param, "'\(param)' must be a SKU of 1 to \(maxSKULength) visible characters, without spaces or commas")
        }
    }

    /// A handle: 1 to 255 of `a-z`, `0-9` and single `-` between them, as `handle(from:)` makes them.
    package static func checkHandle(_ handle: String, param: String = "handle") throws(APIError) -> String {
        let bytes = Array(handle.utf8)
        guard !bytes.isEmpty, bytes.count <= maxHandleLength, bytes.first != UInt8(ascii: "-"), bytes.last != UInt8(ascii: "-"),
              bytes.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x7A).contains($0) || $0 == UInt8(ascii: "-") }),
              !handle.contains("--")
        else {
            throw .invalidParameter(
                param, "'\(param)' must be 1 to \(maxHandleLength) lower-case letters, digits and single hyphens between them, such as blue-t-shirt")
        }
        return handle
    }

    /// The handle made from a name: lower case, accents folded, every run of other characters a `-`; `product`
    /// when nothing is left. Room is kept for a `-N` suffix.
    package static func handle(from name: String) -> String {
        let folded = name.lowercased().folding(options: .diacriticInsensitive, locale: nil)
        var handle: [UInt8] = []
        var pendingHyphen = false
        for byte in folded.utf8 {
            if (0x30...0x39).contains(byte) || (0x61...0x7A).contains(byte) {
                if pendingHyphen, !handle.isEmpty { handle.append(UInt8(ascii: "-")) }
                pendingHyphen = false
                handle.append(byte)
                if handle.count >= maxHandleLength - 8 { break }
            } else {
                pendingHyphen = true
            }
        }
        return handle.isEmpty ? "product" : String(decoding: handle, as: UTF8.self)
    }

    /// The `n`th candidate for a handle (`base` itself, then `base-2`, `base-3`, …), within the length limit.
    package static func handle(_ base: String, candidate n: Int) -> String {
        guard n > 1 else { return base }
        let suffix = "-\(n)"
        return String(base.utf8.prefix(maxHandleLength - suffix.utf8.count))! + suffix
    }

    /// The ISO 4217 codes of current currencies and funds.
    package static let currencies: Set<String> = Set(
        """
        AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF
        CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD
        HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA
        MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB
        RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN
        UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS XUA XXX YER ZAR ZMW
        ZWG ZWL
        """.split(whereSeparator: \.isWhitespace).map(String.init))
}
