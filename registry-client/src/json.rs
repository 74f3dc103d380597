//! Bounded JSON parsing for documents an attacker writes (manifests, indexes, configs,
//! signatures).

use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::limits::MAX_JSON_DEPTH;

/// Parse `bytes` as `T`, refusing documents nested deeper than [`MAX_JSON_DEPTH`] before the
/// parser sees them. The caller has already bounded the length.
pub fn parse<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Error> {
    check_depth(bytes, MAX_JSON_DEPTH).map_err(|reason| Error::Malformed {
        what: what.to_owned(),
        reason,
    })?;
    serde_json::from_slice(bytes).map_err(|e| Error::Malformed {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

/// Scan for `[`/`{` nesting outside strings; error when it exceeds `max`.
pub fn check_depth(bytes: &[u8], max: usize) -> Result<(), String> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(format!("JSON nested deeper than {max} levels"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let doc = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse::<serde_json::Value>(doc.as_bytes(), "manifest").unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }));
        assert!(err.to_string().contains("nested deeper"));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let doc = format!(r#"{{"a":"{}\"{}"}}"#, "[".repeat(100), "{".repeat(100));
        assert!(check_depth(doc.as_bytes(), 2).is_ok());
    }

    #[test]
    fn shallow_documents_parse() {
        let v: serde_json::Value = parse(br#"{"a":[{"b":1}]}"#, "doc").unwrap();
        assert_eq!(v["a"][0]["b"], 1);
    }
}
