//! Text that came from a guest or a client, made safe for a log file and an
//! operator's terminal: control characters cannot move the cursor, clear the
//! screen, ring the bell or reverse the text around them.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every control character (C0 but tab, DEL, C1) and every
/// bidirectional override written as an escape (`\x1b`, `\u{202e}`).
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !needs_escape(c) {
            escaped.push(c);
        } else if (c as u32) < 0x80 {
            let _ = write!(escaped, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(escaped, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(escaped)
}

/// At most `max` bytes of `text` (cut on a character boundary), made
/// printable, with a note of how much was cut: for messages a guest
/// chooses, which may be megabytes long.
pub fn truncated_printable(text: &str, max: usize) -> String {
    if text.len() <= max {
        return printable(text).into_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… ({} more bytes)",
        printable(&text[..end]),
        text.len() - end
    )
}

fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_obey() {
        assert_eq!(printable("plain text\twith tab"), "plain text\twith tab");
        assert_eq!(
            printable("\x1b[2J\x07bell\rback\u{9b}31m\u{202e}evil"),
            "\\x1b[2J\\x07bell\\x0dback\\u{9b}31m\\u{202e}evil"
        );
        assert_eq!(printable("new\nline\x7f"), "new\\x0aline\\x7f");
        assert!(matches!(printable("unchanged"), Cow::Borrowed(_)));
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(truncated_printable("short", 10), "short");
        let cut = truncated_printable(&"é".repeat(100), 5);
        assert_eq!(cut, "éé… (196 more bytes)");
    }
}
