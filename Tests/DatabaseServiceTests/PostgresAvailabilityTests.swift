import Testing

@testable import DatabaseService

@Suite("PostgreSQL for the tests")
struct PostgresAvailabilityTests {
    /// Skipped, with this reason, when nothing asks for PostgreSQL; under `REQUIRE_POSTGRES=1` (CI, `scripts/test`)
    /// it runs and fails when no server is named or the one named does not answer.
    @Test(
        "when PostgreSQL is required (CI, scripts/test), TEST_POSTGRES_URL names a server that answers",
        .enabled(if: TestPostgres.required || TestPostgres.url != nil, "neither REQUIRE_POSTGRES=1 nor TEST_POSTGRES_URL is set"))
    func available() async throws {
        let url = try #require(TestPostgres.url, "REQUIRE_POSTGRES=1 but TEST_POSTGRES_URL is not set: PostgreSQL tests would be skipped")
        let store = try PostgresStore(url: url, logger: TestPostgres.logger, maximumConnections: 1)
        try await store.run { try await store.ping() }
    }
}
