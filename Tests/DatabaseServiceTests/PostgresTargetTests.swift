import Foundation
import PostgresNIO
import Testing

@testable import DatabaseService
import Shared

@Suite("PostgreSQL URLs: libpq's multi-host form and target_session_attrs")
struct PostgresTargetTests {
    typealias Host = PostgresTarget.Host

    @Test("the URL pg_auto_failover hands out: hosts in order, the role wanted, the database")
    func multiHost() throws {
        let target = try PostgresTarget("postgres://app:s%40cret@h1:5432,h2:6432,[::1]:5433,h4/shop?target_session_attrs=read-write&sslmode=disable")
        #expect(target.hosts == [Host(name: "h1", port: 5432), Host(name: "h2", port: 6432), Host(name: "::1", port: 5433), Host(name: "h4", port: 5432)])
        #expect(target.user == "app")
        #expect(target.password == "s@cret")
        #expect(target.database == "shop")
        #expect(target.sessionAttributes == .readWrite)
        #expect(target.tls == nil && !target.requireTLS)
        #expect(!target.isSingleServer)
        #expect(target.hosts[2].description == "[::1]:5433")
    }

    @Test("a single host with no role asked for is one server to use as it is; defaults as libpq's")
    func singleHost() throws {
        let target = try PostgresTarget("postgresql://db.internal/products")
        #expect(target.hosts == [Host(name: "db.internal", port: 5432)])
        #expect(target.user == "postgres" && target.password == nil)
        #expect(target.sessionAttributes == .any && target.isSingleServer)
        #expect(target.tls?.certificateVerification == CertificateVerification.none && !target.requireTLS, "sslmode defaults to prefer")
        #expect(target.connectTimeout == .seconds(10))
        #expect(try PostgresTarget("postgres://db/x?target_session_attrs=read-write").isSingleServer == false, "one host is still checked for its role")
        #expect(try PostgresTarget("postgres://u@db").database == nil)
    }

    @Test("every target_session_attrs value libpq knows is accepted", arguments: PostgresTarget.SessionAttributes.allCases)
    func sessionAttributes(_ attributes: PostgresTarget.SessionAttributes) throws {
        #expect(try PostgresTarget("postgres://a,b/db?target_session_attrs=\(attributes.rawValue)").sessionAttributes == attributes)
    }

    @Test("which server each value takes, and when one in use must be replaced")
    func roles() {
        let primary = PostgresTarget.ServerRole(inRecovery: false, readOnly: false)
        let standby = PostgresTarget.ServerRole(inRecovery: true, readOnly: true)
        let readOnlyPrimary = PostgresTarget.ServerRole(inRecovery: false, readOnly: true)
        typealias A = PostgresTarget.SessionAttributes
        #expect(A.readWrite.accepts(primary, firstPass: false) && !A.readWrite.accepts(standby, firstPass: false) && !A.readWrite.accepts(readOnlyPrimary, firstPass: false))
        #expect(A.primary.accepts(readOnlyPrimary, firstPass: false) && !A.primary.accepts(standby, firstPass: false))
        #expect(A.standby.accepts(standby, firstPass: false) && !A.standby.accepts(primary, firstPass: false))
        #expect(A.readOnly.accepts(standby, firstPass: false) && A.readOnly.accepts(readOnlyPrimary, firstPass: false) && !A.readOnly.accepts(primary, firstPass: false))
        #expect(A.preferStandby.accepts(standby, firstPass: true) && !A.preferStandby.accepts(primary, firstPass: true))
        #expect(A.preferStandby.accepts(primary, firstPass: false), "with no standby, any server will do")
        #expect(A.any.accepts(standby, firstPass: false))
        // A demoted primary is replaced under read-write and primary; prefer-standby and any keep what they have.
        #expect(A.readWrite.outgrown(by: standby) && A.primary.outgrown(by: standby) && A.standby.outgrown(by: primary))
        #expect(!A.preferStandby.outgrown(by: primary) && !A.any.outgrown(by: standby) && !A.readWrite.outgrown(by: primary))
    }

    @Test("connect_timeout as libpq reads it: under 2 s counts as 2, zero or less waits for ever")
    func connectTimeout() throws {
        #expect(try PostgresTarget("postgres://h/db?connect_timeout=5").connectTimeout == .seconds(5))
        #expect(try PostgresTarget("postgres://h/db?connect_timeout=1").connectTimeout == .seconds(2))
        #expect(try PostgresTarget("postgres://h/db?connect_timeout=0").connectTimeout == .seconds(3600))
    }

    @Test("sslmode as libpq reads it: require encrypts without checking the certificate, verify-ca and verify-full check it")
    func sslModes() throws {
        func mode(_ value: String) throws -> (CertificateVerification?, Bool) {
            let target = try PostgresTarget("postgres://h/db?sslmode=\(value)")
            return (target.tls?.certificateVerification, target.requireTLS)
        }
        #expect(try mode("disable") == (nil, false))
        #expect(try mode("prefer") == (CertificateVerification.none, false))
        #expect(try mode("require") == (CertificateVerification.none, true))
        #expect(try mode("verify-ca") == (.noHostnameVerification, true))
        #expect(try mode("verify-full") == (.fullVerification, true))
    }

    @Test("a password from a secret file wins over the URL's")
    func passwordOverride() throws {
        #expect(try PostgresTarget("postgres://u:url@h1,h2/db", password: "file").password == "file")
        #expect(try PostgresTarget("postgres://u:url@h1,h2/db").password == "url")
    }

    @Test(
        "malformed URLs are refused at start, naming the setting, with the password hidden",
        arguments: [
            ("mysql://h/db", "is not a postgres://"),
            ("postgres://u:pw@/db", "a host that is not"),
            ("postgres://u:pw@h1,,h2/db", "a host that is not"),
            ("postgres://u:pw@h1:0/db", "a host that is not"),
            ("postgres://u:pw@h1:99999/db", "a host that is not"),
            ("postgres://u:pw@[::1/db", "a host that is not"),
            ("postgres://u:pw@h1/db?target_session_attrs=master", "target_session_attrs 'master'"),
            ("postgres://u:pw@h1/db?sslmode=sometimes", "sslmode 'sometimes'"),
            ("postgres://u:pw@h1/db?connect_timeout=soon", "connect_timeout 'soon'"),
        ])
    func refused(_ url: String, _ reason: String) {
        #expect {
            try PostgresTarget(url)
        } throws: { error in
            let message = "\(error)"
            return message.contains("--database (DATABASE)") && message.contains(reason) && !message.contains(":pw@")
        }
    }

    @Test("redaction hides the password of any URL form and leaves one without a password alone")
    func redaction() {
        #expect(PostgresTarget.redacted("postgres://u:secret@h1:5432,h2:5432/db?x=1") == "postgres://u:***@h1:5432,h2:5432/db?x=1")
        #expect(PostgresTarget.redacted("postgres://u@h1/db") == "postgres://u@h1/db")
        #expect(PostgresTarget.redacted("postgres://u:p@ss@h1/db") == "postgres://u:***@h1/db")
    }

    @Test("errors that say the server went away or became read-only make the pool look again; others do not")
    func suspicion() {
        #expect(PostgresPool.suggestsAnotherServer(code: .server, sqlState: "25006"), "cannot execute in a read-only transaction")
        #expect(PostgresPool.suggestsAnotherServer(code: .server, sqlState: "57P01"), "terminating connection due to administrator command")
        #expect(PostgresPool.suggestsAnotherServer(code: .server, sqlState: "08006"))
        #expect(!PostgresPool.suggestsAnotherServer(code: .server, sqlState: "23505"), "a unique violation is the statement's fault")
        #expect(!PostgresPool.suggestsAnotherServer(code: .server, sqlState: "40001"))
        #expect(PostgresPool.suggestsAnotherServer(code: .serverClosedConnection, sqlState: nil))
        #expect(PostgresPool.suggestsAnotherServer(code: .connectionError, sqlState: nil))
        #expect(!PostgresPool.suggestsAnotherServer(code: .queryCancelled, sqlState: nil))
        #expect(!PostgresPool.suggestsAnotherServer(CancellationError()))
    }
}
