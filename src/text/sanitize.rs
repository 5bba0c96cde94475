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

/// JSON text with the characters [`escape_untrusted`] guards a terminal from
/// that a JSON writer leaves raw (DEL, the C1 controls, bidirectional
/// overrides) written as `\uXXXX`. They can stand only inside strings, where
/// the escape means the same character: the document parses to the same value.
pub fn escape_json_unsafe(json: &str) -> String {
    if !json.chars().any(is_unsafe_char) {
        return json.to_owned();
    }
    let mut escaped = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_unsafe_char(c) {
            let mut units = [0; 2];
            for unit in c.encode_utf16(&mut units) {
                escaped.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            escaped.push(c);
        }
    }
    escaped
}

/// `text` cut to at most `max` characters, the last of them `…` when cut.
pub fn shorten(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => text.into(),
        Some(_) => {
            let keep = text
                .char_indices()
                .nth(max.saturating_sub(1))
                .map_or(0, |(at, _)| at);
            format!("{}…", &text[..keep]).into()
        }
    }
}

/// `text` cut to at most `max` characters from its start, the first of them
/// `…` when cut: for a path, whose end says most.
pub fn shorten_start(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    let count = text.chars().count();
    if count <= max {
        return text.into();
    }
    let skip = count - max.saturating_sub(1);
    let start = text
        .char_indices()
        .nth(skip)
        .map_or(text.len(), |(at, _)| at);
    format!("…{}", &text[start..]).into()
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
    fn json_keeps_its_meaning_with_unsafe_characters_escaped() {
        let value = serde_json::json!({"n": "a\u{1b}[2J\u{7f}\u{9b}b\u{202e}c\u{2066}é"});
        let text = serde_json::to_string(&value).expect("json");
        let escaped = escape_json_unsafe(&text);
        assert_eq!(escaped, r#"{"n":"a\u001b[2J\u007f\u009bb\u202ec\u2066é"}"#);
        let back: serde_json::Value = serde_json::from_str(&escaped).expect("still JSON");
        assert_eq!(back, value);
    }

    #[test]
    fn shortening_keeps_the_length_and_marks_the_cut() {
        assert_eq!(shorten("short", 5), "short");
        assert_eq!(shorten("longer", 5), "long…");
        assert_eq!(shorten("ééééé-é", 3), "éé…");
        assert_eq!(shorten("", 0), "");
        assert_eq!(shorten_start("a.b.port", 8), "a.b.port");
        assert_eq!(shorten_start("a.b.port", 5), "…port");
        assert_eq!(shorten_start("é.ü.ï", 3), "….ï");
    }

    #[test]
    fn escape_controls_leaves_backslashes_alone() {
        assert_eq!(
            escape_controls("a\\u{1b}b\nc\u{2067}"),
            "a\\u{1b}b\\nc\\u{2067}"
        );
    }
}
