//! INVARIANT (safe text): the one sanitiser for every string a registry, a layout,
//! an artifact, a signature or a guest supplies that can reach an operator's terminal.
//!
//! What it neutralises ([`is_unsafe`]):
//!
//! - C0 controls (U+0000–U+001F), DEL (U+007F) and C1 controls (U+0080–U+009F): escape
//!   sequences that move the cursor, rewrite the screen or the window title, or (C1 `CSI`,
//!   `OSC`) do the same in one character on terminals that honour 8-bit controls;
//! - bidirectional formatting (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), which
//!   makes text display in another order than it is (a digest or an identity that reads as
//!   another);
//! - the line and paragraph separators U+2028 and U+2029, which some terminals break lines at.
//!
//! Each is replaced by a visible escape (`\u{1b}`, `\n`), so the operator sees that it was
//! there. [`one_line`] escapes line breaks and tabs too (for a value inside a line: a reason,
//! a title, an identity); [`for_terminal`] keeps `\n` and `\t` (for whole lines Warrant
//! composed, in which every untrusted value has already been through [`one_line`] or is
//! neutralised here).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as is (see the module docs).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !is_unsafe(c) || keep(c) {
            out.push(c);
        } else if c.is_ascii() {
            // `\n`, `\t`, `\r`, `\0`, `\u{1b}`, …
            let _ = write!(out, "{}", c.escape_default());
        } else {
            let _ = write!(out, "{}", c.escape_unicode());
        }
    }
    Cow::Owned(out)
}

/// `text` with every unsafe character — line breaks and tabs included — escaped: a value to
/// put inside a line.
pub fn one_line(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// `text` with every unsafe character escaped but `\n` and `\t`: lines to print.
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n' || c == '\t')
}

/// At most `max_chars` characters of `text`, then [`one_line`]: an untrusted value quoted in
/// a message.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let cut: String = text.chars().take(max_chars).collect();
    one_line(&cut).into_owned()
}

/// JSON text (as `serde_json` writes it) with every unsafe character inside its strings
/// written as a `\uXXXX` escape: the same JSON value, safe to print. (`serde_json` escapes C0
/// controls itself; DEL, C1 and the rest it writes raw. Outside strings JSON text is ASCII.)
pub fn json(text: &str) -> Cow<'_, str> {
    // C0 controls only occur raw outside strings, as the layout's own whitespace.
    let unsafe_in_json = |c: char| is_unsafe(c) && u32::from(c) >= 0x20;
    if !text.chars().any(unsafe_in_json) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_in_json(c) {
            let mut units = [0_u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c0_c1_del_and_bidi_controls_are_escaped() {
        assert_eq!(one_line("a\u{1b}]0;pwned\u{7}b"), "a\\u{1b}]0;pwned\\u{7}b");
        assert_eq!(one_line("csi\u{9b}2J"), "csi\\u{9b}2J");
        assert_eq!(one_line("del\u{7f}"), "del\\u{7f}");
        assert_eq!(one_line("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(one_line("iso\u{2066}x\u{2069}"), "iso\\u{2066}x\\u{2069}");
        assert_eq!(one_line("line\u{2028}sep"), "line\\u{2028}sep");
        assert_eq!(one_line("two\nlines\tand\rcr"), "two\\nlines\\tand\\rcr");
        assert_eq!(for_terminal("two\nlines\tand\rcr"), "two\nlines\tand\\rcr");
    }

    #[test]
    fn json_keeps_its_value_and_loses_the_controls() {
        let value = serde_json::json!({"reason": "a\u{9b}b\u{202e}c\u{7f}\u{1b}"});
        for text in [
            serde_json::to_string(&value).unwrap(),
            serde_json::to_string_pretty(&value).unwrap(),
        ] {
            let safe = json(&text);
            assert!(!safe.chars().any(|c| is_unsafe(c) && c != '\n'), "{safe}");
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&safe).unwrap(),
                value
            );
        }
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for text in [
            "sha256:0e40b5",
            "https://github.com/acme",
            "é ü 漢字 🦀",
            "",
        ] {
            assert!(matches!(one_line(text), Cow::Borrowed(t) if t == text));
            assert!(matches!(for_terminal(text), Cow::Borrowed(t) if t == text));
        }
    }

    /// Every character in the ranges named is escaped; every other character below U+3000 but
    /// the C0/C1 controls is kept.
    #[test]
    fn exactly_the_named_ranges_are_unsafe() {
        for code in 0..0x3000_u32 {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            let expected = code < 0x20
                || (0x7f..=0x9f).contains(&code)
                || [0x061C, 0x200E, 0x200F, 0x2028, 0x2029].contains(&code)
                || (0x202A..=0x202E).contains(&code)
                || (0x2066..=0x2069).contains(&code);
            assert_eq!(is_unsafe(c), expected, "U+{code:04X}");
        }
    }
}
