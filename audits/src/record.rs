//! Records: their canonical JSON form, their validation, and RFC 3339 UTC timestamps.
//!
//! A record is one line of `log.jsonl`:
//!
//! ```text
//! {"body":{…},"index":N,"kind":"…","time":"YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ"}
//! ```
//!
//! The canonical form is serde_json's compact output with **every object's keys sorted by their
//! UTF-8 bytes**, at every depth. The sort is done here, explicitly, rather than relied upon
//! from `serde_json::Map`: another crate in the workspace (Cedar) turns on serde_json's
//! `preserve_order` feature, and feature unification would silently make `Map` keep insertion
//! order in the broker's build. Strings are escaped as serde_json escapes them (only `"`, `\`
//! and control characters; non-ASCII is written as UTF-8).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// The largest record, in bytes, not counting its newline.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// The kind of the record `open` appends after repairing a torn tail. Callers cannot use it.
pub const RECOVERED_KIND: &str = "recovered";

/// The longest record kind, in bytes.
pub const MAX_KIND_BYTES: usize = 64;

/// How deeply a body may nest arrays and objects (serde_json refuses to parse beyond 128).
pub const MAX_BODY_DEPTH: usize = 64;

/// One record, as read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The record's position in the log, from 0.
    pub index: u64,
    /// When it was appended, RFC 3339 in UTC with nanoseconds (`2026-01-02T03:04:05.000000006Z`).
    pub time: String,
    /// What it records (`pull`, `verify`, `decide`, `instantiate`, `outcome`, `recovered`, …).
    pub kind: String,
    /// The caller's JSON object.
    pub body: Map<String, Value>,
}

impl Record {
    /// The record's time as a `SystemTime`.
    pub fn system_time(&self) -> Option<SystemTime> {
        parse_time(&self.time)
    }
}

/// Why a value cannot become a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The kind is empty, too long, reserved or uses characters outside `[a-z0-9._-]`.
    #[error("invalid record kind {0:?}: want 1 to 64 of [a-z0-9._-], starting with a letter")]
    Kind(String),
    /// The kind `recovered` is written by the log itself.
    #[error("the record kind \"recovered\" is reserved for the log's own recovery records")]
    ReservedKind,
    /// The body is not a JSON object, or nests too deeply.
    #[error("invalid record body: {0}")]
    Body(String),
    /// The time is before 1970 or after 9999.
    #[error("record time out of range (1970 to 9999)")]
    Time,
    /// The canonical record is larger than [`MAX_RECORD_BYTES`].
    #[error("record is {size} bytes, over the {max} byte limit")]
    TooLarge {
        /// The record's canonical size.
        size: usize,
        /// The limit.
        max: usize,
    },
}

/// Checks a record kind: 1 to 64 bytes of `[a-z0-9._-]`, starting with a lowercase letter.
pub(crate) fn valid_kind(kind: &str) -> bool {
    let b = kind.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_KIND_BYTES
        && b.first().is_some_and(u8::is_ascii_lowercase)
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

/// Serializes `value` canonically (sorted keys, compact) onto `out`.
pub(crate) fn write_canonical(
    value: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_BODY_DEPTH + 1 {
        return Err(format!("nested deeper than {MAX_BODY_DEPTH} levels"));
    }
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).map_err(|e| e.to_string())?;
                out.push(b':');
                write_canonical(v, out, depth + 1)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out, depth + 1)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).map_err(|e| e.to_string())?,
    }
    Ok(())
}

/// The canonical bytes of a record (no newline). `kind` must already be valid.
pub(crate) fn encode(
    index: u64,
    time: SystemTime,
    kind: &str,
    body: Value,
) -> Result<Vec<u8>, RecordError> {
    if !valid_kind(kind) {
        return Err(RecordError::Kind(kind.to_owned()));
    }
    if !body.is_object() {
        return Err(RecordError::Body(
            "the body must be a JSON object".to_owned(),
        ));
    }
    let time = format_time(time).ok_or(RecordError::Time)?;
    let mut record = Map::new();
    record.insert("body".to_owned(), body);
    record.insert("index".to_owned(), Value::from(index));
    record.insert("kind".to_owned(), Value::from(kind));
    record.insert("time".to_owned(), Value::from(time));
    let mut out = Vec::with_capacity(256);
    write_canonical(&Value::Object(record), &mut out, 0).map_err(RecordError::Body)?;
    if out.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge {
            size: out.len(),
            max: MAX_RECORD_BYTES,
        });
    }
    Ok(out)
}

/// What is wrong with one line of `log.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordProblem {
    /// The line is longer than [`MAX_RECORD_BYTES`] (it was not read into memory).
    #[error("line longer than {MAX_RECORD_BYTES} bytes")]
    Oversize,
    /// The line is not JSON (or not UTF-8).
    #[error("not JSON: {0}")]
    BadJson(String),
    /// The line is JSON but not in canonical form (key order, spacing, escapes, duplicates).
    #[error("JSON not in canonical form")]
    NotCanonical,
    /// The line is canonical JSON but not a record (fields, types, time, kind).
    #[error("not a record: {0}")]
    Malformed(String),
    /// The record's `index` is not its position in the log.
    #[error("record at position {expected} says index {found}")]
    IndexMismatch {
        /// The position.
        expected: u64,
        /// What the record says.
        found: u64,
    },
    /// Every record parses, but the records from this one up to `checkpoint_size` do not hash
    /// to the root checkpoint `checkpoint` signed: one of them was altered, inserted or
    /// reordered. This one is the first record no checkpoint proves; with a checkpoint after
    /// every append (`checkpoint_size == index + 1`) it is exactly the altered record.
    #[error(
        "the records from here up to size {checkpoint_size} do not match the root signed by \
         checkpoint {checkpoint}: one of them was altered, inserted or reordered"
    )]
    RootMismatch {
        /// The ordinal of the checkpoint (from 0) in `checkpoints`.
        checkpoint: u64,
        /// Its byte offset in `checkpoints`.
        checkpoint_offset: u64,
        /// The size it signed.
        checkpoint_size: u64,
    },
    /// The log ends here, but checkpoint `checkpoint` signed `checkpoint_size` records:
    /// acknowledged records were removed (truncation below a checkpoint).
    #[error("log ends here, but checkpoint {checkpoint} signed {checkpoint_size} records")]
    Missing {
        /// The ordinal of the checkpoint (from 0) in `checkpoints`.
        checkpoint: u64,
        /// Its byte offset in `checkpoints`.
        checkpoint_offset: u64,
        /// The size it signed.
        checkpoint_size: u64,
    },
    /// As [`RecordProblem::RootMismatch`], for the root signed by the head checkpoint (the
    /// `head` file): the records from this one up to `head_size` do not hash to it.
    #[error(
        "the records from here up to size {head_size} do not match the root signed by the \
         head checkpoint (file `head`): one of them was altered, inserted or reordered"
    )]
    HeadRootMismatch {
        /// The size the head signed.
        head_size: u64,
    },
    /// As [`RecordProblem::Missing`], for the head checkpoint: the log ends here, but the
    /// head signed `head_size` records.
    #[error("log ends here, but the head checkpoint (file `head`) signed {head_size} records")]
    HeadMissing {
        /// The size the head signed.
        head_size: u64,
    },
}

/// Parses and checks one line (without its newline) that must hold the record at `expected`.
pub(crate) fn parse_line(line: &[u8], expected: u64) -> Result<Record, RecordProblem> {
    if line.len() > MAX_RECORD_BYTES {
        return Err(RecordProblem::Oversize);
    }
    let value: Value =
        serde_json::from_slice(line).map_err(|e| RecordProblem::BadJson(e.to_string()))?;
    let mut again = Vec::with_capacity(line.len());
    write_canonical(&value, &mut again, 0).map_err(|_| RecordProblem::NotCanonical)?;
    if again != line {
        return Err(RecordProblem::NotCanonical);
    }
    let Value::Object(mut map) = value else {
        return Err(RecordProblem::Malformed("not a JSON object".to_owned()));
    };
    if map.len() != 4 {
        return Err(RecordProblem::Malformed(
            "want exactly the fields body, index, kind, time".to_owned(),
        ));
    }
    let index = map
        .get("index")
        .and_then(Value::as_u64)
        .ok_or_else(|| RecordProblem::Malformed("index is not an unsigned integer".to_owned()))?;
    if index != expected {
        return Err(RecordProblem::IndexMismatch {
            expected,
            found: index,
        });
    }
    let time = match map.remove("time") {
        Some(Value::String(t)) if parse_time(&t).is_some() => t,
        _ => {
            return Err(RecordProblem::Malformed(
                "time is not YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ".to_owned(),
            ));
        }
    };
    let kind = match map.remove("kind") {
        Some(Value::String(k)) if valid_kind(&k) => k,
        _ => return Err(RecordProblem::Malformed("invalid kind".to_owned())),
    };
    let body = match map.remove("body") {
        Some(Value::Object(b)) => b,
        _ => return Err(RecordProblem::Malformed("body is not an object".to_owned())),
    };
    Ok(Record {
        index,
        time,
        kind,
        body,
    })
}

// ---- The fast check: `parse_line` without building the record.

/// Whether `line` is the canonical record at `expected`, decided in one pass over its bytes
/// without building a JSON value: for readers that need only the verdict (`verify`, `open`).
///
/// It is deliberately partial: `true` means [`parse_line`] would accept the line; `false`
/// means "not decided here" (anything unusual: floats, negative or long numbers, `\u`
/// escapes the canonical form never writes, nesting near the limit, errors), and the caller
/// must ask [`parse_line`], which gives the precise answer and the precise problem. The
/// tests compare the two on every line of the tamper corpus.
pub(crate) fn is_canonical_record(line: &[u8], expected: u64) -> bool {
    if line.len() > MAX_RECORD_BYTES || std::str::from_utf8(line).is_err() {
        return false;
    }
    let mut c = Cursor { b: line, i: 0 };
    let ok = c.eat_str(b"{\"body\":")
        && c.peek() == Some(b'{')
        && c.value(1)
        && c.eat_str(b",\"index\":")
        && c.uint() == Some(expected)
        && c.eat_str(b",\"kind\":")
        && c.plain_string()
            .and_then(|k| std::str::from_utf8(k).ok())
            .is_some_and(valid_kind)
        && c.eat_str(b",\"time\":")
        && c.plain_string()
            .and_then(|t| std::str::from_utf8(t).ok())
            .is_some_and(|t| parse_time(t).is_some())
        && c.eat(b'}');
    ok && c.i == line.len()
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.i += 1;
        }
        hit
    }

    fn eat_str(&mut self, s: &[u8]) -> bool {
        let hit = self.b.get(self.i..self.i + s.len()) == Some(s);
        if hit {
            self.i += s.len();
        }
        hit
    }

    /// A value at `depth` (the record is depth 0), as `write_canonical` would write it.
    fn value(&mut self, depth: usize) -> bool {
        if depth > MAX_BODY_DEPTH {
            // Near the limit: let `parse_line` decide.
            return false;
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().is_some(),
            Some(b't') => self.eat_str(b"true"),
            Some(b'f') => self.eat_str(b"false"),
            Some(b'n') => self.eat_str(b"null"),
            Some(b'0'..=b'9') => self.uint().is_some(),
            _ => false,
        }
    }

    fn object(&mut self, depth: usize) -> bool {
        self.i += 1; // '{'
        if self.eat(b'}') {
            return true;
        }
        let mut previous: Option<Key<'a>> = None;
        loop {
            let Some(key) = self.string() else {
                return false;
            };
            // Strictly increasing by the unescaped bytes: sorted, no duplicates.
            if previous.is_some_and(|p| p.cmp_unescaped(&key) != std::cmp::Ordering::Less) {
                return false;
            }
            previous = Some(key);
            if !self.eat(b':') || !self.value(depth + 1) {
                return false;
            }
            if self.eat(b'}') {
                return true;
            }
            if !self.eat(b',') {
                return false;
            }
        }
    }

    fn array(&mut self, depth: usize) -> bool {
        self.i += 1; // '['
        if self.eat(b']') {
            return true;
        }
        loop {
            if !self.value(depth + 1) {
                return false;
            }
            if self.eat(b']') {
                return true;
            }
            if !self.eat(b',') {
                return false;
            }
        }
    }

    /// A string as serde_json writes it: raw bytes except `"`, `\` and controls, which are
    /// escaped as `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t` or `\u00xx` (lowercase hex).
    fn string(&mut self) -> Option<Key<'a>> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.i;
        let mut escaped = false;
        loop {
            match self.peek()? {
                b'"' => {
                    let raw = self.b.get(start..self.i)?;
                    self.i += 1;
                    return Some(Key { raw, escaped });
                }
                b'\\' => {
                    escaped = true;
                    self.i += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            let hex = self.b.get(self.i + 1..self.i + 5)?;
                            let code = unescape_u(hex)?;
                            if matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None;
                            }
                            self.i += 5;
                        }
                        _ => return None,
                    }
                }
                c if c < 0x20 => return None,
                _ => self.i += 1,
            }
        }
    }

    /// A string with no escapes (kinds and times have none).
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.string().filter(|k| !k.escaped).map(|k| k.raw)
    }

    /// An unsigned integer in canonical form that certainly fits in a u64 (at most 19 digits);
    /// anything else is left to `parse_line`.
    fn uint(&mut self) -> Option<u64> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let digits = self.b.get(start..self.i)?;
        if digits.is_empty()
            || digits.len() > 19
            || (digits.len() > 1 && digits.first() == Some(&b'0'))
            || matches!(self.peek(), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        digits.iter().try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
    }
}

/// `\u00xx` with lowercase hex and a control character: its value.
fn unescape_u(hex: &[u8]) -> Option<u8> {
    let [b'0', b'0', hi, lo] = *hex else {
        return None;
    };
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let code = digit(hi)? * 16 + digit(lo)?;
    (code < 0x20).then_some(code)
}

/// A string's raw bytes between its quotes.
#[derive(Clone, Copy)]
struct Key<'a> {
    raw: &'a [u8],
    escaped: bool,
}

impl Key<'_> {
    fn unescaped(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.raw.len());
        let mut bytes = self.raw.iter().copied();
        while let Some(b) = bytes.next() {
            if b != b'\\' {
                out.push(b);
                continue;
            }
            match bytes.next() {
                Some(b'b') => out.push(0x08),
                Some(b'f') => out.push(0x0c),
                Some(b'n') => out.push(b'\n'),
                Some(b'r') => out.push(b'\r'),
                Some(b't') => out.push(b'\t'),
                Some(b'u') => {
                    let hex: Vec<u8> = bytes.by_ref().take(4).collect();
                    out.push(unescape_u(&hex).unwrap_or(0));
                }
                Some(other) => out.push(other),
                None => {}
            }
        }
        out
    }

    fn cmp_unescaped(&self, other: &Key<'_>) -> std::cmp::Ordering {
        if self.escaped || other.escaped {
            self.unescaped().cmp(&other.unescaped())
        } else {
            self.raw.cmp(other.raw)
        }
    }
}

// ---- Time: RFC 3339, UTC, always nanoseconds: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (30 bytes).

const SECONDS_PER_DAY: u64 = 86_400;
const TIME_LEN: usize = 30;

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// (year >= 1970, month, day) to days since 1970-01-01; Hinnant's `days_from_civil`.
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d.checked_sub(1)?;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

/// Formats a time as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`; `None` before 1970 or after 9999.
pub fn format_time(t: SystemTime) -> Option<String> {
    let since = t.duration_since(UNIX_EPOCH).ok()?;
    let secs = since.as_secs();
    let (y, mo, d) = civil_from_days(secs / SECONDS_PER_DAY);
    if y > 9999 {
        return None;
    }
    let rem = secs % SECONDS_PER_DAY;
    Some(format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since.subsec_nanos()
    ))
}

/// Parses exactly the form [`format_time`] writes (and nothing else: the canonical form is
/// checked by formatting the result again).
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != TIME_LEN {
        return None;
    }
    let num = |start: usize, len: usize| -> Option<u64> {
        let digits = b.get(start..start + len)?;
        digits.iter().try_fold(0u64, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, sec, nanos) = (num(11, 2)?, num(14, 2)?, num(17, 2)?, num(20, 9)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let days = days_from_civil(y, mo, d)?;
    let secs = days * SECONDS_PER_DAY + h * 3600 + mi * 60 + sec;
    let t = UNIX_EPOCH.checked_add(Duration::new(secs, u32::try_from(nanos).ok()?))?;
    // Rejects 02-30, separators other than `-`, `T`, `:`, `.`, `Z`, and anything else odd.
    (format_time(t).as_deref() == Some(s)).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn time_format_known_values() {
        assert_eq!(
            format_time(at(0, 0)).unwrap(),
            "1970-01-01T00:00:00.000000000Z"
        );
        assert_eq!(
            format_time(at(1_700_000_000, 123)).unwrap(),
            "2023-11-14T22:13:20.000000123Z"
        );
        // 2024-02-29 (leap day) 12:00:00.5
        assert_eq!(
            format_time(at(1_709_208_000, 500_000_000)).unwrap(),
            "2024-02-29T12:00:00.500000000Z"
        );
        // 2000-03-01, after a 400-year leap day.
        assert_eq!(
            format_time(at(951_868_800, 0)).unwrap(),
            "2000-03-01T00:00:00.000000000Z"
        );
        assert_eq!(
            format_time(at(253_402_300_799, 999_999_999)).unwrap(),
            "9999-12-31T23:59:59.999999999Z"
        );
        assert_eq!(format_time(at(253_402_300_800, 0)), None);
        assert_eq!(format_time(UNIX_EPOCH - Duration::from_secs(1)), None);
    }

    #[test]
    fn time_parse_round_trips_and_is_strict() {
        for secs in (0..4_000_000_000u64).step_by(7_654_321) {
            let t = at(secs, (secs % 1_000_000_007) as u32 % 1_000_000_000);
            let s = format_time(t).unwrap();
            assert_eq!(parse_time(&s), Some(t), "{s}");
        }
        for bad in [
            "2024-02-30T00:00:00.000000000Z",
            "2023-02-29T00:00:00.000000000Z",
            "2024-13-01T00:00:00.000000000Z",
            "2024-01-01T24:00:00.000000000Z",
            "2024-01-01T00:60:00.000000000Z",
            "2024-01-01T00:00:60.000000000Z",
            "2024-01-01t00:00:00.000000000Z",
            "2024-01-01T00:00:00.000000000z",
            "2024-01-01T00:00:00.000000000+",
            "2024-01-01 00:00:00.000000000Z",
            "2024-01-01T00:00:00.00000000Z",
            "2024-01-01T00:00:00Z",
            "1969-12-31T23:59:59.000000000Z",
            "+024-01-01T00:00:00.000000000Z",
            "2024-00-01T00:00:00.000000000Z",
            "2024-01-00T00:00:00.000000000Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    /// The fast check is sound: whatever it accepts, `parse_line` accepts, on canonical lines
    /// and on every single-byte change of them; and it decides the ordinary shapes itself.
    #[test]
    fn fast_check_never_accepts_what_parse_line_refuses() {
        let bodies = [
            json!({}),
            json!({"digest": "sha256:00", "n": 0, "big": 1_234_567_890_123_456_789u64,
                   "list": [1, true, null, false, "x", [], {}], "nested": {"a": {"b": [{"c": 10}]}}}),
            json!({"s": "quote \" backslash \\ tab \t nl \n cr \r bs \u{8} ff \u{c} nul \u{0} us \u{1f} del \u{7f}"}),
            json!({"é": "ü ✓ \u{2028} \u{10ffff}", "a\"": 1, "a#": 2, "a\n": 3, "A": 4, "": 5}),
            json!({"float": 1.5, "neg": -3, "exp": 1e100, "max": u64::MAX, "min": i64::MIN}),
        ];
        let mut lines = Vec::new();
        for (i, body) in bodies.into_iter().enumerate() {
            let line = encode(
                i as u64,
                UNIX_EPOCH + Duration::new(1_767_225_600, 7),
                "pull",
                body,
            )
            .unwrap();
            assert!(parse_line(&line, i as u64).is_ok());
            lines.push((i as u64, line));
        }
        // The shapes Warrant writes are decided by the fast path (floats and negative numbers
        // are left to `parse_line`).
        for (i, line) in &lines[..4] {
            assert!(
                is_canonical_record(line, *i),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert!(!is_canonical_record(&lines[4].1, 4));
        let mut checked = 0;
        for (i, line) in &lines {
            assert!(!is_canonical_record(line, i + 1), "wrong index accepted");
            for pos in 0..line.len() {
                for b in [
                    b' ', b'"', b'\\', b'0', b'9', b'a', b'{', b'}', b',', b':', 0x7f, 0x1f, 0xc3,
                ] {
                    let mut m = line.clone();
                    if m[pos] == b {
                        continue;
                    }
                    m[pos] = b;
                    if is_canonical_record(&m, *i) {
                        assert!(
                            parse_line(&m, *i).is_ok(),
                            "fast check accepted {}",
                            String::from_utf8_lossy(&m)
                        );
                    }
                    checked += 1;
                }
                // Deleted and duplicated bytes.
                let mut m = line.clone();
                m.remove(pos);
                if is_canonical_record(&m, *i) {
                    assert!(parse_line(&m, *i).is_ok());
                }
                let mut m = line.clone();
                m.insert(pos, line[pos]);
                if is_canonical_record(&m, *i) {
                    assert!(parse_line(&m, *i).is_ok());
                }
            }
        }
        assert!(checked > 5_000, "{checked}");
    }

    #[test]
    fn canonical_form_sorts_keys_at_every_depth() {
        // Inserted out of order: with serde_json's `preserve_order` (on in the broker's build)
        // the map keeps this order, so the sort must be ours.
        let mut inner = Map::new();
        inner.insert("z".into(), json!(1));
        inner.insert("a".into(), json!([{"y": true, "b": null}]));
        inner.insert("é".into(), json!("x\"y\n\u{1}"));
        inner.insert("B".into(), json!(-2.5));
        let mut out = Vec::new();
        write_canonical(&Value::Object(inner), &mut out, 0).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"B":-2.5,"a":[{"b":null,"y":true}],"z":1,"é":"x\"y\n\u0001"}"#
        );
    }

    #[test]
    fn encode_then_parse() {
        let t = at(1_700_000_000, 42);
        let line = encode(
            7,
            t,
            "decide",
            json!({"allow": false, "reason": "no policy", "n": 1.5e300}),
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&line).unwrap(),
            r#"{"body":{"allow":false,"n":1.5e+300,"reason":"no policy"},"index":7,"kind":"decide","time":"2023-11-14T22:13:20.000000042Z"}"#
        );
        let r = parse_line(&line, 7).unwrap();
        assert_eq!(
            (r.index, r.kind.as_str(), r.system_time()),
            (7, "decide", Some(t))
        );
        assert_eq!(r.body.get("reason"), Some(&json!("no policy")));
        assert_eq!(
            parse_line(&line, 8),
            Err(RecordProblem::IndexMismatch {
                expected: 8,
                found: 7
            })
        );
        // Floats survive the round trip exactly (serde_json `float_roundtrip`).
        for x in [
            0.1f64,
            1.0 / 3.0,
            2.2250738585072014e-308,
            9007199254740993.0,
            -0.0,
            5e-324,
        ] {
            let line = encode(0, t, "outcome", json!({ "x": x })).unwrap();
            assert!(
                parse_line(&line, 0).is_ok(),
                "{}",
                String::from_utf8_lossy(&line)
            );
        }
    }

    #[test]
    fn encode_rejects_bad_input() {
        let t = at(1, 0);
        assert_eq!(
            encode(0, t, "", json!({})),
            Err(RecordError::Kind(String::new()))
        );
        assert!(matches!(
            encode(0, t, "Pull", json!({})),
            Err(RecordError::Kind(_))
        ));
        assert!(matches!(
            encode(0, t, "9lives", json!({})),
            Err(RecordError::Kind(_))
        ));
        assert!(matches!(
            encode(0, t, "a b", json!({})),
            Err(RecordError::Kind(_))
        ));
        assert!(matches!(
            encode(0, t, &"k".repeat(65), json!({})),
            Err(RecordError::Kind(_))
        ));
        assert!(encode(0, t, &"k".repeat(64), json!({})).is_ok());
        assert!(matches!(
            encode(0, t, "pull", json!([1])),
            Err(RecordError::Body(_))
        ));
        assert!(matches!(
            encode(0, t, "pull", json!("s")),
            Err(RecordError::Body(_))
        ));
        assert_eq!(
            encode(0, UNIX_EPOCH - Duration::from_secs(1), "pull", json!({})),
            Err(RecordError::Time)
        );
        let big = "x".repeat(MAX_RECORD_BYTES);
        assert!(matches!(
            encode(0, t, "pull", json!({ "b": big })),
            Err(RecordError::TooLarge { .. })
        ));
        let mut deep = json!({});
        for _ in 0..MAX_BODY_DEPTH + 1 {
            deep = json!({ "d": deep });
        }
        assert!(matches!(
            encode(0, t, "pull", deep),
            Err(RecordError::Body(_))
        ));
        let mut ok = json!({});
        for _ in 0..MAX_BODY_DEPTH - 1 {
            ok = json!([ok]);
        }
        let line = encode(0, t, "pull", json!({ "d": ok })).unwrap();
        assert!(parse_line(&line, 0).is_ok());
    }

    #[test]
    fn parse_rejects_everything_but_canonical_records() {
        let good = r#"{"body":{},"index":0,"kind":"pull","time":"2023-11-14T22:13:20.000000042Z"}"#;
        assert!(parse_line(good.as_bytes(), 0).is_ok());
        type Check = fn(&RecordProblem) -> bool;
        let cases: &[(&str, Check)] = &[
            (
                r#"{"body":{},"index":0,"kind":"pull","time":"2023-11-14T22:13:20.000000042Z""#,
                |p| matches!(p, RecordProblem::BadJson(_)),
            ),
            (
                r#"{"body":{}, "index":0,"kind":"pull","time":"2023-11-14T22:13:20.000000042Z"}"#,
                |p| *p == RecordProblem::NotCanonical,
            ),
            (
                r#"{"index":0,"body":{},"kind":"pull","time":"2023-11-14T22:13:20.000000042Z"}"#,
                |p| *p == RecordProblem::NotCanonical,
            ),
            (
                r#"{"body":{},"index":0,"index":0,"kind":"pull","time":"2023-11-14T22:13:20.000000042Z"}"#,
                |p| *p == RecordProblem::NotCanonical,
            ),
            (
                r#"{"body":{},"index":0,"kind":"p\u0075ll","time":"2023-11-14T22:13:20.000000042Z"}"#,
                |p| *p == RecordProblem::NotCanonical,
            ),
            (
                r#"{"body":{},"index":0.0,"kind":"pull","time":"2023-11-14T22:13:20.000000042Z"}"#,
                |p| matches!(p, RecordProblem::Malformed(_)),
            ),
            (
                r#"{"body":{},"index":1,"kind":"pull","time":"2023-11-14T22:13:20.000000042Z"}"#,
                |p| {
                    *p == RecordProblem::IndexMismatch {
                        expected: 0,
                        found: 1,
                    }
                },
            ),
            (
                r#"{"body":{},"index":0,"kind":"pull","time":"2023-11-14T22:13:20.000000042Z","x":1}"#,
                |p| matches!(p, RecordProblem::Malformed(_)),
            ),
            (
                r#"{"body":{},"index":0,"kind":"pull","tim":"2023-11-14T22:13:20.000000042Z"}"#,
                |p| matches!(p, RecordProblem::Malformed(_)),
            ),
            (
                r#"{"body":{},"index":0,"kind":"pull","time":"2023-11-14T22:13:20.000000042"}"#,
                |p| matches!(p, RecordProblem::Malformed(_)),
            ),
            (
                r#"{"body":{},"index":0,"kind":"Pull","time":"2023-11-14T22:13:20.000000042Z"}"#,
                |p| matches!(p, RecordProblem::Malformed(_)),
            ),
            (
                r#"{"body":[],"index":0,"kind":"pull","time":"2023-11-14T22:13:20.000000042Z"}"#,
                |p| matches!(p, RecordProblem::Malformed(_)),
            ),
            (r#"[]"#, |p| matches!(p, RecordProblem::Malformed(_))),
        ];
        for (line, ok) in cases {
            let p = parse_line(line.as_bytes(), 0).unwrap_err();
            assert!(ok(&p), "{line}: {p:?}");
        }
        let mut invalid_utf8 = good.as_bytes().to_vec();
        invalid_utf8[48] = 0xff;
        assert!(matches!(
            parse_line(&invalid_utf8, 0),
            Err(RecordProblem::BadJson(_))
        ));
        assert_eq!(
            parse_line(&vec![b' '; MAX_RECORD_BYTES + 1], 0),
            Err(RecordProblem::Oversize)
        );
    }
}
