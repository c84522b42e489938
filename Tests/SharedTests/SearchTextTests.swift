import Shared
import Testing

@Suite("Search words")
struct SearchTextTests {
    /// The words as Unicode's character properties cut them: what the ASCII path must equal.
    static func reference(_ text: String) -> [String] {
        ProductQuery.fold(text).split { !($0.isLetter || $0.isNumber) }.map(String.init)
    }

    @Test("ASCII text is cut into the same words as by character properties: every byte, CR LF pairs and runs of separators")
    func asciiMatchesCharacters() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = (0..<128).map { Character(Unicode.Scalar(UInt8($0))) } + ["\r\n", "\r\n"]
        for _ in 0..<5_000 {
            let text = String((0..<Int.random(in: 0...24, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! })
            #expect(SearchText.words(in: text) == Self.reference(text), "\(text.debugDescription)")
        }
        #expect(SearchText.words(in: "SKU-12/Blue_shirt  XL") == ["sku", "12", "blue", "shirt", "xl"])
    }

    @Test("text beyond ASCII is folded and cut by character properties")
    func unicode() {
        #expect(SearchText.words(in: "Crème brûlée, 2½ Ωmega") == Self.reference("Crème brûlée, 2½ Ωmega"))
        #expect(SearchText.words(in: "Crème BRÛLÉE") == ["creme", "brulee"])
        #expect(SearchText.words(in: "東京タワー 2024") == Self.reference("東京タワー 2024"))
    }
}
