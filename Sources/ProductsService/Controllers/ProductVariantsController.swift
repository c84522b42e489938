import HTTPTypes
import Hummingbird
import NIOCore
import Shared
import Synchronization

/// `/products/{id}/variants`: one variant at a time, so that a price change never resends the others. Each change
/// is a new version of the product, with its event and its place in the history, and honours `If-Match` on the
/// product's `ETag`.
struct ProductVariantsController<Context: TenantRequestContext> {
    let replica: Replica
    let auth: AuthMiddleware<Context>

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .add(middleware: auth)
            .get("{id}/variants", use: list)
            .post("{id}/variants", use: create)
            .get("{id}/variants/{variant_id}", use: show)
            .patch("{id}/variants/{variant_id}", use: update)
            .delete("{id}/variants/{variant_id}", use: delete)
    }

    /// GET /products/{id}/variants: the product's variants, in position order.
    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        let product = try await replica.product(tenant: context.tenant, id: try context.productID())
        let locale = try ProductsController<Context>.locale(in: request)
        let decoded = replica.decodedProducts.product(of: product, tenant: context.tenant)
        let shown = locale.map { decoded.localized(to: $0) } ?? decoded
        var body = ByteBuffer()
        body.writeJSONArray(shown.variants, opening: "[", closing: "]") { variant, body in variant.writeJSON(into: &body) }
        var response = Response.json(buffer: body)
        response.headers[.eTag] = product.etag
        if let locale { response.headers[.contentLanguage] = locale }
        return response
    }

    /// GET /products/{id}/variants/{variant_id}: one variant, with its product's `ETag`.
    @Sendable func show(_ request: Request, context: Context) async throws -> Response {
        let product = try await replica.product(tenant: context.tenant, id: try context.productID())
        let variantID = try context.parameters.require("variant_id")
        let locale = try ProductsController<Context>.locale(in: request)
        let decoded = replica.decodedProducts.product(of: product, tenant: context.tenant)
        let shown = locale.map { decoded.localized(to: $0) } ?? decoded
        guard let variant = shown.variants.first(where: { $0.id == variantID }) else { throw Self.variantNotFound }
        var response = Self.response(variant, product: product.etag)
        if let locale { response.headers[.contentLanguage] = locale }
        return response
    }

    /// POST /products/{id}/variants: adds a variant (201), at the end unless `position` says otherwise.
    @Sendable func create(_ request: Request, context: Context) async throws -> Response {
        let id = try context.productID()
        let condition = try EntityTag.condition(.ifMatch, in: request.headers)
        let input = try VariantBody(try await request.collectJSONBody(), patching: false)
        let variantID = input.id ?? replica.variantIDs.next()
        let placed = VariantPlace(id: variantID)
        let result = try await placed.naming {
            try await replica.update(tenant: context.tenant, id: id, condition: condition) { product throws(APIError) in
                var product = product
                var variant = try input.variant(base: nil)
                variant.id = variantID
                if variant.position == 0 { variant.position = Int64(product.variants.count + 1) }
                Self.place(variant, in: &product)
                placed.record(product)
                return product
            }
        }
        return try answer(result, tenant: context.tenant, variantID: variantID, status: .created)
    }

    /// PATCH /products/{id}/variants/{variant_id}: changes the fields given (`metadata` merges key by key, `null`
    /// removing a key; `"sku": null` removes the SKU).
    @Sendable func update(_ request: Request, context: Context) async throws -> Response {
        let id = try context.productID()
        let variantID = try context.parameters.require("variant_id")
        let condition = try EntityTag.condition(.ifMatch, in: request.headers)
        let input = try VariantBody(try await request.collectJSONBody(), patching: true)
        let placed = VariantPlace(id: variantID)
        let result = try await placed.naming {
            try await replica.update(tenant: context.tenant, id: id, condition: condition) { product throws(APIError) in
                var product = product
                guard let index = product.variants.firstIndex(where: { $0.id == variantID }) else { throw Self.variantNotFound }
                let variant = try input.variant(base: product.variants[index])
                if input.members["position"] != nil {
                    product.variants.remove(at: index)
                    Self.place(variant, in: &product)
                } else {
                    product.variants[index] = variant
                }
                placed.record(product)
                return product
            }
        }
        return try answer(result, tenant: context.tenant, variantID: variantID, status: .ok)
    }

    /// DELETE /products/{id}/variants/{variant_id}: removes a variant, its SKU freed.
    @Sendable func delete(_ request: Request, context: Context) async throws -> Response {
        let id = try context.productID()
        let variantID = try context.parameters.require("variant_id")
        let condition = try EntityTag.condition(.ifMatch, in: request.headers)
        let result = try await replica.update(tenant: context.tenant, id: id, condition: condition) { product throws(APIError) in
            var product = product
            guard let index = product.variants.firstIndex(where: { $0.id == variantID }) else { throw Self.variantNotFound }
            product.variants.remove(at: index)
            Self.renumber(&product)
            return product
        }
        guard case .written(let product) = result else { return ProductsController<Context>.response(result) }
        var body = ByteBuffer()
        body.writeJSONString("deleted", after: "{\"status\":")
        body.writeJSONString(variantID, after: ",\"variant_id\":")
        body.writeJSONString(id, after: ",\"product_id\":")
        body.writeStaticString("}")
        var response = Response.json(buffer: body)
        response.headers[.eTag] = product.etag
        return response
    }

    // MARK: Helpers

    static var variantNotFound: APIError { .notFound("Variant not found", param: "variant_id") }

    /// Places a variant before the one at its position (last past the end), then numbers the positions again.
    static func place(_ variant: Variant, in product: inout Product) {
        let index = product.variants.firstIndex { $0.position >= variant.position } ?? product.variants.count
        product.variants.insert(variant, at: index)
        renumber(&product)
    }

    /// Numbers the variants' positions 1, 2, … in their order.
    static func renumber(_ product: inout Product) {
        for place in product.variants.indices { product.variants[place].position = Int64(place + 1) }
    }

    /// A variant, with its product's `ETag` (what `If-Match` on a variant's change compares).
    static func response(_ variant: Variant, product etag: String, status: HTTPResponse.Status = .ok) -> Response {
        var body = ByteBuffer()
        variant.writeJSON(into: &body)
        var response = Response.json(buffer: body, status: status)
        response.headers[.eTag] = etag
        return response
    }

    /// The answer to a variant's write: the variant as the product written holds it.
    func answer(_ result: Replica.WriteResult, tenant: String, variantID: String, status: HTTPResponse.Status) throws -> Response {
        guard case .written(let written) = result else { return ProductsController<Context>.response(result, status: status) }
        let product = replica.decodedProducts.product(of: written, tenant: tenant)
        guard let found = product.variants.first(where: { $0.id == variantID }) else { throw APIError.versionConflict("The variant changed while being written; retry") }
        return Self.response(found, product: written.etag, status: status)
    }
}

/// Where a variant's write put the variant in its product, so that a fault of that variant, found as the product is
/// checked (`Replica.completed`, or the Database Service for a SKU), is named as the body's member: `options`, not
/// `variants[3][options]`; so is a clash with another variant of the product (the same options or SKU).
final class VariantPlace: Sendable {
    let id: String
    private let written = Mutex<(product: Product, index: Int)?>(nil)

    init(id: String) { self.id = id }

    /// Notes the product the write makes (the last attempt's, when a write is retried).
    func record(_ product: Product) {
        let index = product.variants.firstIndex { $0.id == id }
        written.withLock { $0 = index.map { (product, $0) } }
    }

    /// Runs the write, naming its variant's faults as the body's members.
    func naming<T>(_ write: () async throws -> T) async throws -> T {
        do { return try await write() } catch var error as APIError {
            if let param = error.param, let member = member(of: param) { error.param = member }
            throw error
        }
    }

    /// `param` as a member of the variant's body, if it names this variant, or another that clashes with it.
    private func member(of param: String) -> String? {
        guard let (product, index) = written.withLock({ $0 }), param.hasPrefix("variants["),
              let close = param.firstIndex(of: "]"), let named = Int(param[param.index(param.startIndex, offsetBy: 9)..<close])
        else { return nil }
        let rest = param[param.index(after: close)...]
        guard rest.hasPrefix("["), let end = rest.firstIndex(of: "]") else { return nil }
        let member = String(rest[rest.index(after: rest.startIndex)..<end]) + String(rest[rest.index(after: end)...])
        if named == index { return member }
        guard product.variants.indices.contains(named) else { return nil }
        let (ours, other) = (product.variants[index], product.variants[named])
        if member == "options", ours.options == other.options { return member }
        if member == "sku", ours.sku != nil, ours.sku == other.sku { return member }
        return nil
    }
}

/// A variant's body on the sub-resource routes: the members given, checked as a product's variant is.
struct VariantBody: Sendable {
    let members: [String: JSONValue]
    let patching: Bool

    init(_ body: ByteBuffer, patching: Bool) throws(APIError) {
        let json: JSONValue
        do { json = try JSONValue.parse(body) } catch { throw APIError.invalidJSON(error.description) }
        guard case .object = json else { throw APIError.invalidBody("Request body must be a JSON object") }
        members = try json.members("variant", allowed: Variant.memberNames).reduce(into: [:]) { $0[$1.key] = $1.value }
        self.patching = patching
        if patching, members["id"] != nil { throw APIError.invalidParameter("id", "A variant's id is given by the service and cannot change") }
        // Checked alone first, so that a fault names the member (`prices[0][currency]`), not the product's list.
        _ = try variant(base: nil)
    }

    /// The id a create gives, if any.
    var id: String? { if case .string(let id) = members["id"] { id } else { nil } }

    /// The variant this body makes: on its own (a create), or over `base` (a patch: members given replace, `metadata`
    /// merges, `"sku": null` removes the SKU). Its own rules are checked; those against the product's options are
    /// the product's.
    func variant(base: Variant?) throws(APIError) -> Variant {
        do { return try made(base: base) } catch { throw Self.named(error) }
    }

    private func made(base: Variant?) throws(APIError) -> Variant {
        var object = members
        if let base {
            var merged = base
            if let metadata = members["metadata"] {
                switch metadata {
                case .null: merged.metadata = [:]
                case .object(let entries):
                    for (key, value) in entries {
                        switch value {
                        case .null: merged.metadata[key] = nil
                        case .string(let text): merged.metadata[key] = text
                        default: throw APIError.invalidParameter("metadata[\(key)]", "'metadata[\(key)]' must be a string or null, not \(value.typeName)")
                        }
                    }
                default: throw APIError.invalidParameter("metadata", "metadata must be an object or null, not \(metadata.typeName)")
                }
                object["metadata"] = nil
            }
            var parsed = try Variant(json: .object(object), param: "variant")
            parsed.id = base.id
            if members["sku"] == nil { parsed.sku = merged.sku }
            if members["options"] == nil { parsed.options = merged.options }
            if members["prices"] == nil { parsed.prices = merged.prices }
            if members["position"] == nil { parsed.position = merged.position }
            parsed.metadata = merged.metadata
            try parsed.validate(param: "variant")
            return parsed
        }
        let variant = try Variant(json: .object(object), param: "variant")
        try variant.validate(param: "variant")
        return variant
    }

    /// A fault named as the body's members (`prices[0][amount]`), not as the product's list.
    private static func named(_ error: APIError) -> APIError {
        var error = error
        if let param = error.param, param.hasPrefix("variant[") {
            let member = param.dropFirst("variant[".count)
            let close = member.firstIndex(of: "]") ?? member.endIndex
            error.param = String(member[..<close]) + String(member[close...].dropFirst())
        }
        return error
    }
}
