//! What may be printed on a terminal or in the journal: text that came from a
//! state file or a database, which may not move the cursor, recolour the
//! screen, reorder the line or forge a log line; and URLs, without their passwords.

/// Makes text from the state file or the DB safe for a terminal: control
/// characters (ANSI escapes included), bidirectional overrides (which reorder
/// what follows them on the line) and backslashes are shown escaped.
pub fn escape(text: &str) -> String {
    if !text.chars().any(needs_escape) {
        return text.to_owned();
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    escaped
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A URL fit to print: any password is replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot carry credentials, which these do.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_backslashes_are_escaped() {
        assert_eq!(escape("plain-name"), "plain-name");
        assert_eq!(escape("a\u{1b}[31mred"), "a\\u{1b}[31mred");
        assert_eq!(escape("tab\there"), "tab\\there");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        assert_eq!(escape("é ünïcode"), "é ünïcode");
        assert_eq!(escape("bidi\u{202e}txt.exe"), "bidi\\u{202e}txt.exe");
        assert_eq!(escape("csi\u{9b}2J"), "csi\\u{9b}2J");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("redis://:s3cretpw@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert!(!redact_url("redis://user:s3cretpw@h/0").contains("s3cretpw"));
        assert!(!redact_url("::s3cretpw@@").contains("s3cretpw"));
    }
}
