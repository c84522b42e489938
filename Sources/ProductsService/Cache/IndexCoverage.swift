/// How far an index that is built on first use, in id order and a chunk at a time, has got (`NameIndex`,
/// `SearchIndex`). Puts and removes of products past it are left to the build, which reads each product as it is
/// when it gets there.
enum IndexCoverage: Equatable {
    /// None: nothing has asked for the index.
    case none
    /// Products with ids up to this one (none yet when nil): being built.
    case through(String?)
    /// All of them.
    case all

    /// Whether the index holds, or is to hold as it is built, the product with this id.
    func covers(_ id: String) -> Bool {
        switch self {
        case .none: false
        case .through(let last): last.map { id <= $0 } ?? false
        case .all: true
        }
    }

    /// Starts a build, if none has started.
    mutating func begin() {
        if self == .none { self = .through(nil) }
    }

    /// Where the build has reached: the last id indexed (nil before the first); nil too when it is not building.
    var buildPosition: String?? {
        if case .through(let last) = self { return .some(last) }
        return nil
    }
}

extension ShopState {
    /// The next `limit` ids, in order, after a build's position `last`, and whether they are the last ones.
    func nextToIndex(after last: String?, limit: Int) -> (ids: ArraySlice<String>, complete: Bool) {
        var start = last.map { order.insertionIndex(of: $0) } ?? 0
        if let last, start < order.count, order[start] == last { start += 1 }
        let end = min(start + limit, order.count)
        return (order[start..<end], end == order.count)
    }
}
