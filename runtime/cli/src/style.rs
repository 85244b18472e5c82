//! Colour for people, plain text for pipes: ANSI codes only when the stream
//! is a terminal and NO_COLOR is unset.

use std::io::IsTerminal as _;

fn paint(code: &str, text: &str, terminal: bool) -> String {
    if terminal && std::env::var_os("NO_COLOR").is_none() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// Red and bold, for stderr.
pub(crate) fn error(text: &str) -> String {
    paint("1;31", text, std::io::stderr().is_terminal())
}

/// Yellow, for stderr.
pub(crate) fn warn(text: &str) -> String {
    paint("33", text, std::io::stderr().is_terminal())
}

/// Green, for stdout.
pub(crate) fn ok(text: &str) -> String {
    paint("32", text, std::io::stdout().is_terminal())
}

/// Bold, for stdout.
pub(crate) fn bold(text: &str) -> String {
    paint("1", text, std::io::stdout().is_terminal())
}

/// Dim, for stdout.
pub(crate) fn dim(text: &str) -> String {
    paint("2", text, std::io::stdout().is_terminal())
}

/// `println!` that ends the process quietly when stdout is closed early
/// (`outpost versions --json | head`), instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::style::write_line(format_args!($($arg)*))
    };
}
pub(crate) use out;

pub(crate) fn write_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = writeln!(stdout, "{args}").and_then(|()| stdout.flush())
        && err.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}
