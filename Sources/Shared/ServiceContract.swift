import HTTPTypes

/// What the Products Service and the Database Service must agree on, declared once.
package enum ServiceContract {
    /// The most operations one write batch (`POST /api/products/batch`) may carry.
    package static let maxBatchOperations = 1000
    /// The largest batch body: batches carry whole products, so they may be larger than a public request body.
    package static let maxBatchBodySize = 64 * 1024 * 1024
    /// The largest coordinated write (`POST /api/products/write`): a product of up to `ProductRules.maxBodyBytes`,
    /// and the idempotency key's answer, which holds it again as an escaped string.
    package static let maxWriteBodySize = 4 * ProductRules.maxBodyBytes
    /// The most product JSON one page of products or changes carries: a page ends early (with more to follow) rather
    /// than pass it, so 1,000 products with 40,000-character descriptions stay well within a response's 64 MiB.
    package static let maxPageBytes = 16 * 1024 * 1024
}

extension HTTPField.Name {
    /// The tenant a service-to-service call acts for; trusted only with the service token.
    package static let tenantID = Self("X-Tenant-ID")!
    /// The request's id, echoed to the client and forwarded to the Database Service.
    package static let xRequestID = Self("X-Request-ID")!
    /// The W3C trace context forwarded to the Database Service.
    package static let traceparent = Self("traceparent")!
}
