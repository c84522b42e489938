import Hummingbird

// Products and pages go through `JSONWriter`, so both services write a product the same way (`id` first).
extension Product: ResponseGenerator {
    package func response(from request: Request, context: some RequestContext) -> Response {
        .json(buffer: json)
    }
}

extension ProductPage: ResponseGenerator {
    package func response(from request: Request, context: some RequestContext) -> Response {
        .json(buffer: json)
    }
}

extension WriteBatchResult: ResponseGenerator {
    package func response(from request: Request, context: some RequestContext) -> Response {
        .json(buffer: json)
    }
}

extension ChangePage: ResponseEncodable {}
extension ChangeHead: ResponseEncodable {}
extension WriterRegistration: ResponseEncodable {}
extension WriterBacklogList: ResponseEncodable {}
extension CoordinatedResult: ResponseEncodable {}
