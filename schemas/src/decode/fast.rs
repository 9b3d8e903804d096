//! The fast path: a hand-written scanner for well-formed events.
//!
//! It fills the same [`RawEvent`] as the serde walk, borrowing every string,
//! and gives up (`None`) at the first thing it does not handle: an escape in
//! a key or a string value, a duplicate key, a value of the wrong type, a
//! number outside the simple forms, deep nesting, or any syntax error. The
//! caller then runs the serde walk, which stays the single authority on
//! errors. So this may only accept what the serde walk accepts, with the
//! same field values; a property test holds it to that.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::{RawEvent, Text};

/// Nesting deeper than this inside a raw value is left to serde (whose own
/// limit is 128 levels, counted from the top).
const MAX_DEPTH: usize = 64;

const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Scans `text` as one JSON object holding an event; `None` means "use the
/// serde walk".
pub(super) fn scan(text: &str) -> Option<RawEvent<'_>> {
    let mut s = Scanner {
        text,
        b: text.as_bytes(),
        i: 0,
    };
    let mut raw = RawEvent::default();
    let mut seen = 0u32;
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.peek()? == b'}' {
        s.i += 1;
    } else {
        loop {
            let key = s.string()?;
            s.ws();
            s.eat(b':')?;
            s.ws();
            s.field(key, &mut raw, &mut seen)?;
            s.ws();
            match s.next()? {
                b',' => s.ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == s.b.len()).then_some(raw)
}

struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    /// A string without escapes or control characters, borrowed.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let end = string_end(self.b, start)?;
        self.i = end + 1;
        // Both ends are ASCII quotes, so char boundaries.
        self.text.get(start..end)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// `null` gives `Some(None)`; anything that is not `null` or a string, `None`.
    fn opt_string(&mut self) -> Option<Option<Text<'a>>> {
        match self.peek()? {
            b'"' => Some(Some(Cow::Borrowed(self.string()?))),
            b'n' => self.literal(b"null").map(|()| None),
            _ => None,
        }
    }

    /// An integer as serde reads one into `i64`: no fraction, no exponent.
    fn opt_int(&mut self) -> Option<Option<i64>> {
        if self.peek()? == b'n' {
            return self.literal(b"null").map(|()| None);
        }
        let negative = self.peek()? == b'-';
        if negative {
            self.i += 1;
        }
        let (value, digits) = self.digits()?;
        // serde reads `-0` as the float -0.0, a wrong type for an integer.
        if digits > 18
            || (negative && value == 0)
            || matches!(self.peek(), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        let value = value as i64;
        Some(Some(if negative { -value } else { value }))
    }

    /// A non-negative number with at most 15 significant digits and no
    /// exponent: exactly the value serde's parser gives (one correctly
    /// rounded division of exact operands).
    fn opt_num(&mut self) -> Option<Option<f64>> {
        if self.peek()? == b'n' {
            return self.literal(b"null").map(|()| None);
        }
        let (int, int_digits) = self.digits()?;
        let (frac, frac_digits) = if self.peek() == Some(b'.') {
            self.i += 1;
            self.digits_any()?
        } else {
            (0, 0)
        };
        if int_digits + frac_digits > 15 || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        if frac_digits == 0 {
            // No fraction: serde's integer path, then `as f64`.
            return (self.b[self.i - 1] != b'.').then_some(Some(int as f64));
        }
        // Below 10^15, so exact in an f64, as is the power of ten.
        let significand = int * 10u64.pow(frac_digits as u32) + frac;
        Some(Some(significand as f64 / POW10[frac_digits]))
    }

    /// JSON integer digits (no leading zero unless alone), at most 19.
    fn digits(&mut self) -> Option<(u64, usize)> {
        let start = self.i;
        let (value, n) = self.digits_any()?;
        if n == 0 || (n > 1 && self.b[start] == b'0') {
            return None;
        }
        Some((value, n))
    }

    fn digits_any(&mut self) -> Option<(u64, usize)> {
        let start = self.i;
        let mut value = 0u64;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            if self.i - start >= 19 {
                return None;
            }
            value = value * 10 + u64::from(c - b'0');
            self.i += 1;
        }
        Some((value, self.i - start))
    }

    /// An array of strings, or `null`.
    fn opt_strings(&mut self) -> Option<Option<Vec<Text<'a>>>> {
        if self.peek()? == b'n' {
            return self.literal(b"null").map(|()| None);
        }
        self.eat(b'[')?;
        let mut out = Vec::new();
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(Some(out));
        }
        loop {
            out.push(Cow::Borrowed(self.string()?));
            self.ws();
            match self.next()? {
                b',' => self.ws(),
                b']' => return Some(Some(out)),
                _ => return None,
            }
        }
    }

    /// An object of string values with distinct keys, or `null`.
    #[allow(clippy::type_complexity)]
    fn opt_string_map(&mut self) -> Option<Option<BTreeMap<Text<'a>, Text<'a>>>> {
        if self.peek()? == b'n' {
            return self.literal(b"null").map(|()| None);
        }
        self.eat(b'{')?;
        let mut out = BTreeMap::new();
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(Some(out));
        }
        loop {
            let key = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            let value = self.string()?;
            if out
                .insert(Cow::Borrowed(key), Cow::Borrowed(value))
                .is_some()
            {
                return None;
            }
            self.ws();
            match self.next()? {
                b',' => self.ws(),
                b'}' => return Some(Some(out)),
                _ => return None,
            }
        }
    }

    /// Any JSON value, kept as its text. The scan only finds where the value
    /// ends; serde then checks that the text is exactly one valid value.
    fn raw(&mut self) -> Option<&'a RawValue> {
        let start = self.i;
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'{' | b'[' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return None;
                    }
                    self.i += 1;
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    self.i += 1;
                }
                b'"' => {
                    self.i += 1;
                    self.skip_string_body()?;
                }
                b'-' | b'+' | b'.' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' => {
                    while let Some(b'-' | b'+' | b'.' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z') =
                        self.peek()
                    {
                        self.i += 1;
                    }
                }
                b',' | b':' | b' ' | b'\n' | b'\r' | b'\t' if depth > 0 => self.i += 1,
                _ => return None,
            }
            if depth == 0 {
                break;
            }
        }
        serde_json::from_str(self.text.get(start..self.i)?).ok()
    }

    /// Skips to just past the closing quote, over escapes.
    fn skip_string_body(&mut self) -> Option<()> {
        loop {
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => {
                    self.next()?;
                }
                _ => {}
            }
        }
    }

    /// Reads the value of `key` into its slot. A key seen before, or a value
    /// of the wrong type, gives up.
    fn field(&mut self, key: &'a str, raw: &mut RawEvent<'a>, seen: &mut u32) -> Option<()> {
        macro_rules! slot {
            ($bit:expr, $slot:expr, $read:ident) => {{
                let bit = 1u32 << $bit;
                if *seen & bit != 0 {
                    return None;
                }
                *seen |= bit;
                $slot = self.$read()?;
            }};
        }
        match key {
            "schema_version" => slot!(0, raw.schema_version, opt_int),
            "event_id" => slot!(1, raw.event_id, opt_string),
            "time" => slot!(2, raw.time, opt_string),
            "tenant_id" => slot!(3, raw.tenant_id, opt_string),
            "user_id" => slot!(4, raw.user_id, opt_string),
            "server" => slot!(5, raw.server, opt_string),
            "method" => slot!(6, raw.method, opt_string),
            "decision" => slot!(7, raw.decision, opt_string),
            "status" => slot!(8, raw.status, opt_int),
            "tool" => slot!(9, raw.tool, opt_string),
            "resource" => slot!(10, raw.resource, opt_string),
            "arguments" => slot!(11, raw.arguments, opt_raw),
            "scopes" => slot!(12, raw.scopes, opt_strings),
            "required_scope" => slot!(13, raw.required_scope, opt_string),
            "policy_id" => slot!(14, raw.policy_id, opt_string),
            "reason" => slot!(15, raw.reason, opt_string),
            "error_type" => slot!(16, raw.error_type, opt_string),
            "jsonrpc_error_code" => slot!(17, raw.jsonrpc_error_code, opt_int),
            "latency_ms" => slot!(18, raw.latency_ms, opt_num),
            "client_id" => slot!(19, raw.client_id, opt_string),
            "agent_id" => slot!(20, raw.agent_id, opt_string),
            "session_id" => slot!(21, raw.session_id, opt_string),
            "gateway_id" => slot!(22, raw.gateway_id, opt_string),
            "source_ip" => slot!(23, raw.source_ip, opt_string),
            "user_agent" => slot!(24, raw.user_agent, opt_string),
            "trace_id" => slot!(25, raw.trace_id, opt_string),
            "principal_type" => slot!(26, raw.principal_type, opt_string),
            "attributes" => slot!(27, raw.attributes, opt_string_map),
            other => {
                let value = self.raw()?;
                if raw.extra.insert(Cow::Borrowed(other), value).is_some() {
                    return None;
                }
            }
        }
        Some(())
    }

    /// `null` gives `Some(None)`, as serde's `Option` does.
    fn opt_raw(&mut self) -> Option<Option<&'a RawValue>> {
        if self.peek()? == b'n' {
            return self.literal(b"null").map(|()| None);
        }
        self.raw().map(Some)
    }
}

/// Where the string whose body starts at `i` ends (its closing quote), or
/// `None` if it holds an escape or a control character first, or never ends.
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Eight bytes at a time: flag `"`, `\` and bytes below 0x20. The lowest
    // flag is exact (false flags only appear above a true one).
    while let Some(chunk) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let quote = x ^ (ONES * u64::from(b'"'));
        let slash = x ^ (ONES * u64::from(b'\\'));
        let flags = (quote.wrapping_sub(ONES) & !quote)
            | (slash.wrapping_sub(ONES) & !slash)
            | (x.wrapping_sub(ONES * 0x20) & !x);
        let flags = flags & HIGH;
        if flags != 0 {
            let j = i + (flags.trailing_zeros() / 8) as usize;
            return (b[j] == b'"').then_some(j);
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => return Some(i),
            b'\\' | 0..=0x1f => return None,
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_end_stops_at_the_first_quote_and_refuses_escapes_and_controls() {
        assert_eq!(string_end(b"abc\"", 0), Some(3));
        assert_eq!(string_end(b"abcdefghijklmnop\"x\"", 0), Some(16));
        assert_eq!(string_end("é€𝄞abcdefgh\"".as_bytes(), 0), Some(17));
        assert_eq!(string_end(b"abcdefg\\\"", 0), None);
        assert_eq!(string_end(b"abc\ndefghijk\"", 0), None);
        assert_eq!(string_end(b"abcdefghijk", 0), None);
        // A control byte after the quote does not matter.
        assert_eq!(string_end(b"ab\"\x01cdefgh", 0), Some(2));
    }
}
