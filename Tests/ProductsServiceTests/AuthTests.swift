import Foundation
import HTTPTypes
import Logging
import Testing

@testable import ProductsService
import Shared
import TestSupport

@Suite("Authentication")
struct AuthTests {
    let logger = Logger(label: "test")

    func headers(bearer key: String) -> HTTPFields { [.authorization: "Bearer " + key] }

    @Test("open while no key exists; once one does, every request needs one and acts for the key's tenant")
    func modes() async throws {
        let database = FakeDatabaseService()
        let authenticator = Authenticator(database: database, directory: nil, logger: logger)
        #expect(authenticator.mode == .unknown)
        #expect(try await authenticator.authenticate([:]) == nil, "no key anywhere: open, as default")
        #expect(authenticator.mode == .open)

        let key = database.addKey(tenant: "acme")
        let grant = try await authenticator.authenticate(headers(bearer: key))
        #expect(grant?.tenant == "acme" && grant?.scope == .readWrite)
        #expect(authenticator.mode == .enforced, "a valid key switches enforcement on at once")
        await #expect(throws: APIError.self) { try await authenticator.authenticate([:]) }
        #expect(try await authenticator.authenticate([.xAPIKey: key])?.tenant == "acme", "X-API-Key works too")
        for bad in ["Bearer sk_short", "Basic abc", "Bearer " + APIKey.generate()] {
            await #expect { try await authenticator.authenticate([.authorization: bad]) } throws: { error in
                (error as? APIError)?.status == .unauthorized && (error as? APIError)?.headers[.wwwAuthenticate] != nil
            }
        }
    }

    @Test("a flood of unknown keys never evicts a working one: verifications are bounded in bytes, per pool, least recently verified first")
    func verificationsBoundedInBytes() async throws {
        let database = FakeDatabaseService()
        let budget = 64 << 10
        // Time stands still: however long the flood takes on a slow machine, the working keys' verifications stay
        // fresh, so only an eviction could make them ask the Database Service again.
        let clock = ManualClock()
        let authenticator = Authenticator(
            database: database, directory: nil, logger: logger, verifications: KeyVerifications(budget: budget), clock: { clock.now })
        let keys = (0..<3).map { _ in database.addKey(tenant: "acme") }
        for key in keys { #expect(try await authenticator.authenticate(headers(bearer: key)) != nil) }
        // Unknown keys, each refused by the Database Service (the old cache was wiped whole at 10,000 entries).
        for _ in 0..<2_000 {
            await #expect(throws: APIError.self) { try await authenticator.authenticate(headers(bearer: APIKey.generate())) }
        }
        let figures = authenticator.verificationFigures
        #expect(figures.bytes <= budget)
        #expect(figures.count < 2_003, "the oldest unknown keys went")
        database.isDown = true
        for key in keys {
            #expect(try await authenticator.authenticate(headers(bearer: key)) != nil, "still verified, while the Database Service is down")
        }
    }

    @Test("a revoked key keeps working only while its verification is fresh; the Database Service down keeps it at most usableFor")
    func revocation() async throws {
        let database = FakeDatabaseService()
        let clock = ManualClock()
        let authenticator = Authenticator(
            database: database, directory: nil, logger: logger, freshFor: .seconds(5), usableFor: .seconds(10), clock: { clock.now })
        let key = database.addKey(tenant: "acme")
        #expect(try await authenticator.authenticate(headers(bearer: key)) != nil)
        database.removeKeys()
        clock.advance(by: .seconds(4))
        #expect(try await authenticator.authenticate(headers(bearer: key)) != nil, "cached while fresh")
        clock.advance(by: .seconds(2))
        await #expect { try await authenticator.authenticate(headers(bearer: key)) } throws: { error in
            (error as? APIError)?.status == .unauthorized
        }

        let other = database.addKey(tenant: "acme")
        #expect(try await authenticator.authenticate(headers(bearer: other)) != nil)
        database.isDown = true
        clock.advance(by: .seconds(6))
        #expect(try await authenticator.authenticate(headers(bearer: other)) != nil, "stale but within usableFor")
        clock.advance(by: .seconds(5))
        await #expect { try await authenticator.authenticate(headers(bearer: other)) } throws: { error in
            (error as? APIError)?.code == "auth_unavailable"
        }
    }

    @Test("a longer outage trust keeps verified keys working through an outage that long, asking once a second, and no longer; unknown keys are refused")
    func outageTrust() async throws {
        let database = FakeDatabaseService()
        let clock = ManualClock()
        let authenticator = Authenticator(
            database: database, directory: nil, logger: logger, usableFor: .seconds(3600), clock: { clock.now })
        let key = database.addKey(tenant: "acme")
        #expect(try await authenticator.authenticate(headers(bearer: key))?.tenant == "acme")
        database.isDown = true
        clock.advance(by: .seconds(1800))
        #expect(try await authenticator.authenticate(headers(bearer: key))?.tenant == "acme", "half an hour into the outage")
        // While the Database Service fails, requests do not each ask it: one probe a second at most.
        let asked = database.verifications
        for _ in 0..<50 { #expect(try await authenticator.authenticate(headers(bearer: key)) != nil) }
        #expect(database.verifications == asked)
        clock.advance(by: .seconds(2))
        for _ in 0..<50 { #expect(try await authenticator.authenticate(headers(bearer: key)) != nil) }
        #expect(database.verifications == asked + 1, "one probe after a second")
        let unseen = database.addKey(tenant: "acme")
        await #expect { try await authenticator.authenticate(headers(bearer: unseen)) } throws: { error in
            (error as? APIError)?.code == "auth_unavailable"
        }
        clock.advance(by: .seconds(1801))
        await #expect { try await authenticator.authenticate(headers(bearer: key)) } throws: { error in
            (error as? APIError)?.code == "auth_unavailable"
        }
    }

    @Test("the last mode seen survives a restart, so an outage at start does not open the service; --require-api-keys pins it")
    func persistedMode() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let database = FakeDatabaseService()
        _ = database.addKey(tenant: "acme")
        await Authenticator(database: database, directory: directory, logger: logger).refreshMode()
        database.isDown = true
        let restarted = Authenticator(database: database, directory: directory, logger: logger)
        #expect(restarted.mode == .enforced)
        await #expect { try await restarted.authenticate([:]) } throws: { ($0 as? APIError)?.status == .unauthorized }
        let fresh = Authenticator(database: database, directory: nil, logger: logger)
        #expect(try await fresh.authenticate([:]) == nil, "never told otherwise: requests without a key are taken, as when open")
        let pinned = Authenticator(database: database, directory: nil, logger: logger, requireKeys: true)
        await #expect { try await pinned.authenticate([:]) } throws: { ($0 as? APIError)?.status == .unauthorized }
        database.isDown = false
        database.removeKeys()
        await pinned.refreshMode()
        #expect(pinned.mode == .enforced, "--require-api-keys never opens")
    }

    @Test("token buckets: a burst, then the rate; keys are limited apart")
    func rateLimit() {
        let limiter = RateLimiter(rate: 10, burst: 3)
        let start = ContinuousClock.now
        #expect((0..<3).map { _ in limiter.consume("a", now: start) } == [nil, nil, nil])
        #expect(limiter.consume("a", now: start) == 1)
        #expect(limiter.consume("b", now: start) == nil)
        #expect(limiter.consume("a", now: start + .milliseconds(100)) == nil, "one token back after 1/rate")
        #expect(limiter.consume("a", now: start + .milliseconds(100)) != nil)
        #expect(RateLimiter(rate: 0, burst: 1).consume("a") == nil, "0 turns the limit off")
    }
}
