import ArgumentParser
import Shared

/// `database-service keys`: API key management on the configured database.
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, list and revoke API keys.",
        subcommands: [Create.self, List.self, Revoke.self])

    /// `keys create --tenant T [--read-only]`: prints the new key, once.
    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an API key for a tenant and print it (shown only once).")

        @OptionGroup var storage: StorageOptions

        @Option(help: "The tenant the key acts for: 1 to 64 of a-z, 0-9, - and _.")
        var tenant: String

        @Flag(help: "The key may only read.")
        var readOnly = false

        func validate() throws {
            guard Tenant.isValid(tenant) else { throw ValidationError("--tenant: '\(tenant)' is not a valid tenant id (1 to 64 of a-z, 0-9, - and _)") }
        }

        func run() async throws {
            let scope: KeyGrant.Scope = readOnly ? .readOnly : .readWrite
            let tenant = tenant
            let created = try await storage.withStore { store in try await store.keys.createKey(tenant: tenant, scope: scope) }
            print("Created \(created.grant.id) for tenant \(tenant) (\(created.grant.scope.rawValue)). Store the key now; it is not shown again:")
            print(created.key)
        }
    }

    /// `keys list`: one line per key, never the key itself.
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List API keys: id, tenant, scope, created, last used, revoked.")

        @OptionGroup var storage: StorageOptions

        func run() async throws {
            let keys = try await storage.withStore { store in try await store.keys.keys() }
            if keys.isEmpty { print("No API keys: the Products Service runs open, as tenant 'default'.") }
            for key in keys {
                var line = "\(key.id)  tenant=\(key.tenant)  scope=\(key.scope.rawValue)  created=\(key.createdAt)"
                line += "  last_used=\(key.lastUsedAt ?? "never")"
                if let revoked = key.revokedAt { line += "  revoked=\(revoked)" }
                print(line)
            }
        }
    }

    /// `keys revoke KEY_ID`: the key stops working within seconds.
    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke an API key by its key_ id.")

        @OptionGroup var storage: StorageOptions

        @Argument(help: "The key's public id (key_...).")
        var keyID: String

        func run() async throws {
            let keyID = keyID
            guard try await storage.withStore({ store in try await store.keys.revokeKey(id: keyID) }) else {
                throw ValidationError("no active key \(keyID)")
            }
            print("Revoked \(keyID); the Products Service refuses it within 10 seconds.")
        }
    }
}
