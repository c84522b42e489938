import Hummingbird

extension Product: ResponseEncodable {}
extension ProductPage: ResponseEncodable {}
extension WriteBatchResult: ResponseEncodable {}
