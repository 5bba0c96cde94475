//! TLS and passwords out of the environment (issue 18), against the TLS twins
//! of MariaDB and Redis that `scripts/services` runs: every `ssl-mode` against
//! a server with and without TLS, certificates that do not verify (another CA,
//! another name, expired), client certificates, the system's CAs, the wire
//! seen by tcpdump, and passwords from files and systemd credentials with
//! their precedence, never shown.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::fixture::{
    assert_events_lost, decky, figure, finish, tls_servers, Env, MariaDb, PrivateRedis, RedisKind,
    RedisServer, ScratchDatabase, SECRET,
};

const MODES: [&str; 5] = [
    "DISABLED",
    "PREFERRED",
    "REQUIRED",
    "VERIFY_CA",
    "VERIFY_IDENTITY",
];

/// `mysql://decnet_test:decnet_test@localhost:PORT/DB?QUERY`, and how the tool shows it.
fn mysql_url(port: u16, db: &str, query: &str) -> (String, String) {
    (
        format!("mysql://decnet_test:decnet_test@localhost:{port}/{db}{query}"),
        // The user's name is its password too, so it is masked as well.
        format!("mysql://***:***@localhost:{port}/{db}"),
    )
}

/// The query of `mode`, with the test CA for the modes that verify.
fn mode_query(mode: &str, ca: &Path) -> String {
    match mode {
        "VERIFY_CA" | "VERIFY_IDENTITY" => format!("?ssl-mode={mode}&ssl-ca={}", ca.display()),
        _ => format!("?ssl-mode={mode}"),
    }
}

/// The tool's debug line for a connection made, and its error for one refused.
fn connected(shown: &str, how: &str) -> String {
    format!("DEBUG connected to database {shown} {how}")
}

fn refused(shown: &str, why: &str) -> String {
    format!(
        "decnet-reconcile: error: cannot connect to database {shown}: {why}; nothing was written"
    )
}

/// Each mode against MariaDB without TLS, with TLS offered, and with TLS
/// required: plaintext only where the mode allows it, TLS wherever it is
/// offered and wanted, and a mode that needs TLS fails closed, naming the
/// server and the mode. Where a pass gets in, it writes the row.
#[test]
fn every_ssl_mode_against_servers_with_and_without_tls() {
    let servers = tls_servers();
    let ca = servers.ca();
    let env = Env::new();
    env.write_state(&[decky(&env.name("d"), &["ssh"])]);
    for server in [MariaDb::Plain, MariaDb::Tls, MariaDb::TlsRequired] {
        let port = servers.mysql_port(server);
        let db = ScratchDatabase::on(port, server != MariaDb::Plain, &scratch_name(&env, port));
        for mode in MODES {
            let (url, shown) = mysql_url(port, &db.name, &mode_query(mode, &ca));
            let checked = format!(
                "over TLS, its certificate checked against ssl-ca {} under ssl-mode={mode}",
                ca.display()
            );
            let unchecked = format!("over TLS, its certificate unchecked under ssl-mode={mode}");
            let (status, line) = match (server, mode) {
                (MariaDb::TlsRequired, "DISABLED") => (
                    1,
                    refused(
                        &shown,
                        "the server answered error 1045, \"Access denied for user …\" (the \
                         connection was plaintext under ssl-mode=DISABLED: a server that requires TLS \
                         answers so too)",
                    ),
                ),
                (_, "DISABLED") => (0, connected(&shown, "in plaintext under ssl-mode=DISABLED")),
                (MariaDb::Plain, "PREFERRED") => (
                    0,
                    connected(
                        &shown,
                        "in plaintext, the server offering no TLS, under ssl-mode=PREFERRED",
                    ),
                ),
                (MariaDb::Plain, _) => (
                    1,
                    refused(
                        &shown,
                        &format!("the server offers no TLS, and ssl-mode={mode} requires it"),
                    ),
                ),
                (_, "PREFERRED" | "REQUIRED") => (0, connected(&shown, &unchecked)),
                _ => (0, connected(&shown, &checked)),
            };
            env.test()
                .context(format!("{server:?} {mode}"))
                .args(["--db", &url, "-v"])
                .status(status)
                .stderr_lines([line])
                .run();
        }
        assert_eq!(db.rows().len(), 1, "{server:?}: the row is written");
    }
}

/// A database name for this env on the server at `port`.
fn scratch_name(env: &Env, port: u16) -> String {
    format!("{}_{port}", env.mysql_database)
}

/// A certificate signed by another CA, for another name, or expired: exit 1,
/// in plain words, naming the server and the mode; nothing written. A CA
/// the system does not trust, when no ssl-ca is given, likewise.
#[test]
fn a_certificate_that_does_not_verify_is_refused_in_plain_words() {
    let servers = tls_servers();
    let (ca, other) = (servers.ca(), servers.other_ca());
    let env = Env::new();
    env.write_state(&[decky(&env.name("d"), &["ssh"])]);
    let port = |server| servers.mysql_port(server);
    let cases = [
        (
            port(MariaDb::Tls),
            format!("?ssl-mode=VERIFY_IDENTITY&ssl-ca={}", other.display()),
            format!(
                "under ssl-mode=VERIFY_IDENTITY: its certificate is not signed by the CA in ssl-ca {}",
                other.display()
            ),
        ),
        (
            port(MariaDb::Tls),
            format!("?ssl-mode=VERIFY_CA&ssl-ca={}", other.display()),
            format!(
                "under ssl-mode=VERIFY_CA: its certificate is not signed by the CA in ssl-ca {}",
                other.display()
            ),
        ),
        (
            port(MariaDb::WrongName),
            format!("?ssl-mode=VERIFY_IDENTITY&ssl-ca={}", ca.display()),
            "under ssl-mode=VERIFY_IDENTITY: its certificate is for wrong-name.invalid, not localhost"
                .to_owned(),
        ),
        (
            port(MariaDb::WrongName),
            format!("?ssl_ca={}", ca.display()),
            "under ssl-mode=VERIFY_IDENTITY (implied by ssl_ca): its certificate is for wrong-name.invalid, \
             not localhost"
                .to_owned(),
        ),
        (
            port(MariaDb::Expired),
            format!("?ssl-mode=VERIFY_IDENTITY&ssl-ca={}", ca.display()),
            "under ssl-mode=VERIFY_IDENTITY: its certificate expired on 2020-01-02 00:00:00 UTC"
                .to_owned(),
        ),
        (
            port(MariaDb::Expired),
            format!("?ssl-mode=VERIFY_CA&ssl-ca={}", ca.display()),
            "under ssl-mode=VERIFY_CA: its certificate expired on 2020-01-02 00:00:00 UTC".to_owned(),
        ),
        (
            port(MariaDb::Tls),
            "?ssl-mode=VERIFY_IDENTITY".to_owned(),
            "under ssl-mode=VERIFY_IDENTITY: its certificate is not signed by a CA this system \
             trusts (name its CA with ssl-ca)"
                .to_owned(),
        ),
    ];
    for (port, query, why) in cases {
        let (url, shown) = mysql_url(port, "no_such_db", &query);
        env.test()
            .context(&query)
            .args(["--db", &url])
            .status(1)
            .stderr(format!(
                "{}\n",
                refused(&shown, &format!("TLS with the server failed {why}"))
            ))
            .run();
    }
}

/// VERIFY_CA checks the chain and the dates and not the name: mysql_async's
/// own switch for that is inert with this rustls, so the tool verifies against
/// a name whose mismatch it can skip (`store/mysql/tls.rs`). This guards that:
/// a crate update that breaks it fails here. REQUIRED takes any certificate,
/// expired too.
#[test]
fn verify_ca_accepts_a_certificate_for_another_name_and_required_any() {
    let servers = tls_servers();
    let ca = servers.ca();
    let env = Env::new();
    env.write_state(&[decky(&env.name("d"), &["ssh"])]);
    let wrong_name = servers.mysql_port(MariaDb::WrongName);
    let db = ScratchDatabase::on(wrong_name, false, &scratch_name(&env, wrong_name));
    for query in [
        format!("?ssl-mode=VERIFY_CA&ssl-ca={}", ca.display()),
        format!("?ssl_ca={}&ssl_check_hostname=false", ca.display()),
    ] {
        let (url, _) = mysql_url(wrong_name, &db.name, &query);
        env.test().context(&query).args(["--db", &url]).run();
    }
    assert_eq!(db.rows().len(), 1);
    let expired = servers.mysql_port(MariaDb::Expired);
    let db = ScratchDatabase::on(expired, false, &scratch_name(&env, expired));
    let (url, _) = mysql_url(expired, &db.name, "?ssl-mode=REQUIRED");
    env.test().args(["--db", &url]).run();
    assert_eq!(db.rows().len(), 1);
}

/// Without ssl-ca, VERIFY_* trusts this system's CAs (and only those: not the
/// roots compiled into mysql_async); without --redis-ca, so does Redis.
/// `SSL_CERT_FILE` points the system's store at the test CA here.
#[test]
fn without_a_ca_file_the_systems_cas_are_trusted() {
    let servers = tls_servers();
    let env = Env::on(crate::fixture::Backend::MySqlTls);
    let name = env.name("d");
    let port = servers.mysql_port(MariaDb::TlsRequired);
    let (url, shown) = mysql_url(port, &env.mysql_database, "?ssl-mode=VERIFY_IDENTITY");
    let out = env
        .test()
        .state(&[decky(&name, &["ssh"])])
        .env_var("SSL_CERT_FILE", servers.ca())
        .args(["--db", &url, "-v"])
        .bus_by_environment()
        .args(["--redis-url", &env.redis.url, "--redis-timeout", "1"])
        .args(["--output", "json"])
        .events([(&name, "inserted")])
        .stderr_lines([connected(
            &shown,
            "over TLS, its certificate checked against this system's CAs under ssl-mode=VERIFY_IDENTITY",
        )])
        .run();
    assert_eq!(out.json()["published"], 1, "delivered over TLS");
    assert_eq!(env.rows().len(), 1);
}

/// The user that must present a certificate signed by the test CA gets in with
/// ssl-cert and ssl-key (an EC key in PKCS#8, which mysql_async 0.36 could not
/// read, and an RSA key in PKCS#1), and not without them; a key file that is
/// not there is named.
#[test]
fn a_client_certificate_logs_in_the_user_that_requires_one() {
    let servers = tls_servers();
    let (ca, (cert, key)) = (servers.ca(), servers.client());
    let env = Env::new();
    env.write_state(&[decky(&env.name("d"), &["ssh"])]);
    let port = servers.mysql_port(MariaDb::Tls);
    let db = ScratchDatabase::on(port, true, &scratch_name(&env, port));
    let user = servers.x509_user();
    let url = |query: &str| {
        format!(
            "mysql://{user}:decnet_test@localhost:{port}/{}?ssl-mode=VERIFY_IDENTITY&ssl-ca={}{query}",
            db.name,
            ca.display()
        )
    };
    let shown = format!("mysql://{user}:***@localhost:{port}/{}", db.name);
    for (cert, key) in [(cert.clone(), key), servers.client_rsa()] {
        env.test()
            .context(key.display())
            .args([
                "--db",
                &url(&format!(
                    "&ssl-cert={}&ssl-key={}",
                    cert.display(),
                    key.display()
                )),
            ])
            .run();
    }
    assert_eq!(db.rows().len(), 1);
    env.test()
        .args(["--db", &url("")])
        .status(1)
        .stderr_lines([refused(
            &shown,
            &format!("the server answered error 1045, \"Access denied for user '{user}'@…\""),
        )])
        .run();
    env.test()
        .args([
            "--db",
            &url(&format!(
                "&ssl-cert={}&ssl-key=/nonexistent.key",
                cert.display()
            )),
        ])
        .status(1)
        .stderr_lines([refused(
            &shown,
            "ssl-key /nonexistent.key: cannot read it: No such file or directory (os error 2)",
        )])
        .run();
}

/// On Redis a certificate that does not verify is a bus fault like any other:
/// the database converges, the warning says why in plain words and counts the
/// events lost. So is a rediss:// URL to a Redis without TLS (which never
/// answers a TLS greeting).
#[test]
fn a_redis_certificate_that_does_not_verify_loses_the_events_not_the_pass() {
    let servers = tls_servers();
    let (ca, other) = (servers.ca(), servers.other_ca());
    let port = |kind| servers.redis_port(kind);
    let cases = [
        (
            port(RedisKind::Tls),
            Some(other.clone()),
            format!(
                "TLS: its certificate is not signed by the CA in --redis-ca {}",
                other.display()
            ),
        ),
        (
            port(RedisKind::WrongName),
            Some(ca.clone()),
            "TLS: its certificate is for wrong-name.invalid, not localhost".to_owned(),
        ),
        (
            port(RedisKind::Expired),
            Some(ca.clone()),
            "TLS: its certificate expired on 2020-01-02 00:00:00 UTC".to_owned(),
        ),
        (
            port(RedisKind::Tls),
            None,
            "TLS: its certificate is not signed by a CA this system trusts (name its CA with \
             --redis-ca)"
                .to_owned(),
        ),
        (
            port(RedisKind::Plain),
            Some(ca.clone()),
            "no answer within 1s, over TLS: is that port's Redis without TLS?".to_owned(),
        ),
    ];
    for (port, ca, why) in cases {
        let url = format!("rediss://:{SECRET}@localhost:{port}/0");
        let mut args = vec!["--redis-url".to_owned(), url, "--redis-timeout".to_owned()];
        args.push("1".to_owned());
        if let Some(ca) = &ca {
            args.extend(["--redis-ca".to_owned(), ca.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_events_lost(
            &Env::new(),
            &args,
            &[&format!(
                " WARN Redis at rediss://:***@localhost:{port}/0 failed ({why}): \
                 2 event(s) lost; the database is converged all the same"
            )],
        );
    }
}

/// The script that captures the loopback with tcpdump while the pass runs and
/// looks for the markers in what crossed it.
fn wire_check(ports: &[u16], markers: &[&str], expect_clear: bool) -> Vec<String> {
    let mut wrapper = vec![
        "bash".to_owned(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/wire-check").to_owned(),
    ];
    if expect_clear {
        wrapper.push("--expect-clear".to_owned());
    }
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    wrapper.extend([ports.join(","), markers.join(","), "--".to_owned()]);
    wrapper
}

/// With TLS on, neither the Redis password, nor the row's text, nor the
/// database's name crosses the loopback in the clear (tcpdump on the ports of
/// the pass); the same pass in plaintext shows every marker, which proves the
/// capture could see them. (MariaDB's native authentication sends a scramble,
/// never the password, even in plaintext.)
#[test]
fn no_password_or_row_text_crosses_the_wire_with_tls_on() {
    for tls in [true, false] {
        let env = Env::on(match tls {
            true => crate::fixture::Backend::MySqlTls,
            false => crate::fixture::Backend::MySql,
        });
        let tag = uuid_tag();
        let (name, password) = (format!("wm-{tag}"), format!("wp-{tag}"));
        let redis = PrivateRedis::with(Some(&password), tls);
        let server = redis.server_with_password();
        let mysql_port = match tls {
            true => tls_servers().mysql_port(MariaDb::TlsRequired),
            false => tls_servers().mysql_port(MariaDb::Plain),
        };
        let markers = [
            name.as_str(),
            password.as_str(),
            env.mysql_database.as_str(),
        ];
        let verdict = match tls {
            true => "wire-check: no marker in the clear",
            false => "wire-check: every marker is in the clear, as expected",
        };
        let out = env
            .test()
            .context(if tls { "TLS" } else { "plaintext" })
            .state(&[decky(&name, &["ssh"])])
            .redis_on(server)
            .args(["--output", "json"])
            .wrapped_in(wire_check(&[mysql_port, redis.port], &markers, !tls))
            .stderr_lines([
                format!(
                    "wire-check: … packets on port(s) {mysql_port},{}",
                    redis.port
                ),
                verdict.to_owned(),
            ])
            .run();
        assert_eq!(out.json()["published"], 1, "the event went out");
        assert_eq!(env.rows().len(), 1, "the row went in");
    }
}

/// A short id unique to this run, for markers.
fn uuid_tag() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos()
    )
}

/// A password file holding `password` and a line end, with `mode`.
fn password_file(dir: &Path, name: &str, password: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{password}\n")).expect("write the password file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

/// `$CREDENTIALS_DIRECTORY` as systemd makes it, holding `name` = `password`.
fn credentials_directory(env: &Env, name: &str, password: &str) -> PathBuf {
    let dir = env.dir.path().join("credentials");
    std::fs::create_dir_all(&dir).expect("mkdir");
    password_file(&dir, name, password, 0o400);
    dir
}

/// The env's database URL without its password (the file gives it).
fn without_password(env: &Env) -> String {
    env.mysql_url()
        .replacen("decnet_test:decnet_test@", "decnet_test@", 1)
}

/// The DB's password from `DECNET_DB_PASSWORD_FILE`, or from the systemd
/// credential `db-password`: the pass logs in with it, and a wrong one in the
/// file is what the server refuses (so the file is what was used).
#[test]
fn the_db_password_comes_from_a_file_or_a_systemd_credential() {
    let env = Env::mysql();
    let url = without_password(&env);
    let right = password_file(env.dir.path(), "right", "decnet_test", 0o600);
    env.test()
        .state(&[decky(&env.name("a"), &["ssh"])])
        .without("--db")
        .args(["--db", &url])
        .env_var("DECNET_DB_PASSWORD_FILE", &right)
        .stdout_ends_with("inserted=1 deleted=0 updated=0\n")
        .run();
    env.test()
        .state(&[decky(&env.name("b"), &["ssh"])])
        .without("--db")
        .args(["--db", &url])
        .env_var(
            "CREDENTIALS_DIRECTORY",
            credentials_directory(&env, "db-password", "decnet_test"),
        )
        .stdout_ends_with("inserted=1 deleted=1 updated=0\n")
        .run();
    let wrong = password_file(env.dir.path(), "wrong", "not-the-password", 0o600);
    env.test()
        .without("--db")
        .args(["--db", &url])
        .env_var("DECNET_DB_PASSWORD_FILE", &wrong)
        .status(1)
        .stderr_lines([format!(
            "decnet-reconcile: error: cannot connect to database mysql://decnet_test@127.0.0.1:3306/{}: \
             the server answered error 1045, \"Access denied for user 'decnet_test'@'localhost' \
             (using password: YES)\"; nothing was written",
            env.mysql_database
        )])
        .run();
}

/// Precedence line 1: the URL's password, even with a file and a credential
/// set (neither is read; each gets a warning).
#[test]
fn precedence_1_the_url_password_comes_before_files_and_credentials() {
    let env = Env::mysql();
    let wrong = password_file(env.dir.path(), "wrong", "not-the-password", 0o600);
    let credentials = credentials_directory(&env, "db-password", "not-the-password");
    env.test()
        .state(&[decky(&env.name("a"), &["ssh"])])
        .env_var("DECNET_DB_PASSWORD_FILE", &wrong)
        .env_var("CREDENTIALS_DIRECTORY", &credentials)
        .stderr_lines([
            format!(
                " WARN DECNET_DB_PASSWORD_FILE {} is set but not used: the password in the URL \
                 comes first",
                wrong.display()
            ),
            format!(
                " WARN the systemd credential db-password ({}) is set but not used: the \
                 password in the URL comes first",
                credentials.join("db-password").display()
            ),
        ])
        .run();
    assert_eq!(env.rows().len(), 1);
}

/// DECNET's variables for the database in parts, with `password` as DECNET's
/// `DECNET_DB_PASSWORD`.
fn decnet_parts<'e>(env: &'e Env, password: &str) -> crate::fixture::Test<'e> {
    env.test()
        .without("--db")
        .env_var("DECNET_DB_TYPE", "mysql")
        .env_var("DECNET_DB_HOST", "127.0.0.1")
        .env_var("DECNET_DB_NAME", &env.mysql_database)
        .env_var("DECNET_DB_USER", "decnet_test")
        .env_var("DECNET_DB_PASSWORD", password)
}

/// Precedence line 2: a password file, or the systemd credential, comes
/// before DECNET's `DECNET_DB_PASSWORD` (which is wrong here, and unread);
/// both a file and a credential is an error naming both.
#[test]
fn precedence_2_a_file_or_a_credential_comes_before_decnets_variable() {
    let env = Env::mysql();
    let right = password_file(env.dir.path(), "right", "decnet_test", 0o600);
    let credentials = credentials_directory(&env, "db-password", "decnet_test");
    decnet_parts(&env, "not-the-password")
        .state(&[decky(&env.name("a"), &["ssh"])])
        .env_var("DECNET_DB_PASSWORD_FILE", &right)
        .stderr_lines([format!(
            " WARN DECNET_DB_PASSWORD is set but not used: the password in \
             DECNET_DB_PASSWORD_FILE {} comes first",
            right.display()
        )])
        .run();
    decnet_parts(&env, "not-the-password")
        .state(&[decky(&env.name("b"), &["ssh"])])
        .env_var("CREDENTIALS_DIRECTORY", &credentials)
        .stderr_lines([format!(
            " WARN DECNET_DB_PASSWORD is set but not used: the password in the systemd \
             credential db-password ({}) comes first",
            credentials.join("db-password").display()
        )])
        .run();
    assert_eq!(env.names_of(&env.host), [env.name("b")]);
    let before = env.rows();
    decnet_parts(&env, "not-the-password")
        .env_var("DECNET_DB_PASSWORD_FILE", &right)
        .env_var("CREDENTIALS_DIRECTORY", &credentials)
        .status(1)
        .stderr(format!(
            "decnet-reconcile: error: both DECNET_DB_PASSWORD_FILE {} and the systemd \
             credential db-password ({}) hold a password; keep one of them\n",
            right.display(),
            credentials.join("db-password").display()
        ))
        .run();
    assert_eq!(env.rows(), before, "nothing written");
}

/// Precedence line 3: DECNET's own variable, when nothing else gives one.
#[test]
fn precedence_3_decnets_variable_comes_last() {
    let env = Env::mysql();
    decnet_parts(&env, "decnet_test")
        .state(&[decky(&env.name("a"), &["ssh"])])
        .stdout_ends_with("inserted=1 deleted=0 updated=0\n")
        .run();
}

/// Redis's password from `DECNET_REDIS_PASSWORD_FILE` or the credential
/// `redis-password`, over TLS; the URL's own comes first. A Redis with a
/// password of its own proves which was used: the events are delivered.
#[test]
fn the_redis_password_comes_from_a_file_or_a_credential_after_the_url() {
    let env = Env::new();
    let password = format!("rp-{}", uuid_tag());
    let redis = PrivateRedis::with(Some(&password), true);
    let file = password_file(env.dir.path(), "redis", &password, 0o600);
    let delivered = |test: crate::fixture::Test<'_>, short: &str| {
        let out = test
            .state(&[decky(&env.name(short), &["ssh"])])
            .redis_on(redis.server())
            .args(["--output", "json"])
            .run();
        let report = out.json();
        assert_eq!(report["publish_failed"], 0, "{short}: {report}");
        assert!(report["published"].as_u64() > Some(0), "{short}: {report}");
        assert!(!out.stdout.contains(&password) && !out.stderr.contains(&password));
    };
    delivered(
        env.test().env_var("DECNET_REDIS_PASSWORD_FILE", &file),
        "file",
    );
    delivered(
        env.test().env_var(
            "CREDENTIALS_DIRECTORY",
            credentials_directory(&env, "redis-password", &password),
        ),
        "credential",
    );
    let wrong = password_file(env.dir.path(), "wrong", "not-the-password", 0o600);
    let with_password = redis.server_with_password();
    let out = env
        .test()
        .state(&[decky(&env.name("url"), &["ssh"])])
        .redis_on(with_password)
        .env_var("DECNET_REDIS_PASSWORD_FILE", &wrong)
        .args(["--output", "json"])
        .stderr_lines([format!(
            " WARN DECNET_REDIS_PASSWORD_FILE {} is set but not used: the password in the URL \
             comes first",
            wrong.display()
        )])
        .run();
    assert_eq!(
        out.json()["publish_failed"],
        0,
        "the URL's password was used"
    );
}

/// A password file every user may read is used, with a warning as ssh gives
/// for a private key; one shared with a group (`root:decnet 0640`) is not.
#[test]
fn a_password_file_open_to_every_user_gets_a_warning() {
    let env = Env::mysql();
    let url = without_password(&env);
    let open = password_file(env.dir.path(), "open", "decnet_test", 0o644);
    env.test()
        .state(&[decky(&env.name("a"), &["ssh"])])
        .without("--db")
        .args(["--db", &url])
        .env_var("DECNET_DB_PASSWORD_FILE", &open)
        .stderr_lines([format!(
            " WARN DECNET_DB_PASSWORD_FILE {} is open to every user on this machine (mode \
             0644); make it private (chmod o-rwx), as ssh requires of private keys",
            open.display()
        )])
        .run();
    let group = password_file(env.dir.path(), "group", "decnet_test", 0o640);
    env.test()
        .without("--db")
        .args(["--db", &url])
        .env_var("DECNET_DB_PASSWORD_FILE", &group)
        .run();
}

/// A password read from a file is masked like every other secret: here it is
/// also a decky's name, which every output would otherwise show (the table,
/// the JSON, the -vv logs). `--help` with the file set shows neither.
#[test]
fn a_password_read_from_a_file_is_masked_everywhere() {
    let env = Env::new();
    let password = format!("pw-{}", uuid_tag());
    let redis = PrivateRedis::with(Some(&password), false);
    let file = password_file(env.dir.path(), "redis", &password, 0o600);
    for output in ["table", "json"] {
        let log = env.dir.path().join(format!("{output}.log"));
        let out = env
            .test()
            .context(output)
            .state(&[decky(&password, &["ssh"])])
            .redis_on(redis.server())
            .env_var("DECNET_REDIS_PASSWORD_FILE", &file)
            .args(["--output", output, "-vv"])
            .stderr_to(std::fs::File::create(&log).expect("a log file"))
            .run();
        let logs = std::fs::read_to_string(&log).expect("the log");
        assert!(
            out.stdout.contains("***"),
            "{output}: the name is masked:\n{}",
            out.stdout
        );
        for text in [&out.stdout, &logs] {
            assert!(!text.contains(&password), "{output}: shown:\n{text}");
        }
        env.execute("DELETE FROM fleet_deckies");
    }
    let help = env
        .test()
        .env_var("DECNET_REDIS_PASSWORD_FILE", &file)
        .arg("--help")
        .run();
    assert!(!help.stdout.contains(&password));
}

/// Given by file, the password is in no variable of the running pass: its
/// `/proc/<pid>/environ` (and command line) hold the file's name, not its
/// content. The pass is held at the host's lock while it is read.
#[test]
fn a_password_given_by_file_is_not_in_the_process_environment() {
    let env = Env::mysql();
    env.write_state(&[decky(&env.name("a"), &["ssh"])]);
    let file = password_file(env.dir.path(), "db", "decnet_test", 0o600);
    let holder = env.hold_host_lock(&env.host);
    let child = env
        .test()
        .without("--db")
        .args(["--db", &without_password(&env), "--db-busy-timeout", "20"])
        .env_var("DECNET_DB_PASSWORD_FILE", &file)
        .command()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the pass");
    let read = |what: &str| {
        std::fs::read(format!("/proc/{}/{what}", child.id()))
            .unwrap_or_else(|err| panic!("/proc/{}/{what}: {err}", child.id()))
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).replace('\0', "\n");
    // Until the exec, /proc shows the test's own environment.
    let ours = format!("DECNET_DB_PASSWORD_FILE={}", file.display());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !text(&read("environ")).contains(&ours) {
        assert!(
            std::time::Instant::now() < deadline,
            "the pass never showed its environment"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let (environ, cmdline) = (read("environ"), read("cmdline"));
    for (what, bytes) in [("environ", &environ), ("cmdline", &cmdline)] {
        assert!(
            !text(bytes).contains("decnet_test:decnet_test")
                && !text(bytes).contains("PASSWORD=decnet_test"),
            "the password is in /proc/<pid>/{what}:\n{}",
            text(bytes)
        );
    }
    drop(holder);
    let run = finish(child).expect_status(0);
    figure("password_file_pass_ms", run.elapsed.as_millis());
    assert_eq!(env.rows().len(), 1);
}

/// `--redis-ca` names a CA for a rediss:// bus; with a plaintext one it is a
/// mistake to point out, and a CA file that is not one is named. Both stop
/// the pass before it writes anything.
#[test]
fn a_redis_ca_that_cannot_be_used_stops_the_pass() {
    let env = Env::new();
    env.write_state(&[decky(&env.name("a"), &["ssh"])]);
    let (_, key) = tls_servers().client();
    let tls = RedisServer::tls();
    env.test()
        .bus_by_environment()
        .args(["--redis-url", "redis://127.0.0.1:6379/0"])
        .env_var("DECNET_REDIS_CA", tls_servers().ca())
        .status(1)
        .stderr(
            "decnet-reconcile: error: DECNET_REDIS_CA is given, but the bus \
             redis://127.0.0.1:6379/0 is not TLS: write rediss:// for TLS, or drop \
             DECNET_REDIS_CA\n",
        )
        .run();
    env.test()
        .bus_by_environment()
        .args(["--redis-url", &tls.url, "--redis-ca"])
        .arg(&key)
        .status(1)
        .stderr(format!(
            "decnet-reconcile: error: --redis-ca {}: holds a private key, not a certificate \
             (-----BEGIN CERTIFICATE-----)\n",
            key.display()
        ))
        .run();
    assert!(env.rows().is_empty(), "nothing written");
}
