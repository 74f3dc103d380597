//! Output helpers shared by the commands.

/// An untrusted value inside a line of output: control and bidirectional characters, line
/// breaks included, escaped.
pub(super) fn q(text: &str) -> std::borrow::Cow<'_, str> {
    registry_client::text::one_line(text)
}

pub(super) fn print_json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        // The same JSON value, with any control or bidirectional character in its strings
        // written as an escape.
        Ok(s) => println!("{}", registry_client::text::json(&s)),
        Err(e) => errln!("warrant: error: cannot print JSON: {e}"),
    }
}
