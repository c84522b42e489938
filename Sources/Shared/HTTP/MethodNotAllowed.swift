import HTTPTypes
import Hummingbird

/// A router wrapper that records each route it registers, so that a path served only under other methods answers 405.
package final class RouteRecorder<Context: RequestContext>: RouterMethods {
    package let router: Router<Context>
    package private(set) var routes: [(method: HTTPRequest.Method, path: String)] = []

    package init(_ router: Router<Context>) { self.router = router }

    @discardableResult
    package func on<Responder: HTTPResponder>(_ path: RouterPath, method: HTTPRequest.Method, responder: Responder) -> Self
    where Responder.Context == Context {
        routes.append((method, path.description))
        router.on(path, method: method, responder: responder)
        return self
    }

    @discardableResult
    package func add(middleware: any MiddlewareProtocol<Request, Response, Context>) -> Self {
        router.add(middleware: middleware)
        return self
    }

    /// Every route as `METHOD /path/{parameter}`, the way an OpenAPI document names its operations.
    package var operations: Set<String> {
        Set(routes.map { route in
            let segments = route.path.split(separator: "/").map { $0.first == ":" ? "{\($0.dropFirst())}" : String($0) }
            return "\(route.method.rawValue) /" + segments.joined(separator: "/")
        })
    }

    /// Adds the 405 middleware; call it after every route is registered, so it wraps only the not-found responder.
    package func addMethodNotAllowedHandling() {
        router.add(middleware: MethodNotAllowedMiddleware<Context>(routes: routes))
    }
}

/// Answers an unmatched request with 405 and an `Allow` header when its path exists under other methods.
package struct MethodNotAllowedMiddleware<Context: RequestContext>: RouterMiddleware {
    let table: [(segments: [Substring], methods: [HTTPRequest.Method])]

    package init(routes: [(method: HTTPRequest.Method, path: String)]) {
        var table: [(segments: [Substring], methods: [HTTPRequest.Method])] = []
        for route in routes {
            let segments = route.path.split(separator: "/")
            if let index = table.firstIndex(where: { $0.segments == segments }) {
                table[index].methods.append(route.method)
            } else {
                table.append((segments, [route.method]))
            }
        }
        self.table = table
    }

    package func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let allowed = allowedMethods(path: request.uri.path)
            guard !allowed.isEmpty else { throw APIError.routeNotFound }
            throw APIError.methodNotAllowed(allowed: allowed + [.options])
        }
    }

    func allowedMethods(path: String) -> [HTTPRequest.Method] {
        let requested = path.split(separator: "/")
        var methods: [HTTPRequest.Method] = []
        for entry in table where entry.segments.count == requested.count {
            let matches = zip(entry.segments, requested).allSatisfy { pattern, segment in
                pattern.first == "{" || pattern.first == ":" || pattern == segment
            }
            if matches { methods += entry.methods.filter { !methods.contains($0) } }
        }
        return methods
    }
}
