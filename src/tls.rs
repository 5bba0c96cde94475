//! TLS material and verdicts shared by the MySQL and Redis connections: the CA
//! file and the client certificate and key, read and checked before any
//! connection (every error names the setting and the file), and rustls's
//! refusal of a server in plain words.
//!
//! Neither driver takes a rustls `ClientConfig` (mysql_async builds its own from
//! `SslOpts`, redis-rs from PEM bytes), so this module hands them checked bytes:
//! [`CaFile::pem`], [`ClientIdentity::cert_pem`] and [`ClientIdentity::key_pem`].

use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::{AlertDescription, CertificateError, InconsistentKeys};

use crate::regular_file::{self, ReadError};

/// A CA bundle runs to a few hundred kB (Debian's whole trust store is ~220 kB).
pub const MAX_PEM_FILE_BYTES: u64 = 1 << 20;

/// A PEM file that cannot be used as what it was given for.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("{setting} {}: cannot read it: {reason}", path.display())]
    Unreadable {
        setting: String,
        path: PathBuf,
        reason: ReadError,
    },
    #[error("{setting} {}: {problem}", path.display())]
    Unusable {
        setting: String,
        path: PathBuf,
        problem: String,
    },
    #[error("the key in {key_setting} {} does not belong to the certificate in {cert_setting} {}", key.display(), cert.display())]
    KeyMismatch {
        cert_setting: String,
        cert: PathBuf,
        key_setting: String,
        key: PathBuf,
    },
}

/// The certificates of a CA file (`ssl-ca`, `--redis-ca`), checked to be usable
/// as trust anchors.
#[derive(Clone)]
pub struct CaFile {
    path: PathBuf,
    pem: Vec<u8>,
    certificates: Vec<CertificateDer<'static>>,
}

impl CaFile {
    /// Reads `path`, given as `setting` (named in every error).
    pub fn read(setting: &str, path: &Path) -> Result<CaFile, TlsFileError> {
        let unusable = |problem: String| TlsFileError::Unusable {
            setting: setting.to_owned(),
            path: path.to_owned(),
            problem,
        };
        let pem = read_pem_file(setting, path)?;
        let sections = pem_sections(&pem).map_err(&unusable)?;
        let certificates: Vec<CertificateDer<'static>> = sections
            .iter()
            .filter(|(kind, _)| *kind == SectionKind::Certificate)
            .map(|(_, der)| CertificateDer::from(der.clone()))
            .collect();
        if certificates.is_empty() {
            return Err(unusable(no_certificate(&sections, &pem)));
        }
        let mut store = rustls::RootCertStore::empty();
        for (index, certificate) in certificates.iter().enumerate() {
            store.add(certificate.clone()).map_err(|err| {
                unusable(format!(
                    "certificate {} of {} is not usable as a CA: {}",
                    index + 1,
                    certificates.len(),
                    certificate_words(&err)
                ))
            })?;
        }
        Ok(CaFile {
            path: path.to_owned(),
            pem,
            certificates,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file as read: for redis-rs's `TlsCertificates::root_cert`, and
    /// mysql_async's `SslOpts::with_root_certs(vec![pem.into()])`.
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }

    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .field("certificates", &self.certificates.len())
            .finish()
    }
}

/// How a private key is written. mysql_async 0.36 reads only `Pkcs1Rsa`
/// (`-----BEGIN RSA PRIVATE KEY-----`); 0.37 and redis-rs read all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `RSA PRIVATE KEY`
    Pkcs1Rsa,
    /// `PRIVATE KEY` (what `openssl genpkey` writes)
    Pkcs8,
    /// `EC PRIVATE KEY`
    Sec1Ec,
}

/// A client certificate (`ssl-cert`) and its key (`ssl-key`), checked to belong
/// together. Prints without the key.
#[derive(Clone)]
pub struct ClientIdentity {
    cert_path: PathBuf,
    key_path: PathBuf,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    key_format: KeyFormat,
}

impl ClientIdentity {
    /// Reads the certificate chain (leaf first) and the key, each named by its
    /// setting in errors, and checks that the key is one rustls can sign with
    /// and is the certificate's.
    pub fn read(
        cert_setting: &str,
        cert_path: &Path,
        key_setting: &str,
        key_path: &Path,
    ) -> Result<ClientIdentity, TlsFileError> {
        let cert_unusable = |problem: String| TlsFileError::Unusable {
            setting: cert_setting.to_owned(),
            path: cert_path.to_owned(),
            problem,
        };
        let key_unusable = |problem: String| TlsFileError::Unusable {
            setting: key_setting.to_owned(),
            path: key_path.to_owned(),
            problem,
        };

        let cert_pem = read_pem_file(cert_setting, cert_path)?;
        let sections = pem_sections(&cert_pem).map_err(&cert_unusable)?;
        let chain: Vec<CertificateDer<'static>> = sections
            .iter()
            .filter(|(kind, _)| *kind == SectionKind::Certificate)
            .map(|(_, der)| CertificateDer::from(der.clone()))
            .collect();
        if chain.is_empty() {
            return Err(cert_unusable(no_certificate(&sections, &cert_pem)));
        }

        let key_pem = read_pem_file(key_setting, key_path)?;
        let sections = pem_sections(&key_pem).map_err(&key_unusable)?;
        let mut keys = sections.iter().filter_map(|(kind, der)| {
            let der = der.clone();
            match kind {
                SectionKind::RsaPrivateKey => {
                    Some((KeyFormat::Pkcs1Rsa, PrivateKeyDer::Pkcs1(der.into())))
                }
                SectionKind::PrivateKey => {
                    Some((KeyFormat::Pkcs8, PrivateKeyDer::Pkcs8(der.into())))
                }
                SectionKind::EcPrivateKey => {
                    Some((KeyFormat::Sec1Ec, PrivateKeyDer::Sec1(der.into())))
                }
                _ => None,
            }
        });
        let Some((key_format, key)) = keys.next() else {
            return Err(key_unusable(no_private_key(&key_pem)));
        };
        if keys.next().is_some() {
            return Err(key_unusable(
                "holds more than one private key; give a file with the one key".to_owned(),
            ));
        }

        let provider = rustls::crypto::ring::default_provider();
        let signing_key = provider.key_provider.load_private_key(key).map_err(|err| {
            key_unusable(format!("is not a private key this client can use: {err}"))
        })?;
        match rustls::sign::CertifiedKey::new(chain, signing_key).keys_match() {
            // Unknown: the key type cannot tell its public key; the server will judge.
            Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
                return Err(TlsFileError::KeyMismatch {
                    cert_setting: cert_setting.to_owned(),
                    cert: cert_path.to_owned(),
                    key_setting: key_setting.to_owned(),
                    key: key_path.to_owned(),
                })
            }
            Err(err) => {
                return Err(cert_unusable(format!(
                    "its first certificate does not parse: {}",
                    certificate_words(&err)
                )))
            }
        }
        Ok(ClientIdentity {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            cert_pem,
            key_pem,
            key_format,
        })
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// The certificate file as read (PEM).
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    /// The key file as read (PEM): a secret, only for handing to the driver.
    pub fn key_pem(&self) -> &[u8] {
        &self.key_pem
    }

    pub fn key_format(&self) -> KeyFormat {
        self.key_format
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("key_format", &self.key_format)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

fn read_pem_file(setting: &str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    regular_file::read(path, MAX_PEM_FILE_BYTES)
        .map(|(bytes, _)| bytes)
        .map_err(|reason| TlsFileError::Unreadable {
            setting: setting.to_owned(),
            path: path.to_owned(),
            reason,
        })
}

/// Every PEM section rustls knows, in order; a malformed one is an error.
fn pem_sections(pem: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>, String> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("is not valid PEM: {err}"))
}

fn no_certificate(sections: &[(SectionKind, Vec<u8>)], pem: &[u8]) -> String {
    let holds_a_key = sections.iter().any(|(kind, _)| {
        matches!(
            kind,
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
        )
    }) || contains(pem, b"PRIVATE KEY-----");
    if holds_a_key {
        "holds a private key, not a certificate (-----BEGIN CERTIFICATE-----)".to_owned()
    } else if !contains(pem, b"-----BEGIN ") {
        "holds no PEM certificate (-----BEGIN CERTIFICATE-----); a DER file converts with \
         `openssl x509 -inform der -in FILE -out FILE.pem`"
            .to_owned()
    } else {
        "holds no certificate (-----BEGIN CERTIFICATE-----)".to_owned()
    }
}

fn no_private_key(pem: &[u8]) -> String {
    if contains(pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        "holds an encrypted private key, and there is no passphrase to give; decrypt it with \
         `openssl pkey -in FILE -out FILE.plain` and keep that file private"
            .to_owned()
    } else if contains(pem, b"-----BEGIN CERTIFICATE-----") {
        "holds a certificate, not a private key (-----BEGIN PRIVATE KEY-----)".to_owned()
    } else {
        "holds no private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)"
            .to_owned()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// The CA certificates this system trusts, as rustls-native-certs finds them
/// (`SSL_CERT_FILE` / `SSL_CERT_DIR`, else Debian's `/etc/ssl/certs`): the
/// same store redis-rs reads for a `rediss://` URL without a CA file. An empty
/// store is an error, since nothing could verify against it.
pub fn system_roots() -> Result<Vec<CertificateDer<'static>>, String> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = match found.errors.first() {
            Some(err) => format!(" ({err})"),
            None => String::new(),
        };
        return Err(format!(
            "this system trusts no CA certificate{why}: install the ca-certificates package, \
             or name the server's CA with ssl-ca"
        ));
    }
    Ok(found.certs)
}

/// What the client trusted, to say what a certificate is "not signed by".
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// The CA file given as `setting`.
    CaFile { setting: &'a str, path: &'a Path },
    /// The system's trust store; `setting` is the option that would name a CA.
    System { setting: &'a str },
}

/// The first rustls error in `err`'s chain. Looks through the `Arc`s redis-rs
/// keeps errors in and the `io::Error`s tokio-rustls wraps them in, which
/// `source()` alone skips (`io::Error::source` is the wrapped error's source).
pub fn find_rustls_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(err);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(arc) = current.downcast_ref::<Arc<dyn StdError + Send + Sync>>() {
            if let Some(found) = find_rustls_error(&**arc) {
                return Some(found);
            }
        }
        if let Some(inner) = current
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if let Some(found) = find_rustls_error(inner) {
                return Some(found);
            }
        }
        next = current.source();
    }
    None
}

/// Why rustls refused a server (or the server refused us), in words for a
/// message such as "MySQL server db:3306 (ssl-mode=VERIFY_CA): {explain}".
pub fn explain(err: &rustls::Error, trust: Trust<'_>) -> String {
    match err {
        rustls::Error::InvalidCertificate(certificate) => server_certificate(certificate, trust),
        rustls::Error::NoCertificatesPresented => "it presented no certificate".to_owned(),
        rustls::Error::AlertReceived(alert) => alert_words(*alert),
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => {
            "it did not answer in TLS (is that port plaintext?)".to_owned()
        }
        rustls::Error::PeerIncompatible(why) => {
            format!("it has no TLS version or cipher in common with this client ({why:?})")
        }
        other => format!("TLS failed: {other}"),
    }
}

fn server_certificate(err: &CertificateError, trust: Trust<'_>) -> String {
    match err {
        CertificateError::UnknownIssuer => match trust {
            Trust::CaFile { setting, path } => format!(
                "its certificate is not signed by the CA in {setting} {}",
                path.display()
            ),
            Trust::System { setting } => format!(
                "its certificate is not signed by a CA this system trusts (name its CA with {setting})"
            ),
        },
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let expected = printable(&expected.to_str());
            if presented.is_empty() {
                format!("its certificate names no host (no subjectAltName), so not {expected}")
            } else {
                let names: Vec<String> = presented.iter().map(|name| presented_name(name)).collect();
                format!("its certificate is for {}, not {expected}", one_of(&names))
            }
        }
        CertificateError::NotValidForName => {
            "its certificate is not for the host name connected to".to_owned()
        }
        CertificateError::ExpiredContext { not_after, .. } => {
            format!("its certificate expired on {}", date(*not_after))
        }
        CertificateError::Expired => "its certificate has expired".to_owned(),
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "its certificate is not valid before {} (is this machine's clock right?)",
            date(*not_before)
        ),
        CertificateError::NotValidYet => {
            "its certificate is not valid yet (is this machine's clock right?)".to_owned()
        }
        CertificateError::Revoked => "its certificate is revoked".to_owned(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "its certificate is not one for a TLS server (extended key usage)".to_owned()
        }
        CertificateError::BadSignature => {
            "its certificate's signature does not verify (damaged, or not made by its issuer)"
                .to_owned()
        }
        other => format!("its certificate was refused: {}", certificate_error_words(other)),
    }
}

fn alert_words(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::CertificateRequired => {
            "it asks for a client certificate, and none was given".to_owned()
        }
        AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateRevoked
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateUnknown
        | AlertDescription::UnknownCA
        | AlertDescription::AccessDenied => {
            format!("it refused our client certificate ({alert:?})")
        }
        AlertDescription::ProtocolVersion => {
            "it speaks no TLS version this client does (1.2, 1.3)".to_owned()
        }
        AlertDescription::HandshakeFailure => {
            "it found no TLS parameters in common with this client (handshake failure)".to_owned()
        }
        other => format!("it ended the TLS handshake ({other:?})"),
    }
}

/// A certificate that cannot serve as a trust anchor or does not parse.
fn certificate_words(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(certificate) => certificate_error_words(certificate),
        other => other.to_string(),
    }
}

fn certificate_error_words(err: &CertificateError) -> String {
    match err {
        CertificateError::BadEncoding => "it does not parse as an X.509 certificate".to_owned(),
        CertificateError::UnhandledCriticalExtension => {
            "it has a critical extension this client does not know".to_owned()
        }
        CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "it is signed with an algorithm this client does not support".to_owned()
        }
        other => other.to_string(),
    }
}

/// rustls renders the names a certificate holds as `DnsName("x")` and `IpAddress(1.2.3.4)`.
fn presented_name(raw: &str) -> String {
    let inner = raw
        .strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
        .or_else(|| {
            raw.strip_prefix("IpAddress(")
                .and_then(|rest| rest.strip_suffix(')'))
        })
        .or_else(|| {
            raw.strip_prefix("UniformResourceIdentifier(\"")
                .and_then(|rest| rest.strip_suffix("\")"))
        })
        .unwrap_or(raw);
    printable(inner)
}

/// A server's certificate is anyone's text: control characters are escaped.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_debug().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// "a", "a or b", "a, b or c".
fn one_of(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

fn date(time: UnixTime) -> String {
    i64::try_from(time.as_secs())
        .ok()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map_or_else(
            || format!("{} seconds after 1970", time.as_secs()),
            |at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rustls::pki_types::ServerName;

    use super::*;

    // Throwaway test material (tls/testdata, made with openssl): a CA, a client
    // certificate it signed with its EC key in PKCS#8 and SEC1 form, an unrelated
    // EC key, a self-signed RSA certificate with its key in PKCS#1 and PKCS#8
    // form, and the client key encrypted with a passphrase.
    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/testdata");

    fn testdata(name: &str) -> PathBuf {
        Path::new(TESTDATA).join(name)
    }

    /// A temp file holding `bytes`.
    fn temp_file(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("file.pem");
        std::fs::write(&path, bytes).expect("write");
        (dir, path)
    }

    fn read(name: &str) -> Vec<u8> {
        std::fs::read(testdata(name)).expect("test data")
    }

    #[test]
    fn reads_a_ca_file() {
        let ca = CaFile::read("ssl-ca", &testdata("ca.pem")).expect("a CA file");
        assert_eq!(ca.certificates().len(), 1);
        assert_eq!(ca.pem(), read("ca.pem").as_slice());
        assert_eq!(
            format!("{ca:?}"),
            format!(
                "CaFile {{ path: {:?}, certificates: 1 }}",
                testdata("ca.pem")
            )
        );
    }

    #[test]
    fn reads_a_bundle_of_cas() {
        let mut bundle = read("ca.pem");
        bundle.extend(read("rsa.pem"));
        let (_dir, path) = temp_file(&bundle);
        let ca = CaFile::read("--redis-ca", &path).expect("a bundle");
        assert_eq!(ca.certificates().len(), 2);
    }

    fn ca_error(bytes: &[u8]) -> (String, PathBuf, tempfile::TempDir) {
        let (dir, path) = temp_file(bytes);
        let err = CaFile::read("ssl-ca", &path).expect_err("refused");
        (err.to_string(), path, dir)
    }

    #[test]
    fn a_ca_file_holding_a_key_says_so() {
        let (text, path, _dir) = ca_error(&read("client-pkcs8.key"));
        assert_eq!(
            text,
            format!(
                "ssl-ca {}: holds a private key, not a certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            )
        );
        let (text, ..) = ca_error(&read("encrypted.key"));
        assert!(
            text.ends_with("holds a private key, not a certificate (-----BEGIN CERTIFICATE-----)"),
            "{text}"
        );
    }

    #[test]
    fn a_ca_file_in_der_or_empty_says_so() {
        let der = CertificateDer::from_pem_slice(&read("ca.pem")).expect("PEM");
        let (text, ..) = ca_error(der.as_ref());
        assert!(text.contains("holds no PEM certificate"), "{text}");
        assert!(text.contains("openssl x509 -inform der"), "{text}");
        let (text, ..) = ca_error(b"");
        assert!(text.contains("holds no PEM certificate"), "{text}");
    }

    #[test]
    fn a_ca_file_with_broken_pem_or_a_broken_certificate_says_so() {
        let (text, ..) = ca_error(b"-----BEGIN CERTIFICATE-----\nAAAA\n");
        assert!(
            text.contains("is not valid PEM: missing section end marker"),
            "{text}"
        );
        let (text, ..) =
            ca_error(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert!(
            text.ends_with("certificate 1 of 1 is not usable as a CA: it does not parse as an X.509 certificate"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_ca_file_or_a_directory_names_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("absent.pem");
        let err = CaFile::read("ssl-ca", &missing).expect_err("missing");
        assert_eq!(
            err.to_string(),
            format!(
                "ssl-ca {}: cannot read it: No such file or directory (os error 2)",
                missing.display()
            )
        );
        let err = CaFile::read("--redis-ca", dir.path()).expect_err("a directory");
        assert_eq!(
            err.to_string(),
            format!(
                "--redis-ca {}: cannot read it: it is a directory, not a regular file",
                dir.path().display()
            )
        );
    }

    #[test]
    fn reads_a_client_identity_in_each_key_format() {
        for (cert, key, format) in [
            ("client.pem", "client-pkcs8.key", KeyFormat::Pkcs8),
            ("client.pem", "client-sec1.key", KeyFormat::Sec1Ec),
            ("rsa.pem", "rsa-pkcs1.key", KeyFormat::Pkcs1Rsa),
            ("rsa.pem", "rsa-pkcs8.key", KeyFormat::Pkcs8),
        ] {
            let identity =
                ClientIdentity::read("ssl-cert", &testdata(cert), "ssl-key", &testdata(key))
                    .unwrap_or_else(|err| panic!("{cert} + {key}: {err}"));
            assert_eq!(identity.key_format(), format, "{key}");
            assert_eq!(identity.key_pem(), read(key).as_slice());
            assert_eq!(identity.cert_pem(), read(cert).as_slice());
        }
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused_by_name() {
        let cert = testdata("client.pem");
        let key = testdata("other-pkcs8.key");
        let err = ClientIdentity::read("ssl-cert", &cert, "ssl-key", &key).expect_err("mismatch");
        assert_eq!(
            err.to_string(),
            format!(
                "the key in ssl-key {} does not belong to the certificate in ssl-cert {}",
                key.display(),
                cert.display()
            )
        );
        let err = ClientIdentity::read(
            "ssl-cert",
            &testdata("rsa.pem"),
            "ssl-key",
            &testdata("client-sec1.key"),
        )
        .expect_err("mismatch across key types");
        assert!(matches!(err, TlsFileError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn an_encrypted_key_a_certificate_as_key_and_a_key_as_certificate_say_so() {
        let cert = testdata("client.pem");
        let err = ClientIdentity::read("ssl-cert", &cert, "ssl-key", &testdata("encrypted.key"))
            .expect_err("encrypted");
        assert!(
            err.to_string().contains("holds an encrypted private key"),
            "{err}"
        );
        let err =
            ClientIdentity::read("ssl-cert", &cert, "ssl-key", &cert).expect_err("a cert as key");
        assert!(
            err.to_string()
                .ends_with("holds a certificate, not a private key (-----BEGIN PRIVATE KEY-----)"),
            "{err}"
        );
        let key = testdata("client-pkcs8.key");
        let err =
            ClientIdentity::read("ssl-cert", &key, "ssl-key", &key).expect_err("a key as cert");
        assert!(err.to_string().starts_with("ssl-cert "), "{err}");
        assert!(
            err.to_string()
                .ends_with("holds a private key, not a certificate (-----BEGIN CERTIFICATE-----)"),
            "{err}"
        );
    }

    #[test]
    fn a_file_with_two_keys_is_refused() {
        let mut two = read("client-pkcs8.key");
        two.extend(read("other-pkcs8.key"));
        let (_dir, key) = temp_file(&two);
        let err = ClientIdentity::read("ssl-cert", &testdata("client.pem"), "ssl-key", &key)
            .expect_err("two keys");
        assert!(
            err.to_string()
                .ends_with("holds more than one private key; give a file with the one key"),
            "{err}"
        );
    }

    #[test]
    fn the_key_never_prints() {
        let identity = ClientIdentity::read(
            "ssl-cert",
            &testdata("client.pem"),
            "ssl-key",
            &testdata("client-pkcs8.key"),
        )
        .expect("identity");
        let printed = format!("{identity:?}");
        assert!(printed.contains("<redacted>"), "{printed}");
        assert!(!printed.contains("PRIVATE KEY"), "{printed}");
    }

    fn ca_trust(path: &Path) -> Trust<'_> {
        Trust::CaFile {
            setting: "ssl-ca",
            path,
        }
    }

    fn cert_error(err: CertificateError) -> rustls::Error {
        rustls::Error::InvalidCertificate(err)
    }

    #[test]
    fn explains_an_unknown_issuer_by_what_was_trusted() {
        let path = Path::new("/etc/decnet/ca.pem");
        assert_eq!(
            explain(&cert_error(CertificateError::UnknownIssuer), ca_trust(path)),
            "its certificate is not signed by the CA in ssl-ca /etc/decnet/ca.pem"
        );
        assert_eq!(
            explain(
                &cert_error(CertificateError::UnknownIssuer),
                Trust::System { setting: "--redis-ca" }
            ),
            "its certificate is not signed by a CA this system trusts (name its CA with --redis-ca)"
        );
    }

    #[test]
    fn explains_a_name_mismatch_with_the_names_on_both_sides() {
        let path = Path::new("ca.pem");
        let mismatch = |expected: &'static str, presented: &[&str]| {
            explain(
                &cert_error(CertificateError::NotValidForNameContext {
                    expected: ServerName::try_from(expected).expect("a name"),
                    presented: presented.iter().map(|s| (*s).to_owned()).collect(),
                }),
                ca_trust(path),
            )
        };
        // The shapes rustls 0.23 gives (seen against scripts/services' servers).
        assert_eq!(
            mismatch("localhost", &["DnsName(\"wrong-name.invalid\")"]),
            "its certificate is for wrong-name.invalid, not localhost"
        );
        assert_eq!(
            mismatch(
                "wrong-name.invalid",
                &["DnsName(\"localhost\")", "IpAddress(127.0.0.1)"]
            ),
            "its certificate is for localhost or 127.0.0.1, not wrong-name.invalid"
        );
        assert_eq!(
            mismatch(
                "127.0.0.1",
                &["DnsName(\"a\")", "DnsName(\"b\")", "IpAddress(10.0.0.1)"]
            ),
            "its certificate is for a, b or 10.0.0.1, not 127.0.0.1"
        );
        assert_eq!(
            mismatch("db.example", &[]),
            "its certificate names no host (no subjectAltName), so not db.example"
        );
        // A name in a certificate is anyone's text.
        assert_eq!(
            mismatch("db.example", &["DnsName(\"evil\u{1b}[31m\")"]),
            "its certificate is for evil\\u{1b}[31m, not db.example"
        );
    }

    #[test]
    fn explains_dates() {
        let path = Path::new("ca.pem");
        // 2020-01-02 00:00:00 UTC, the end of scripts/services' expired certificate.
        let not_after = UnixTime::since_unix_epoch(Duration::from_secs(1_577_923_200));
        let now = UnixTime::since_unix_epoch(Duration::from_secs(1_796_300_392));
        assert_eq!(
            explain(
                &cert_error(CertificateError::ExpiredContext {
                    time: now,
                    not_after
                }),
                ca_trust(path)
            ),
            "its certificate expired on 2020-01-02 00:00:00 UTC"
        );
        assert_eq!(
            explain(
                &cert_error(CertificateError::NotValidYetContext {
                    time: not_after,
                    not_before: now
                }),
                ca_trust(path)
            ),
            "its certificate is not valid before 2026-12-03 12:19:52 UTC (is this machine's clock right?)"
        );
        assert_eq!(
            explain(&cert_error(CertificateError::Expired), ca_trust(path)),
            "its certificate has expired"
        );
    }

    #[test]
    fn explains_the_rest_in_words() {
        let path = Path::new("ca.pem");
        let words = |err: rustls::Error| explain(&err, ca_trust(path));
        assert_eq!(
            words(cert_error(CertificateError::Revoked)),
            "its certificate is revoked"
        );
        assert_eq!(
            words(cert_error(CertificateError::BadEncoding)),
            "its certificate was refused: it does not parse as an X.509 certificate"
        );
        assert_eq!(
            words(cert_error(CertificateError::InvalidPurpose)),
            "its certificate is not one for a TLS server (extended key usage)"
        );
        assert_eq!(
            words(rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
            )),
            "it asks for a client certificate, and none was given"
        );
        assert_eq!(
            words(rustls::Error::AlertReceived(AlertDescription::UnknownCA)),
            "it refused our client certificate (UnknownCA)"
        );
        assert_eq!(
            words(rustls::Error::InvalidMessage(
                rustls::InvalidMessage::InvalidContentType
            )),
            "it did not answer in TLS (is that port plaintext?)"
        );
        assert_eq!(
            words(rustls::Error::NoCertificatesPresented),
            "it presented no certificate"
        );
        assert_eq!(
            words(rustls::Error::General("x".to_owned())),
            "TLS failed: unexpected error: x"
        );
    }

    #[test]
    fn finds_the_rustls_error_inside_io_errors_and_arcs() {
        let rustls_err = cert_error(CertificateError::UnknownIssuer);
        // tokio-rustls: io::Error(InvalidData, rustls::Error); io::Error::source skips it.
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls_err.clone());
        assert_eq!(find_rustls_error(&io), Some(&rustls_err));
        // redis-rs: Arc<dyn Error> holding that io::Error, behind its own error's source().
        #[derive(Debug)]
        struct Outer(Arc<dyn StdError + Send + Sync>);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("outer")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let outer = Outer(Arc::new(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls_err.clone(),
        )));
        assert_eq!(find_rustls_error(&outer), Some(&rustls_err));
        let plain = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(find_rustls_error(&plain), None);
    }
}
