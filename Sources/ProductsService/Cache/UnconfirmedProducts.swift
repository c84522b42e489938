import Shared

/// The products with writes the Database Service has not confirmed, counted by a hash of tenant and id: 12 bytes
/// or so a product however many writes it has pending, so that a backlog kept on disk needs no more memory than
/// the products it touches. A hash collision only makes `contains` answer true for a product it should not.
struct UnconfirmedProducts {
    private var writes: [UInt64: UInt32] = [:]
    /// Writes pending per tenant.
    private(set) var tenants: [String: Int] = [:]
    /// The journal sequence of each tenant's newest pending write: writes are confirmed in journal order, so once
    /// it is confirmed the tenant has none pending.
    private(set) var newest: [String: UInt64] = [:]

    mutating func add(_ operation: WriteOperation, sequence: UInt64) {
        writes[Self.key(tenant: operation.tenant, id: operation.productID), default: 0] += 1
        tenants[operation.tenant, default: 0] += 1
        newest[operation.tenant] = max(newest[operation.tenant] ?? 0, sequence)
    }

    mutating func remove(_ operation: WriteOperation) {
        let key = Self.key(tenant: operation.tenant, id: operation.productID)
        if let count = writes[key] { writes[key] = count > 1 ? count - 1 : nil }
        if let count = tenants[operation.tenant] {
            tenants[operation.tenant] = count > 1 ? count - 1 : nil
            if count == 1 { newest[operation.tenant] = nil }
        }
    }

    func contains(tenant: String, id: String) -> Bool {
        writes[Self.key(tenant: tenant, id: id)] != nil
    }

    private static func key(tenant: String, id: String) -> UInt64 {
        var hasher = Hasher()
        hasher.combine(tenant)
        hasher.combine(id)
        return UInt64(bitPattern: Int64(hasher.finalize()))
    }
}
