//! Text from a submission, shown safely. A program's output, a compiler's
//! message about its source, a process name: any of it may hold escape
//! sequences that would clear a terminal, move its cursor, retitle it, or
//! reorder text (bidirectional overrides). Every reporter passes such text
//! through [`visible`], so only the grader's own colours reach a terminal,
//! and XML, CSV and HTML never carry a raw control character.

use std::fmt::Write;

/// `text` with every control character except newline and tab, and every
/// bidirectional-override or invisible formatting character, replaced by a
/// visible escape (`\x1b`, `\r`, `\u{202e}`). Already-invalid UTF-8 was
/// turned into U+FFFD where the bytes were captured and shows as such.
pub fn visible(text: &str) -> String {
    if !text.chars().any(needs_escape) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
            continue;
        }
        match c {
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c as u32, 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x2069 | 0xfeff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_shown_not_interpreted() {
        assert_eq!(visible("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(
            visible("\x1b[2J\x07over\rwrite"),
            "\\x1b[2J\\x07over\\rwrite"
        );
        assert_eq!(visible("\u{9b}31m"), "\\x9b31m");
        assert_eq!(visible("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(visible("bad \u{fffd} byte"), "bad \u{fffd} byte");
    }
}
