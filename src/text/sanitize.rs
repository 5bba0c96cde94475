//! Untrusted text (from a state file, a database, Docker or a bus) made safe
//! for a terminal or the journal: it may not move the cursor, recolour the
//! screen, reorder the line or forge a log line.

/// Text from a file, a database or a peer, shown escaped: control characters
/// (ANSI escapes included), bidirectional overrides (which reorder what follows
/// them on the line) and backslashes. Escaping backslashes too makes the shown
/// form unambiguous: `\n` on screen was a newline, `\\n` a backslash and `n`.
pub fn escape_untrusted(text: &str) -> String {
    escape_where(text, |c| c == '\\' || is_unsafe_char(c))
}

/// Only control characters and bidirectional overrides escaped, backslashes
/// left as they are: for a whole log record, which may quote text that
/// [`escape_untrusted`] already escaped and must not be escaped twice.
pub fn escape_controls(text: &str) -> String {
    escape_where(text, is_unsafe_char)
}

fn escape_where(text: &str, needs_escape: impl Fn(char) -> bool) -> String {
    if !text.chars().any(&needs_escape) {
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

fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_backslashes_are_escaped() {
        assert_eq!(escape_untrusted("plain-name"), "plain-name");
        assert_eq!(escape_untrusted("a\u{1b}[31mred"), "a\\u{1b}[31mred");
        assert_eq!(escape_untrusted("tab\there"), "tab\\there");
        assert_eq!(escape_untrusted("back\\slash"), "back\\\\slash");
        assert_eq!(escape_untrusted("é ünïcode"), "é ünïcode");
        assert_eq!(
            escape_untrusted("bidi\u{202e}txt.exe"),
            "bidi\\u{202e}txt.exe"
        );
        assert_eq!(escape_untrusted("csi\u{9b}2J"), "csi\\u{9b}2J");
    }

    #[test]
    fn escape_controls_leaves_backslashes_alone() {
        assert_eq!(
            escape_controls("a\\u{1b}b\nc\u{2067}"),
            "a\\u{1b}b\\nc\\u{2067}"
        );
    }
}
