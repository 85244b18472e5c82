//! Text that came from a guest or a client, made safe for a log file and an
//! operator's terminal: control characters cannot move the cursor, clear the
//! screen, ring the bell or reverse the text around them.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// `text` with every control character (C0 but tab, DEL, C1) and every
/// bidirectional override written as an escape (`\x1b`, `\u{202e}`).
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_printable(&mut escaped, c);
    }
    Cow::Owned(escaped)
}

/// Appends `c`, escaped if it needs to be.
fn push_printable(out: &mut String, c: char) {
    if !needs_escape(c) {
        out.push(c);
    } else if (c as u32) < 0x80 {
        let _ = write!(out, "\\x{:02x}", c as u32);
    } else {
        let _ = write!(out, "\\u{{{:x}}}", c as u32);
    }
}

/// What `args` formats to, made printable, but formatted only until the
/// printable text holds `max` bytes: for messages a guest chooses, which
/// may be as large as its memory (formatting one in full, then cutting it,
/// would cost the host that much memory and time).
pub fn printable_capped(args: fmt::Arguments<'_>, max: usize) -> String {
    let mut capped = Capped {
        text: String::new(),
        max,
        cut: false,
    };
    // An error here only means the text was cut.
    let _ = fmt::write(&mut capped, args);
    if capped.cut {
        capped.text.push_str("… (cut)");
    }
    capped.text
}

/// A `fmt::Write` that escapes what it is given, and stops formatting once
/// it holds `max` bytes.
struct Capped {
    text: String,
    max: usize,
    cut: bool,
}

impl fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let before = self.text.len();
            push_printable(&mut self.text, c);
            if self.text.len() > self.max {
                self.text.truncate(before);
                self.cut = true;
                return Err(fmt::Error);
            }
        }
        Ok(())
    }
}

fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `bytes` as lowercase hexadecimal (digests, tokens).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
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
    fn long_messages_are_cut_on_a_character_boundary_while_formatting() {
        assert_eq!(printable_capped(format_args!("{}", "short"), 10), "short");
        let cut = printable_capped(format_args!("{}", "é".repeat(100)), 5);
        assert_eq!(cut, "éé… (cut)");
        // Formatting stops at the cap: a value whose Debug text would be
        // endless is cut, not formatted in full.
        struct Endless;
        impl fmt::Debug for Endless {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                loop {
                    f.write_str("\u{1}")?;
                }
            }
        }
        let cut = printable_capped(format_args!("{Endless:?}"), 512);
        assert!(cut.len() <= 512 + "… (cut)".len(), "{} bytes", cut.len());
        assert!(
            cut.starts_with("\\x01\\x01") && cut.ends_with("… (cut)"),
            "{cut}"
        );
    }
}
