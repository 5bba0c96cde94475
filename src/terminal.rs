//! Text that came from a state file or a database, made safe to print on a
//! terminal or in the journal: it may not move the cursor, recolour the
//! screen, reorder the line or forge a log line.

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
}
