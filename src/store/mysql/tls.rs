//! TLS to MySQL/MariaDB: the URL's `ssl-mode` and files, in MySQL's spelling
//! (`ssl-mode`, `ssl-ca`, `ssl-cert`, `ssl-key`) and SQLAlchemy's (`ssl_ca`,
//! `ssl_cert`, `ssl_key`, `ssl_check_hostname`, and mysqlclient's `ssl_mode`);
//! the files read and checked before connecting; the driver's options built
//! from them; PREFERRED's fallback; and a refused connection in words.
//!
//! mysql_async has no PREFERRED (its `ssl_opts` mean TLS or nothing) and its
//! VERIFY_CA is inert with this rustls (see [`VERIFY_CA_NAME`]): both are made
//! here.

use std::fmt;
use std::path::{Path, PathBuf};

use mysql_async::{Conn, OptsBuilder, SslOpts};

use crate::tls::{self, CaFile, ClientIdentity, Trust};

/// How much TLS a connection must have (MySQL's `--ssl-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plaintext.
    Disabled,
    /// TLS when the server offers it, its certificate unchecked; else plaintext.
    Preferred,
    /// TLS or no connection; the certificate unchecked.
    Required,
    /// TLS, the certificate signed by the CA; any host name.
    VerifyCa,
    /// TLS, the certificate signed by the CA and for the host name connected to.
    VerifyIdentity,
}

impl SslMode {
    const ALL: [(SslMode, &'static str); 5] = [
        (SslMode::Disabled, "DISABLED"),
        (SslMode::Preferred, "PREFERRED"),
        (SslMode::Required, "REQUIRED"),
        (SslMode::VerifyCa, "VERIFY_CA"),
        (SslMode::VerifyIdentity, "VERIFY_IDENTITY"),
    ];

    fn parse(text: &str) -> Option<SslMode> {
        Self::ALL
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(text))
            .map(|(mode, _)| *mode)
    }

    fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyIdentity)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::ALL
            .iter()
            .find(|(mode, _)| mode == self)
            .map_or("", |(_, name)| name);
        f.write_str(name)
    }
}

/// A file parameter of the URL: the spelling it was given in (named in every
/// message about it) and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileParameter {
    pub name: String,
    pub path: PathBuf,
}

/// The TLS settings of a MySQL URL, checked for sense but not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// What chose the mode when the URL gave none (`ssl_ca`, or the default).
    implied_by: Option<&'static str>,
    ca: Option<FileParameter>,
    identity: Option<(FileParameter, FileParameter)>,
}

impl Default for TlsSettings {
    /// No TLS parameter: PREFERRED, as MySQL's and MariaDB's own clients.
    fn default() -> Self {
        TlsSettings {
            mode: SslMode::Preferred,
            implied_by: Some("the default"),
            ca: None,
            identity: None,
        }
    }
}

/// The URL parameters this module reads, MySQL's spelling first.
const PARAMETERS: [(&str, &str); 4] = [
    ("ssl-mode", "ssl_mode"),
    ("ssl-ca", "ssl_ca"),
    ("ssl-cert", "ssl_cert"),
    ("ssl-key", "ssl_key"),
];

/// SQLAlchemy's switch between VERIFY_IDENTITY (the default with `ssl_ca`) and VERIFY_CA.
const CHECK_HOSTNAME: &str = "ssl_check_hostname";

/// Whether `key` is a URL parameter about TLS (one this module reads, or one it
/// must refuse by name rather than as unknown).
pub fn is_tls_parameter(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.starts_with("ssl") || key.starts_with("tls")
}

/// The TLS parameters of a URL, gathered in order, then judged together.
#[derive(Debug, Default)]
pub struct TlsParameters {
    given: Vec<(String, String)>,
}

impl TlsParameters {
    pub fn push(&mut self, key: &str, value: &str) {
        self.given.push((key.to_owned(), value.to_owned()));
    }

    /// The settings the parameters make, or why they make none. Messages
    /// name the parameters as written.
    pub fn settings(self) -> Result<TlsSettings, String> {
        let mut values: [Option<(String, String)>; 4] = Default::default();
        let mut check_hostname: Option<(String, bool)> = None;
        for (key, value) in self.given {
            let shown = crate::text::escape_untrusted(&key);
            if value.is_empty() {
                return Err(format!("{shown} is empty"));
            }
            if key == CHECK_HOSTNAME {
                if check_hostname.is_some() {
                    return Err(format!("{shown} is given twice"));
                }
                check_hostname = Some((
                    key,
                    parse_bool(&value).ok_or_else(|| {
                        format!(
                            "{shown}={:?} is not one of true, false, yes, no, on, off, 1, 0",
                            crate::text::escape_untrusted(&value)
                        )
                    })?,
                ));
                continue;
            }
            let Some(slot) = PARAMETERS
                .iter()
                .position(|(mysql, sqlalchemy)| key == *mysql || key == *sqlalchemy)
            else {
                return Err(format!(
                    "{shown} is not a TLS parameter decnet-reconcile knows (it knows ssl-mode, \
                     ssl-ca, ssl-cert and ssl-key, or SQLAlchemy's ssl_ca, ssl_cert, ssl_key and \
                     ssl_check_hostname; a CA directory is not read: give the CA certificates in \
                     one file as ssl-ca)"
                ));
            };
            if let Some((earlier, _)) = &values[slot] {
                return Err(format!(
                    "{shown} is given twice (also as {})",
                    crate::text::escape_untrusted(earlier)
                ));
            }
            values[slot] = Some((key, value));
        }
        let [mode, ca, cert, key] = values;
        let file = |given: Option<(String, String)>| {
            given.map(|(name, path)| FileParameter {
                name,
                path: PathBuf::from(path),
            })
        };
        let (ca, cert, key) = (file(ca), file(cert), file(key));
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(cert), None) => {
                return Err(format!(
                    "{} is given without ssl-key: a client certificate needs its key",
                    cert.name
                ))
            }
            (None, Some(key)) => {
                return Err(format!(
                    "{} is given without ssl-cert: a client key needs its certificate",
                    key.name
                ))
            }
        };
        let explicit = match mode {
            Some((name, value)) => Some(SslMode::parse(&value).ok_or_else(|| {
                format!(
                    "{name}={:?} is not one of DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY",
                    crate::text::escape_untrusted(&value)
                )
            })?),
            None => None,
        };
        let (mode, implied_by) = match (explicit, &check_hostname, &ca) {
            (Some(_), Some((name, _)), _) => {
                return Err(format!(
                    "{name} and ssl-mode are both given: with ssl-mode, say VERIFY_CA or VERIFY_IDENTITY instead"
                ))
            }
            (Some(mode), None, _) => (mode, None),
            (None, Some((name, _)), None) => {
                return Err(format!(
                    "{name} is given without ssl_ca: there is no certificate check to turn the host name check on or off in"
                ))
            }
            (None, Some((_, false)), Some(_)) => (SslMode::VerifyCa, Some(CHECK_HOSTNAME)),
            (None, _, Some(ca)) if ca.name == "ssl_ca" => (SslMode::VerifyIdentity, Some("ssl_ca")),
            (None, _, Some(_)) => (SslMode::VerifyIdentity, Some("ssl-ca")),
            (None, None, None) if identity.is_some() => (SslMode::Required, Some("ssl-cert")),
            (None, None, None) => return Ok(TlsSettings::default()),
        };
        let settings = TlsSettings {
            mode,
            implied_by,
            ca,
            identity,
        };
        settings.check()?;
        Ok(settings)
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

impl TlsSettings {
    /// Refuses settings that contradict themselves: a file that the mode would
    /// leave unused is a mistake to point out, not to guess around.
    fn check(&self) -> Result<(), String> {
        let mode = self.mode;
        match (&self.ca, &self.identity) {
            (Some(ca), _) if !mode.verifies() => Err(format!(
                "{} is given, but ssl-mode={mode} does not check the server's certificate, so it \
                 would go unused: say ssl-mode=VERIFY_IDENTITY (or VERIFY_CA), or drop {}",
                ca.name, ca.name
            )),
            (_, Some((cert, _))) if mode == SslMode::Disabled => Err(format!(
                "{} is given, but ssl-mode=DISABLED uses no TLS, so it would go unused",
                cert.name
            )),
            _ => Ok(()),
        }
    }

    /// `ssl-mode=X`, and what implied it when the URL did not say.
    pub fn describe(&self) -> String {
        match self.implied_by {
            Some("the default") => format!("ssl-mode={} (the default)", self.mode),
            Some(implied_by) => format!("ssl-mode={} (implied by {implied_by})", self.mode),
            None => format!("ssl-mode={}", self.mode),
        }
    }

    /// What the server's certificate is checked against, for messages.
    fn trust(&self) -> Trust<'_> {
        match &self.ca {
            Some(ca) => Trust::CaFile {
                setting: &ca.name,
                path: &ca.path,
            },
            None => Trust::System { setting: "ssl-ca" },
        }
    }
}

/// mysql_async skips a host-name mismatch (its `skip_domain_validation`) only
/// when rustls's error text contains `NotValidForName`, and rustls now says
/// "certificate not valid for name …". Verifying against this name makes the
/// text hold it: the chain and the dates are checked first (webpki checks the
/// name last), so only a name mismatch is skipped. The cost: this is the SNI
/// the server sees (MySQL servers ignore it). Remove once a mysql_async
/// release has blackbeam/mysql_async#408; `tests/it/tls.rs` proves
/// VERIFY_CA against a certificate for another name either way.
const VERIFY_CA_NAME: &str = "NotValidForName.invalid";

/// The driver's TLS options for `settings`, the files read and checked first
/// (each error names its parameter and file). `None` for DISABLED. The
/// certificate is checked against `server_name`, the URL's host: the driver
/// itself is given the address `net` found for it, not the name.
pub fn ssl_opts(settings: &TlsSettings, server_name: &str) -> Result<Option<SslOpts>, String> {
    let identity = match &settings.identity {
        Some((cert, key)) => Some(
            ClientIdentity::read(&cert.name, &cert.path, &key.name, &key.path)
                .map_err(|err| err.to_string())?,
        ),
        None => None,
    };
    let with_identity = |opts: SslOpts| match &identity {
        Some(identity) => opts.with_client_identity(Some(mysql_async::ClientIdentity::new(
            identity.cert_pem().to_vec().into(),
            identity.key_pem().to_vec().into(),
        ))),
        None => opts,
    };
    let roots = || -> Result<SslOpts, String> {
        let roots = match &settings.ca {
            Some(ca) => vec![CaFile::read(&ca.name, &ca.path)
                .map_err(|err| err.to_string())?
                .pem()
                .to_vec()
                .into()],
            None => tls::system_roots()?
                .into_iter()
                .map(|der| der.to_vec().into())
                .collect(),
        };
        // Only these: not also the Mozilla roots mysql_async compiles in,
        // which are neither ssl-ca nor this system's trust store.
        Ok(SslOpts::default()
            .with_root_certs(roots)
            .with_disable_built_in_roots(true))
    };
    let opts = match settings.mode {
        SslMode::Disabled => return Ok(None),
        SslMode::Preferred | SslMode::Required => SslOpts::default()
            .with_danger_accept_invalid_certs(true)
            .with_danger_tls_hostname_override(Some(server_name.to_owned())),
        SslMode::VerifyCa => roots()?
            .with_danger_skip_domain_validation(true)
            .with_danger_tls_hostname_override(Some(VERIFY_CA_NAME)),
        SslMode::VerifyIdentity => {
            roots()?.with_danger_tls_hostname_override(Some(server_name.to_owned()))
        }
    };
    Ok(Some(with_identity(opts)))
}

/// How a connection ended up, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    Tls,
    /// PREFERRED against a server that offers no TLS.
    PlaintextFallback,
    Plaintext,
}

/// Connects with `ssl` (from [`ssl_opts`]); under PREFERRED, again without TLS
/// when the server offers none. That refusal comes with the server's greeting,
/// before anything of ours is sent, so no credential crosses in the clear on
/// the first attempt.
pub async fn connect(
    opts: OptsBuilder,
    ssl: Option<SslOpts>,
    mode: SslMode,
) -> mysql_async::Result<(Conn, Negotiated)> {
    let Some(ssl) = ssl else {
        return Ok((Conn::new(opts).await?, Negotiated::Plaintext));
    };
    match Conn::new(opts.clone().ssl_opts(ssl)).await {
        Ok(conn) => Ok((conn, Negotiated::Tls)),
        Err(err) if mode == SslMode::Preferred && offers_no_tls(&err) => {
            Ok((Conn::new(opts).await?, Negotiated::PlaintextFallback))
        }
        Err(err) => Err(err),
    }
}

fn offers_no_tls(err: &mysql_async::Error) -> bool {
    matches!(
        err,
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer)
    )
}

/// `ER_ACCESS_DENIED_ERROR`: also what MariaDB answers a plaintext client when
/// it requires TLS (`require_secure_transport`), where MySQL says so.
const ACCESS_DENIED: u16 = 1045;

/// Why the connection failed, in words, when TLS is part of why: the server
/// offers no TLS, its certificate was refused (rustls's reason), or it denied a
/// plaintext login (perhaps for want of TLS). `None` when TLS has no part in it.
pub fn explain(err: &mysql_async::Error, settings: &TlsSettings) -> Option<String> {
    let mode = settings.describe();
    if offers_no_tls(err) {
        return Some(format!("the server offers no TLS, and {mode} requires it"));
    }
    if let Some(refused) = tls::find_rustls_error(err) {
        let hint = match settings.implied_by {
            Some("the default") => {
                "; ssl-mode=DISABLED connects without TLS, where plaintext is acceptable"
            }
            _ => "",
        };
        return Some(format!(
            "TLS with the server failed under {mode}: {}{hint}",
            tls::explain(refused, settings.trust())
        ));
    }
    match err {
        mysql_async::Error::Server(server)
            if server.code == ACCESS_DENIED && settings.mode == SslMode::Disabled =>
        {
            Some(format!(
                "the server answered error {ACCESS_DENIED}, \"{}\" (the connection was plaintext \
                 under {mode}: a server that requires TLS answers so too)",
                crate::text::escape_untrusted(&server.message)
            ))
        }
        _ => None,
    }
}

/// The mode and the files, for the log line of a connection.
pub fn connected_words(settings: &TlsSettings, negotiated: Negotiated) -> String {
    let mode = settings.describe();
    match negotiated {
        Negotiated::Plaintext => format!("in plaintext under {mode}"),
        Negotiated::PlaintextFallback => {
            format!("in plaintext, the server offering no TLS, under {mode}")
        }
        Negotiated::Tls => match (settings.mode, &settings.ca) {
            (SslMode::Preferred | SslMode::Required, _) => {
                format!("over TLS, its certificate unchecked under {mode}")
            }
            (_, Some(ca)) => format!(
                "over TLS, its certificate checked against {} {} under {mode}",
                ca.name,
                shown(&ca.path)
            ),
            (_, None) => {
                format!("over TLS, its certificate checked against this system's CAs under {mode}")
            }
        },
    }
}

fn shown(path: &Path) -> String {
    crate::text::escape_untrusted(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<TlsSettings, String> {
        let mut parameters = TlsParameters::default();
        for (key, value) in pairs {
            parameters.push(key, value);
        }
        parameters.settings()
    }

    fn mode_of(pairs: &[(&str, &str)]) -> String {
        settings(pairs)
            .map(|settings| settings.describe())
            .unwrap_or_else(|err| err)
    }

    #[test]
    fn no_parameter_is_preferred_by_default() {
        assert_eq!(mode_of(&[]), "ssl-mode=PREFERRED (the default)");
    }

    #[test]
    fn every_mode_is_read_in_both_spellings_and_any_case() {
        for (text, mode) in [
            ("disabled", "DISABLED"),
            ("Preferred", "PREFERRED"),
            ("REQUIRED", "REQUIRED"),
            ("verify_ca", "VERIFY_CA"),
            ("VERIFY_IDENTITY", "VERIFY_IDENTITY"),
        ] {
            for key in ["ssl-mode", "ssl_mode"] {
                assert_eq!(mode_of(&[(key, text)]), format!("ssl-mode={mode}"));
            }
        }
        assert_eq!(
            mode_of(&[("ssl-mode", "VERIFY-CA")]),
            "ssl-mode=\"VERIFY-CA\" is not one of DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY"
        );
    }

    #[test]
    fn sqlalchemy_spellings_imply_the_mode_as_pymysql_reads_them() {
        assert_eq!(
            mode_of(&[("ssl_ca", "/ca.pem")]),
            "ssl-mode=VERIFY_IDENTITY (implied by ssl_ca)"
        );
        assert_eq!(
            mode_of(&[("ssl-ca", "/ca.pem")]),
            "ssl-mode=VERIFY_IDENTITY (implied by ssl-ca)"
        );
        assert_eq!(
            mode_of(&[("ssl_ca", "/ca.pem"), ("ssl_check_hostname", "false")]),
            "ssl-mode=VERIFY_CA (implied by ssl_check_hostname)"
        );
        assert_eq!(
            mode_of(&[("ssl_ca", "/ca.pem"), ("ssl_check_hostname", "True")]),
            "ssl-mode=VERIFY_IDENTITY (implied by ssl_ca)"
        );
        assert_eq!(
            mode_of(&[("ssl_cert", "/c.pem"), ("ssl_key", "/c.key")]),
            "ssl-mode=REQUIRED (implied by ssl-cert)"
        );
    }

    #[test]
    fn contradictions_are_refused_by_name() {
        for (pairs, message) in [
            (
                &[("ssl-mode", "REQUIRED"), ("ssl-ca", "/ca.pem")][..],
                "ssl-ca is given, but ssl-mode=REQUIRED does not check the server's certificate, \
                 so it would go unused: say ssl-mode=VERIFY_IDENTITY (or VERIFY_CA), or drop ssl-ca",
            ),
            (
                &[("ssl_mode", "PREFERRED"), ("ssl_ca", "/ca.pem")][..],
                "ssl_ca is given, but ssl-mode=PREFERRED does not check the server's certificate, \
                 so it would go unused: say ssl-mode=VERIFY_IDENTITY (or VERIFY_CA), or drop ssl_ca",
            ),
            (
                &[("ssl-mode", "DISABLED"), ("ssl-cert", "/c"), ("ssl-key", "/k")][..],
                "ssl-cert is given, but ssl-mode=DISABLED uses no TLS, so it would go unused",
            ),
            (
                &[("ssl-cert", "/c")][..],
                "ssl-cert is given without ssl-key: a client certificate needs its key",
            ),
            (
                &[("ssl_key", "/k")][..],
                "ssl_key is given without ssl-cert: a client key needs its certificate",
            ),
            (
                &[("ssl-ca", "/a"), ("ssl_ca", "/b")][..],
                "ssl_ca is given twice (also as ssl-ca)",
            ),
            (&[("ssl-ca", "")][..], "ssl-ca is empty"),
            (
                &[("ssl_check_hostname", "false")][..],
                "ssl_check_hostname is given without ssl_ca: there is no certificate check to \
                 turn the host name check on or off in",
            ),
            (
                &[("ssl_check_hostname", "maybe"), ("ssl_ca", "/a")][..],
                "ssl_check_hostname=\"maybe\" is not one of true, false, yes, no, on, off, 1, 0",
            ),
            (
                &[("ssl-mode", "VERIFY_CA"), ("ssl_check_hostname", "false"), ("ssl_ca", "/a")][..],
                "ssl_check_hostname and ssl-mode are both given: with ssl-mode, say VERIFY_CA or \
                 VERIFY_IDENTITY instead",
            ),
        ] {
            assert_eq!(mode_of(pairs), message, "{pairs:?}");
        }
    }

    #[test]
    fn tls_parameters_it_does_not_read_are_refused_by_name() {
        for key in ["ssl_capath", "ssl-cipher", "tls-version", "ssl_verify_cert"] {
            assert!(is_tls_parameter(key), "{key}");
            let err = settings(&[(key, "x")]).expect_err(key);
            assert!(
                err.starts_with(&format!(
                    "{key} is not a TLS parameter decnet-reconcile knows"
                )),
                "{err}"
            );
        }
        assert!(!is_tls_parameter("charset"));
    }

    #[test]
    fn verify_modes_without_a_ca_trust_the_system_store() {
        let settings = settings(&[("ssl-mode", "VERIFY_IDENTITY")]).expect("valid");
        assert!(matches!(
            settings.trust(),
            Trust::System { setting: "ssl-ca" }
        ));
    }

    #[test]
    fn verify_ca_skips_only_the_name_through_the_name_it_verifies_against() {
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/testdata/ca.pem");
        let verify_ca = settings(&[("ssl-mode", "VERIFY_CA"), ("ssl-ca", ca)]).expect("valid");
        let opts = ssl_opts(&verify_ca, "db.example")
            .expect("readable")
            .expect("TLS");
        assert!(opts.skip_domain_validation());
        assert_eq!(opts.tls_hostname_override(), Some(VERIFY_CA_NAME));
        assert!(opts.disable_built_in_roots());
        let identity = settings(&[("ssl-mode", "VERIFY_IDENTITY"), ("ssl-ca", ca)]).expect("valid");
        let opts = ssl_opts(&identity, "db.example")
            .expect("readable")
            .expect("TLS");
        assert!(!opts.skip_domain_validation());
        // The URL's host, though the driver connects to an address of it.
        assert_eq!(opts.tls_hostname_override(), Some("db.example"));
    }

    #[test]
    fn files_are_read_before_connecting_and_named_in_errors() {
        let missing = settings(&[("ssl_ca", "/nonexistent/ca.pem")]).expect("valid");
        let err = ssl_opts(&missing, "db.example").expect_err("missing");
        assert!(
            err.starts_with("ssl_ca /nonexistent/ca.pem: cannot read it: "),
            "{err}"
        );
        let disabled = settings(&[("ssl-mode", "DISABLED")]).expect("valid");
        assert!(ssl_opts(&disabled, "db.example")
            .expect("nothing to read")
            .is_none());
    }
}
