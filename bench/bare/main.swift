import Hummingbird

/// The benchmark's outside reference: a bare Hummingbird server with no middleware, a static route, a route
/// answering one fixed product body, and a POST route that reads the request body and answers 201 with that
/// fixed product (what the framework alone costs a create). `bench/run` measures every route of the Products
/// Service as a ratio to it. Not shipped.
///
///     bare-hummingbird 8090
let port = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 8090
let live = ByteBuffer(string: #"{"status":"ok"}"#)
// The size of a typical product as the Products Service answers it (about 200 bytes).
let product = ByteBuffer(string: #"""
    {"id":"prod_01JDZ8Q4M9K6W3T7V2X5Y8B1C4","name":"Bench product","type":"bench","metadata":{"color":"red","size":"M"},"created_at":"2026-11-28T18:00:00.000Z","updated_at":"2026-11-28T18:00:00.000Z","version":1}
    """#)

let router = Router()
router.get("livez") { _, _ in
    Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: live))
}
router.get("products/{id}") { _, _ in
    Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: product))
}
router.post("products") { request, _ in
    _ = try await request.body.collect(upTo: 1 << 20)
    return Response(status: .created, headers: [.contentType: "application/json"], body: .init(byteBuffer: product))
}
let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "bare"))
try await app.runService()
