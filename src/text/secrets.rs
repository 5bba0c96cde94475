//! Secrets kept out of everything this process writes: URLs shown without
//! their passwords, whatever their shape, and the secrets of the invocation
//! (from its arguments and environment) masked wherever they appear.

use std::ffi::OsString;
use std::sync::RwLock;

use super::sanitize::escape_untrusted;

/// The scheme of `text` (RFC 3986: a letter, then letters, digits, `+`, `-`,
/// `.`) when it starts with one followed by `:`. The one reader of URL schemes:
/// the database, the bus, Docker's endpoint and redaction all ask it.
pub fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// A URL fit to print, whatever its shape: the password of its user info (with
/// or without `//`, `user:pw@` or a bare `pw@` after `scheme:`) and the value
/// of every query parameter that names a secret (`pass=`, `password=`, …) are
/// replaced by `***`. Never fails: text that is no URL at all is only escaped.
pub fn redact_url(url: &str) -> String {
    escape_untrusted(&redact_url_shape(url))
}

/// Whether a name says its value is a secret: query parameters (redis-rs's
/// `pass`, the mysql crate's `password`, and their usual cousins) and keys of
/// a decky's config (DECNET's `password`, `user_password`, `upstream_pass`).
pub fn names_a_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token", "auth"]
        .iter()
        .any(|word| key.contains(word))
}

/// The parts of a URL that [`redact_url_shape`] masks. The user info runs to
/// the *last* `@` (as URL parsers read it), so a password holding `@`, `/` or
/// `?` is masked whole; query secrets are found first, so that an `@` inside
/// one is not taken for the end of a user info.
struct UrlShape<'a> {
    /// `scheme:`, when the text starts with one.
    scheme: Option<&'a str>,
    rest: &'a str,
}

impl<'a> UrlShape<'a> {
    fn of(text: &'a str) -> Self {
        match url_scheme(text) {
            Some(scheme) => UrlShape {
                scheme: Some(&text[..=scheme.len()]),
                rest: &text[scheme.len() + 1..],
            },
            None => UrlShape {
                scheme: None,
                rest: text,
            },
        }
    }

    /// Calls `on_secret` with each query value that names a secret, and returns
    /// the text with those values masked.
    fn mask_query(text: &str, mut on_secret: impl FnMut(&str)) -> String {
        let Some((before, query)) = text.split_once('?') else {
            return text.to_owned();
        };
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, value))
                    if names_a_secret(key) && !value.is_empty() && !already_masked(value) =>
                {
                    on_secret(value);
                    format!("{key}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        format!("{before}?{}", masked.join("&"))
    }

    /// `(kept user info, secret)` for the user info before the last `@`.
    fn split_user_info(user_info: &str, has_slashes: bool) -> (String, Option<&str>) {
        let bare = user_info.trim_start_matches('/');
        let slashes = &user_info[..user_info.len() - bare.len()];
        match bare.split_once(':') {
            Some((user, password)) => (format!("{slashes}{user}:***"), Some(password)),
            // `scheme://name@host` names a user; `scheme:pw@host` (redis-rs reads
            // it so) may be a password: mask it.
            None if has_slashes || bare.is_empty() => (user_info.to_owned(), None),
            None => (format!("{slashes}***"), Some(bare)),
        }
    }

    /// The masked text, calling `on_secret` with each secret found.
    fn masked(&self, mut on_secret: impl FnMut(&str)) -> String {
        let rest = Self::mask_query(self.rest, &mut on_secret);
        let scheme = self.scheme.unwrap_or_default();
        match rest.rsplit_once('@') {
            Some((user_info, host))
                if !is_image_digest(host) && (self.scheme.is_some() || user_info.contains(':')) =>
            {
                let (user_info, secret) =
                    Self::split_user_info(user_info, user_info.starts_with("//"));
                if let Some(secret) = secret.filter(|s| !s.is_empty()) {
                    on_secret(secret);
                }
                format!("{scheme}{user_info}@{host}")
            }
            _ => format!("{scheme}{rest}"),
        }
    }
}

/// Whether what follows an `@` is a content digest (`sha256:` and hex), as
/// in an image reference (`debian:bookworm-slim@sha256:f9c6…`, DECNET's
/// `build_base`): that `@` ends no user info, and `bookworm-slim` is a tag,
/// not a password.
fn is_image_digest(after_at: &str) -> bool {
    after_at.split_once(':').is_some_and(|(algorithm, hex)| {
        matches!(algorithm, "sha256" | "sha384" | "sha512")
            && !hex.is_empty()
            && hex.chars().all(|c| c.is_ascii_hexdigit())
    })
}

/// Whether a query value is a mask already, perhaps with the sentence's
/// punctuation after it (`?password=***: unknown parameter`): masking it
/// again would eat that punctuation.
fn already_masked(value: &str) -> bool {
    value
        .strip_prefix("***")
        .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_punctuation()))
}

fn redact_url_shape(text: &str) -> String {
    UrlShape::of(text).masked(|_| ())
}

/// Masks every URL-shaped word of free text (an error message that repeats
/// the URL it failed on): words are cut at whitespace, quotes and brackets.
pub fn redact_urls_in(text: &str) -> String {
    let is_boundary = |c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '"' | '\'' | '`' | '(' | ')' | '<' | '>' | '[' | ']' | '{' | '}' | ','
            )
    };
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.contains('@') || word.contains('=') {
            out.push_str(&redact_url_shape(word));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if is_boundary(c) {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The secrets of one run, to be masked in every byte it writes: the password
/// and secret query values of every URL-shaped argument and environment value,
/// and the whole value of every environment variable whose name says it is a
/// secret (`DECNET_DB_PASSWORD`). Each is masked as written, percent-decoded
/// and as `{:?}` quotes it.
///
/// Secrets shorter than [`Secrets::MIN_MASKED_LEN`] are not masked as free
/// text (masking every `pw` in a report would garble it); they are masked
/// where they stand in a URL, like every password, by [`redact_url`] and
/// [`redact_urls_in`].
///
/// Secrets found later (a password read from a file) are added with
/// [`Secrets::learn`], and masked from then on wherever this set is shared.
#[derive(Debug, Default)]
pub struct Secrets {
    /// Longest first, so that a secret holding another is masked whole.
    values: RwLock<Vec<String>>,
}

impl Secrets {
    pub const MIN_MASKED_LEN: usize = 4;

    /// From the command line and the environment of this process.
    pub fn of_invocation(
        args: impl IntoIterator<Item = OsString>,
        vars: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Self {
        let mut found = Vec::new();
        for arg in args {
            found_in_url(&arg.to_string_lossy(), &mut found);
        }
        for (name, value) in vars {
            let value = value.to_string_lossy();
            if is_secret_variable(&name.to_string_lossy()) {
                found.push(value.to_string());
            } else {
                found_in_url(&value, &mut found);
            }
        }
        Self::from_values(found)
    }

    fn from_values(found: Vec<String>) -> Self {
        let secrets = Secrets::default();
        secrets.add(found);
        secrets
    }

    /// Masks `secret` too from now on: a password that was in no argument or
    /// variable (read from a file or a systemd credential).
    pub fn learn(&self, secret: &str) {
        self.add(vec![secret.to_owned()]);
    }

    fn add(&self, found: Vec<String>) {
        let mut values = self
            .values
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        values.extend(
            found
                .iter()
                .flat_map(|secret| Self::spellings(secret))
                .filter(|secret| secret.chars().count() >= Self::MIN_MASKED_LEN),
        );
        values.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        values.dedup();
    }

    /// A secret as written, percent-decoded, percent-encoded, and as `{:?}`
    /// and the escaping of untrusted text show it.
    fn spellings(secret: &str) -> [String; 5] {
        let decoded = percent_encoding::percent_decode_str(secret)
            .decode_utf8_lossy()
            .into_owned();
        let encoded =
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let quoted = format!("{secret:?}");
        let quoted = quoted[1..quoted.len() - 1].to_owned();
        [
            secret.to_owned(),
            decoded,
            encoded,
            quoted,
            escape_untrusted(secret),
        ]
    }

    /// `text` with every secret replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        let values = self
            .values
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut text = text.to_owned();
        for secret in values.iter() {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        text
    }
}

/// Whether a variable's value is a secret by its name. `*_FILE` variables
/// (`DECNET_DB_PASSWORD_FILE`, the container convention) hold the path of a
/// secret, which messages about the file must be able to show; the secret
/// read from it is learned then.
fn is_secret_variable(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    !name.ends_with("_FILE")
        && ["PASSWORD", "PASSWD", "SECRET", "TOKEN"]
            .iter()
            .any(|word| name.contains(word))
}

fn found_in_url(text: &str, found: &mut Vec<String>) {
    UrlShape::of(text).masked(|secret| found.push(secret.to_owned()));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shape the issue found leaking, and redis-rs's and DECNET's others.
    const SHAPES: [(&str, &str); 16] = [
        (
            "redis://:s3cretpw@127.0.0.1:6379/0",
            "redis://:***@127.0.0.1:6379/0",
        ),
        ("redis://user:s3cretpw@h/0", "redis://user:***@h/0"),
        ("rediss://user:s3cretpw@h:6380", "rediss://user:***@h:6380"),
        ("redis:s3cretpw@h", "redis:***@h"),
        (
            "redis+unix:///run/r.sock?db=1&pass=s3cretpw",
            "redis+unix:///run/r.sock?db=1&pass=***",
        ),
        (
            "unix:///run/r.sock?pass=s3cret@pw&db=2",
            "unix:///run/r.sock?pass=***&db=2",
        ),
        ("mysql:user:s3cretpw@host/db", "mysql:user:***@host/db"),
        ("mysql:/user:s3cretpw@host/db", "mysql:/user:***@host/db"),
        (
            "mysql+asyncmy:user:s3cretpw@host/db",
            "mysql+asyncmy:user:***@host/db",
        ),
        ("MySQL://user:s3cretpw@host/db", "MySQL://user:***@host/db"),
        ("mysql://u:s3cret@pw@host/db", "mysql://u:***@host/db"),
        ("mysql://u:s3cret?pw@host/db", "mysql://u:***@host/db"),
        (
            "mysql://u@host/db?password=s3cretpw",
            "mysql://u@host/db?password=***",
        ),
        ("ssh://user:s3cretpw@host", "ssh://user:***@host"),
        ("unix:///var/run/docker.sock", "unix:///var/run/docker.sock"),
        ("::s3cretpw@@", ":***@"),
    ];

    #[test]
    fn passwords_are_redacted_whatever_the_shape() {
        for (url, redacted) in SHAPES {
            assert_eq!(redact_url(url), redacted, "{url}");
        }
    }

    #[test]
    fn secrets_are_found_in_every_shape() {
        for (url, _) in SHAPES {
            let secrets = Secrets::of_invocation([OsString::from(url)], []);
            let masked = secrets.mask(&format!("error: {url} and again {url}"));
            assert!(!masked.contains("s3cret"), "{url}: {masked}");
        }
    }

    #[test]
    fn urls_in_free_text_are_redacted() {
        assert_eq!(
            redact_urls_in(r#"error (unsupported scheme in "ssh://u:s3cretpw@h"): x=1, see a@b"#),
            r#"error (unsupported scheme in "ssh://u:***@h"): x=1, see a@b"#
        );
    }

    #[test]
    fn secret_variables_are_masked_whole_encoded_and_decoded() {
        let secrets = Secrets::of_invocation(
            [],
            [
                ("DECNET_DB_PASSWORD".into(), "p@ss/w:rd".into()),
                ("DECNET_REDIS_URL".into(), "redis://:a%26b%3Dcdef@h".into()),
                ("HOME".into(), "/root".into()),
            ],
        );
        for text in ["p@ss/w:rd", "p%40ss%2Fw%3Ard", "a%26b%3Dcdef", "a&b=cdef"] {
            assert_eq!(secrets.mask(&format!("<{text}>")), "<***>", "{text}");
        }
        assert_eq!(secrets.mask("/root"), "/root");
    }

    #[test]
    fn the_path_of_a_password_file_is_no_secret() {
        let secrets = Secrets::of_invocation(
            [],
            [
                ("DECNET_DB_PASSWORD_FILE".into(), "/etc/decnet/db-pw".into()),
                (
                    "DECNET_REDIS_PASSWORD".into(),
                    "/not/a/path/but/a/pw".into(),
                ),
            ],
        );
        assert_eq!(secrets.mask("/etc/decnet/db-pw"), "/etc/decnet/db-pw");
        assert_eq!(secrets.mask("/not/a/path/but/a/pw"), "***");
    }

    #[test]
    fn secrets_learned_later_are_masked_in_every_spelling() {
        let secrets = Secrets::of_invocation([], []);
        assert_eq!(secrets.mask("from a file: p@ss w"), "from a file: p@ss w");
        secrets.learn("p@ss w");
        for text in ["p@ss w", "p%40ss%20w", "p@ss w"] {
            assert_eq!(secrets.mask(&format!("<{text}>")), "<***>", "{text}");
        }
        secrets.learn("pw");
        assert_eq!(
            secrets.mask("pw"),
            "pw",
            "short ones only in URLs, as always"
        );
    }

    #[test]
    fn short_secrets_are_masked_only_in_urls() {
        let secrets = Secrets::of_invocation([OsString::from("redis://:pw@h")], []);
        assert_eq!(secrets.mask("pw"), "pw");
        assert_eq!(redact_urls_in("at redis://:pw@h"), "at redis://:***@h");
    }

    #[test]
    fn a_masked_url_in_a_sentence_keeps_the_sentence() {
        let message = format!(
            "MySQL URL {}: unknown parameter \"password\"",
            redact_url("mysql://u@h/db?password=s3cretpw")
        );
        assert_eq!(
            redact_urls_in(&message),
            "MySQL URL mysql://u@h/db?password=***: unknown parameter \"password\""
        );
        assert_eq!(redact_urls_in("?password=s3cret:"), "?password=***");
    }

    #[test]
    fn image_references_with_a_digest_are_not_urls() {
        let digest = "sha256:f9c6a2fd2ddbc23e336b6257a5245e31f996953ef06cd13a59fa0a1df2d5c252";
        for image in [
            format!("debian:bookworm-slim@{digest}"),
            format!("docker.io/library/debian:bookworm@{digest}"),
            format!("registry:5000/team/image:1.2@{digest}"),
        ] {
            assert_eq!(redact_urls_in(&image), image);
        }
        // A password that merely looks like a digest's start is still one.
        assert_eq!(
            redact_urls_in("redis://:s3cret@sha256host:6379"),
            "redis://:***@sha256host:6379"
        );
        assert_eq!(redact_urls_in("redis:pw@host"), "redis:***@host");
    }
}
