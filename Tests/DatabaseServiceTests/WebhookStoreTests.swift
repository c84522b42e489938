import Foundation
import Testing

@testable import DatabaseService
import Shared
import TestSupport

@Suite("Events and webhook deliveries, on SQLite and PostgreSQL")
struct WebhookStoreTests {
    private func endpoint(tenant: String, events: [String] = ["*"], createdMs: Int64 = Timestamp.nowMilliseconds()) -> StoredEndpoint {
        StoredEndpoint(
            id: WebhooksController<AppRequestContext>.newID(), tenant: tenant, url: "http://127.0.0.1:9/hook", enabledEvents: events,
            description: nil, status: .enabled, secret: WebhookSignature.generateSecret(), createdAt: Timestamp.now(), createdMs: createdMs)
    }

    /// Fans out until `count` changes have been read (on PostgreSQL a change shows once older transactions end).
    private func dispatch(_ store: any DataStore, count: Int) async throws {
        var read = 0
        let deadline = ContinuousClock.now + .seconds(30)
        while read < count, ContinuousClock.now < deadline {
            read += try await store.webhooks.dispatchEvents(limit: 100, nowMs: Timestamp.nowMilliseconds()) ?? 0
            if read < count { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(read == count)
    }

    @Test("events: types by what a write did, per tenant, oldest first, paged both ways", arguments: StoreBackend.available)
    func events(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            _ = try await store.products.apply([.upsert(tenant: "t", product: product("a")), .upsert(tenant: "u", product: product("b"))])
            _ = try await store.products.apply([.upsert(tenant: "t", product: product("a", version: 9, name: "Lamp 9"))])
            // A product first stored at a version above 1 (writes coalesced before they were sent) is still created.
            _ = try await store.products.apply([.upsert(tenant: "t", product: product("c", version: 7))])
            _ = try await store.products.delete(tenant: "t", id: "a", version: nil, deletedAt: Timestamp.now())
            var all = EventPage(events: [], hasMore: false)
            let deadline = ContinuousClock.now + .seconds(30)
            while all.events.count < 4, ContinuousClock.now < deadline {
                all = try await store.webhooks.events(tenant: "t", query: EventQuery())
            }
            #expect(all.events.map(\.eventType) == [.productCreated, .productUpdated, .productCreated, .productDeleted])
            #expect(all.events.map(\.id) == ["a", "a", "c", "a"] && !all.hasMore)
            let ids = all.events.map { EventID.make($0.cursor!) }
            #expect(ids == ids.sorted())
            #expect(all.events[3].eventJSON.contains(#""deleted":true"#))
            #expect(all.events[1].eventJSON.contains(#""name":"Lamp 9""#))

            let deleted = try await store.webhooks.events(tenant: "t", query: EventQuery(type: .productDeleted))
            #expect(deleted.events.map(\.id) == ["a"])
            let created = try await store.webhooks.events(tenant: "t", query: EventQuery(type: .productCreated))
            #expect(created.events.map(\.id) == ["a", "c"])
            let first = try await store.webhooks.events(tenant: "t", query: EventQuery(limit: 2))
            #expect(first.events.count == 2 && first.hasMore)
            let next = try await store.webhooks.events(tenant: "t", query: EventQuery(limit: 2, cursor: .startingAfter(first.events[1].cursor!)))
            #expect(next.events.map(\.eventType) == [.productCreated, .productDeleted] && !next.hasMore)
            let back = try await store.webhooks.events(tenant: "t", query: EventQuery(limit: 2, cursor: .endingBefore(all.events[3].cursor!)))
            #expect(back.events.map { $0.cursor! } == [all.events[1].cursor!, all.events[2].cursor!] && back.hasMore)
            #expect(try await store.webhooks.events(tenant: "u", query: EventQuery()).events.map(\.id) == ["b"])
        }
    }

    @Test("fan-out: one delivery per matching endpoint, only its tenant's and only changes after it was made", arguments: StoreBackend.available)
    func fanOut(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            _ = try await store.products.apply([.upsert(tenant: "t", product: product("before"))])
            try await dispatch(store, count: 1)
            let all = endpoint(tenant: "t")
            let deletes = endpoint(tenant: "t", events: ["product.deleted"])
            let other = endpoint(tenant: "u")
            for made in [all, deletes, other] { #expect(try await store.webhooks.createEndpoint(made)) }
            _ = try await store.products.apply([.upsert(tenant: "t", product: product("a"))])
            _ = try await store.products.delete(tenant: "t", id: "a", version: nil, deletedAt: Timestamp.now())
            try await dispatch(store, count: 2)
            #expect(try await store.webhooks.dispatchEvents(limit: 100, nowMs: Timestamp.nowMilliseconds()) == 0)

            let now = Timestamp.nowMilliseconds()
            #expect(Set(try await store.webhooks.dueEndpoints(nowMs: now, limit: 10)) == [all.id, deletes.id])
            let claimed = try #require(try await store.webhooks.claimDeliveries(endpointID: all.id, nowMs: now, leaseMs: 60_000, limit: 10))
            #expect(claimed.deliveries.map(\.eventType) == ["product.created", "product.deleted"])
            #expect(claimed.deliveries.allSatisfy { $0.attempt == 1 })
            #expect(claimed.endpoint.secret == all.secret)
            // Claimed: leased, so no one claims them again until the lease ends.
            #expect(try await store.webhooks.claimDeliveries(endpointID: all.id, nowMs: now, leaseMs: 60_000, limit: 10)?.deliveries.isEmpty == true)
            let again = try await store.webhooks.claimDeliveries(endpointID: all.id, nowMs: now + 60_001, leaseMs: 60_000, limit: 10)
            #expect(again?.deliveries.map(\.attempt) == [2, 2])
            let deleteOnly = try #require(try await store.webhooks.claimDeliveries(endpointID: deletes.id, nowMs: now, leaseMs: 60_000, limit: 10))
            #expect(deleteOnly.deliveries.map(\.eventType) == ["product.deleted"])
            #expect(try await store.webhooks.oldestPendingDeliveryMs() != nil)
        }
    }

    @Test("tries: retried on schedule, finished, listed; failing for long enough disables the endpoint", arguments: StoreBackend.available)
    func attempts(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            let target = endpoint(tenant: "t")
            #expect(try await store.webhooks.createEndpoint(target))
            _ = try await store.products.apply([.upsert(tenant: "t", product: product("a")), .upsert(tenant: "t", product: product("b"))])
            try await dispatch(store, count: 2)
            let now = Timestamp.nowMilliseconds()
            let claimed = try #require(try await store.webhooks.claimDeliveries(endpointID: target.id, nowMs: now, leaseMs: 60_000, limit: 10)).deliveries
            func record(_ delivery: ClaimedDelivery, succeeded: Bool, next: Int64?, at: Int64) -> AttemptRecord {
                AttemptRecord(
                    deliveryID: delivery.id, eventID: delivery.eventID, eventType: delivery.eventType, attempt: delivery.attempt,
                    succeeded: succeeded, responseCode: succeeded ? 200 : 500, latencyMs: 3, error: succeeded ? nil : "HTTP 500",
                    nextAttemptMs: next, attemptedAt: Timestamp.format(epochMilliseconds: at), attemptedMs: at)
            }
            let disabled = try await store.webhooks.recordAttempts(
                [record(claimed[0], succeeded: true, next: nil, at: now), record(claimed[1], succeeded: false, next: now + 5000, at: now)],
                endpointID: target.id, nowMs: now, disableAfterMs: 1000)
            #expect(!disabled, "a success in the batch means the endpoint is not failing")
            #expect(try await store.webhooks.dueEndpoints(nowMs: now + 100, limit: 10).isEmpty, "the failed one waits for its retry")
            let retry = try #require(try await store.webhooks.claimDeliveries(endpointID: target.id, nowMs: now + 5000, leaseMs: 60_000, limit: 10)).deliveries
            #expect(retry.map(\.id) == [claimed[1].id] && retry[0].attempt == 2)
            // Failing from now on: disabled once it has failed for longer than the limit.
            #expect(try await !store.webhooks.recordAttempts(
                [record(retry[0], succeeded: false, next: now + 10_000, at: now + 5000)], endpointID: target.id, nowMs: now + 5000, disableAfterMs: 10_000))
            let last = try #require(try await store.webhooks.claimDeliveries(endpointID: target.id, nowMs: now + 10_000, leaseMs: 60_000, limit: 10)).deliveries
            #expect(try await store.webhooks.recordAttempts(
                [record(last[0], succeeded: false, next: nil, at: now + 16_000)], endpointID: target.id, nowMs: now + 16_000, disableAfterMs: 10_000))
            #expect(try await store.webhooks.endpoint(tenant: "t", id: target.id)?.status == .disabled)
            #expect(try await store.webhooks.dueEndpoints(nowMs: now + 100_000, limit: 10).isEmpty)

            let listed = try await store.webhooks.attempts(tenant: "t", endpointID: target.id, limit: 10)
            #expect(listed.map(\.attempt) == [3, 2, 1, 1])
            #expect(listed.map(\.deliveryStatus) == ["failed", "pending", "pending", "succeeded"])
            #expect(try await store.webhooks.attempts(tenant: "u", endpointID: target.id, limit: 10).isEmpty, "another tenant sees none")
            // Re-enabling forgets the failures; deleting takes the deliveries and tries with it.
            var enabled = try #require(try await store.webhooks.endpoint(tenant: "t", id: target.id))
            enabled.status = .enabled
            #expect(try await store.webhooks.updateEndpoint(enabled, reenabled: true))
            #expect(try await store.webhooks.deleteEndpoint(tenant: "t", id: target.id))
            #expect(try await store.webhooks.attempts(tenant: "t", endpointID: target.id, limit: 10).isEmpty)
            #expect(try await !store.webhooks.deleteEndpoint(tenant: "t", id: target.id))
            #expect(try await store.webhooks.purgeDeliveries(before: Timestamp.nowMilliseconds() + 1) == 0)
        }
    }

    @Test("two stores over one database claim each delivery once", arguments: StoreBackend.available)
    func concurrentClaims(backend: StoreBackend) async throws {
        try await backend.withStore { store, reopen async throws in
            let target = endpoint(tenant: "t")
            #expect(try await store.webhooks.createEndpoint(target))
            _ = try await store.products.apply((0..<40).map { .upsert(tenant: "t", product: product("p\($0)")) })
            try await reopen { second in
                // Both dispatch at once: each change is fanned out once.
                async let first = store.webhooks.dispatchEvents(limit: 100, nowMs: Timestamp.nowMilliseconds())
                async let other = second.webhooks.dispatchEvents(limit: 100, nowMs: Timestamp.nowMilliseconds())
                let (read, readToo) = try await (first, other)
                try await dispatch(store, count: 40 - (read ?? 0) - (readToo ?? 0))
                var claimed: [Int64] = []
                let now = Timestamp.nowMilliseconds()
                for _ in 0..<10 {
                    async let a = store.webhooks.claimDeliveries(endpointID: target.id, nowMs: now, leaseMs: 60_000, limit: 3)
                    async let b = second.webhooks.claimDeliveries(endpointID: target.id, nowMs: now, leaseMs: 60_000, limit: 3)
                    claimed += try await (a?.deliveries ?? []).map(\.id) + (b?.deliveries ?? []).map(\.id)
                }
                #expect(claimed.count == 40 && Set(claimed).count == 40)
            }
        }
    }

    @Test("at most 16 endpoints per tenant", arguments: StoreBackend.available)
    func endpointLimit(backend: StoreBackend) async throws {
        try await backend.withStore { store, _ async throws in
            for _ in 0..<WebhookRules.maxEndpointsPerTenant { #expect(try await store.webhooks.createEndpoint(endpoint(tenant: "t"))) }
            #expect(try await !store.webhooks.createEndpoint(endpoint(tenant: "t")))
            #expect(try await store.webhooks.createEndpoint(endpoint(tenant: "u")))
            #expect(try await store.webhooks.endpoints(tenant: "t").count == WebhookRules.maxEndpointsPerTenant)
        }
    }
}
