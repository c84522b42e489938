/// The search index's documents in slots, in chunks of 1,024, each chunk column by column: what a facet scan reads
/// (type, flags, creation time, value codes, prices) lies in contiguous arrays, so that a scan of a million
/// documents walks memory in order instead of chasing a pointer per document. The rest of each document (its id,
/// name and words) is a `SearchIndex.Document`, read only for a match.
///
/// A copy costs O(1) (a search takes one under the shop's lock and scans it outside); a write to a copy copies the
/// columns of one chunk, not the index.
struct SearchColumns: Sendable {
    /// Up to 1,024 documents, column by column. A document's value codes and prices are runs in the chunk's pools;
    /// a run left by an update or a removal is garbage until the chunk compacts its pools.
    struct Chunk: Sendable {
        var documents: [SearchIndex.Document] = []
        var types: [UInt32] = []
        /// `live` and `active` bits.
        var flags: [UInt8] = []
        var createdMs: [Int64] = []
        /// `start << 32 | count` of each document's run in `values`, and in `prices`.
        var valueRuns: [UInt64] = []
        var priceRuns: [UInt64] = []
        /// Tag, category and option-value codes, each document's sorted.
        var values: [UInt32] = []
        /// `currency << 44 | amount`, each document's sorted.
        var prices: [Int64] = []
        var garbage = 0

        static let live: UInt8 = 1
        static let active: UInt8 = 2

        /// The columns as buffers, for a scan's inner loop (no bounds checks, no reference counting).
        struct Buffers {
            let documents: UnsafeBufferPointer<SearchIndex.Document>
            let types: UnsafeBufferPointer<UInt32>
            let flags: UnsafeBufferPointer<UInt8>
            let createdMs: UnsafeBufferPointer<Int64>
            let valueRuns: UnsafeBufferPointer<UInt64>
            let priceRuns: UnsafeBufferPointer<UInt64>
            let values: UnsafeBufferPointer<UInt32>
            let prices: UnsafeBufferPointer<Int64>
        }

        func withBuffers<R>(_ body: (Buffers) -> R) -> R {
            documents.withUnsafeBufferPointer { documents in
                types.withUnsafeBufferPointer { types in
                    flags.withUnsafeBufferPointer { flags in
                        createdMs.withUnsafeBufferPointer { createdMs in
                            valueRuns.withUnsafeBufferPointer { valueRuns in
                                priceRuns.withUnsafeBufferPointer { priceRuns in
                                    values.withUnsafeBufferPointer { values in
                                        prices.withUnsafeBufferPointer { prices in
                                            body(Buffers(
                                                documents: documents, types: types, flags: flags, createdMs: createdMs, valueRuns: valueRuns,
                                                priceRuns: priceRuns, values: values, prices: prices))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }

        /// The value codes of the document at `index`.
        func values(at index: Int) -> ArraySlice<UInt32> { values[Self.range(valueRuns[index])] }
        /// The prices of the document at `index`.
        func prices(at index: Int) -> ArraySlice<Int64> { prices[Self.range(priceRuns[index])] }

        static func range(_ run: UInt64) -> Range<Int> {
            let start = Int(run >> 32)
            return start..<(start + Int(run & 0xFFFF_FFFF))
        }

        mutating func set(_ index: Int, _ document: SearchIndex.Document, values newValues: [UInt32], prices newPrices: [Int64]) {
            let flags = Self.live | (document.active ? Self.active : 0)
            let valueRun = UInt64(values.count) << 32 | UInt64(newValues.count)
            let priceRun = UInt64(prices.count) << 32 | UInt64(newPrices.count)
            values += newValues
            prices += newPrices
            if index == documents.count {
                documents.append(document)
                types.append(document.type)
                self.flags.append(flags)
                createdMs.append(document.createdMs)
                valueRuns.append(valueRun)
                priceRuns.append(priceRun)
            } else {
                garbage += Int(valueRuns[index] & 0xFFFF_FFFF) + Int(priceRuns[index] & 0xFFFF_FFFF)
                documents[index] = document
                types[index] = document.type
                self.flags[index] = flags
                createdMs[index] = document.createdMs
                valueRuns[index] = valueRun
                priceRuns[index] = priceRun
                compactIfWasteful()
            }
        }

        mutating func free(_ index: Int) {
            garbage += Int(valueRuns[index] & 0xFFFF_FFFF) + Int(priceRuns[index] & 0xFFFF_FFFF)
            documents[index] = .free
            flags[index] = 0
            valueRuns[index] = 0
            priceRuns[index] = 0
            compactIfWasteful()
        }

        /// Rewrites the pools with only the live documents' runs once most of them is garbage.
        private mutating func compactIfWasteful() {
            guard garbage > 256, garbage * 2 > values.count + prices.count else { return }
            var (keptValues, keptPrices) = ([UInt32](), [Int64]())
            keptValues.reserveCapacity(values.count + prices.count - garbage)
            for index in documents.indices {
                let (valueRange, priceRange) = (Self.range(valueRuns[index]), Self.range(priceRuns[index]))
                valueRuns[index] = UInt64(keptValues.count) << 32 | UInt64(valueRange.count)
                priceRuns[index] = UInt64(keptPrices.count) << 32 | UInt64(priceRange.count)
                keptValues += values[valueRange]
                keptPrices += prices[priceRange]
            }
            (values, prices, garbage) = (keptValues, keptPrices, 0)
        }
    }

    private(set) var chunks: [Chunk] = []
    private(set) var count = 0

    subscript(slot: Int) -> SearchIndex.Document { chunks[slot >> 10].documents[slot & 1023] }

    /// The value codes and prices of the document in `slot`.
    func values(_ slot: Int) -> ArraySlice<UInt32> { chunks[slot >> 10].values(at: slot & 1023) }
    func prices(_ slot: Int) -> ArraySlice<Int64> { chunks[slot >> 10].prices(at: slot & 1023) }

    /// Puts a document in `slot`, an existing one or the next (`count`).
    mutating func set(_ slot: Int, _ document: SearchIndex.Document, values: [UInt32], prices: [Int64]) {
        if slot == count {
            if count & 1023 == 0 { chunks.append(Chunk()) }
            count += 1
        }
        chunks[slot >> 10].set(slot & 1023, document, values: values, prices: prices)
    }

    mutating func free(_ slot: Int) {
        chunks[slot >> 10].free(slot & 1023)
    }
}
