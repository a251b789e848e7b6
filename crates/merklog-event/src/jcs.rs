//! RFC 8785 JSON Canonicalization Scheme (JCS) over [`serde_json::Value`].
//!
//! - Object members are sorted by their names' UTF-16 code units (§3.2.3).
//! - No whitespace between tokens (§3.2.1).
//! - Strings escape only `"`, `\`, and the C0 controls: `\b \f \n \r \t` by
//!   name, the rest as `\u00xx` with lowercase hex; everything else is
//!   written as literal UTF-8 (§3.2.2.2).
//! - Numbers are IEEE 754 doubles written the way ECMAScript's
//!   Number.prototype.toString writes them (§3.2.2.3): the shortest digits
//!   that read back to the same double (from `ryu`), laid out in plain or
//!   exponent form by the ECMAScript rules.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use crate::EventError;

/// Largest magnitude up to which every integer is exactly a double.
const TWO_POW_53: u64 = 1 << 53;

/// Returns the RFC 8785 canonical form of `v`.
///
/// # Errors
/// [`EventError::Invalid`] naming the path of an integer that no IEEE 754
/// double holds exactly (JCS would silently round it); send such values as
/// strings.
pub fn to_canonical(v: &Value) -> Result<Vec<u8>, EventError> {
    check_numbers(v, &mut String::new())?;
    let mut out = Vec::new();
    write_value(v, &mut out);
    Ok(out)
}

/// Writes the canonical form of `v`, converting every number to the nearest
/// double as RFC 8785 does. Callers that must not lose precision check the
/// numbers first ([`to_canonical`] does).
pub(crate) fn write_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| utf16_cmp(a.0, b.0));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_value(v, out);
            }
            out.push(b'}');
        }
    }
}

/// Orders names by their UTF-16 code units, as RFC 8785 §3.2.3 requires
/// (this differs from UTF-8 byte order for characters above U+FFFF versus
/// U+E000..=U+FFFF).
fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn check_numbers(v: &Value, path: &mut String) -> Result<(), EventError> {
    match v {
        Value::Number(n) => {
            if exact_double(n).is_none() {
                let field = if path.is_empty() { "(value)" } else { path };
                return Err(EventError::invalid(
                    field,
                    format!("integer {n} is not exactly an IEEE 754 double (RFC 8785 would round it); send it as a string"),
                ));
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_numbers(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                check_numbers(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Returns the double `n` stands for, or `None` when `n` is an integer that
/// no double holds exactly.
pub(crate) fn exact_double(n: &Number) -> Option<f64> {
    if let Some(u) = n.as_u64() {
        #[expect(clippy::cast_precision_loss, reason = "checked for exactness below")]
        let f = u as f64;
        return (u <= TWO_POW_53 || (f < 18_446_744_073_709_551_616.0 && f as u64 == u))
            .then_some(f);
    }
    if let Some(i) = n.as_i64() {
        #[expect(clippy::cast_precision_loss, reason = "checked for exactness below")]
        let f = i as f64;
        return (i.unsigned_abs() <= TWO_POW_53 || f as i64 == i).then_some(f);
    }
    n.as_f64()
}

fn write_number(n: &Number, out: &mut Vec<u8>) {
    let f = exact_double(n).unwrap_or_else(|| n.as_f64().unwrap_or(0.0));
    out.extend_from_slice(es_number(f).as_bytes());
}

/// Writes a finite double as ECMAScript's Number::toString does
/// (ECMA-262 §6.1.6.1.20, referenced by RFC 8785 §3.2.2.3).
pub(crate) fn es_number(f: f64) -> String {
    if f == 0.0 || !f.is_finite() {
        // -0 is written "0"; JSON has no NaN or infinities, so serde_json
        // never hands us one.
        return "0".to_owned();
    }
    let mut buf = ryu::Buffer::new();
    let shortest = buf.format_finite(f.abs());
    let (digits, n) = decimal_digits(shortest);
    let k = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let mut s = String::with_capacity(32);
    if f < 0.0 {
        s.push('-');
    }
    if k <= n && n <= 21 {
        s.push_str(&digits);
        for _ in 0..(n - k) {
            s.push('0');
        }
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        s.push_str(int);
        s.push('.');
        s.push_str(frac);
    } else if -6 < n && n <= 0 {
        s.push_str("0.");
        for _ in 0..(-n) {
            s.push('0');
        }
        s.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1);
        s.push_str(first);
        if !rest.is_empty() {
            s.push('.');
            s.push_str(rest);
        }
        s.push('e');
        s.push(if n - 1 < 0 { '-' } else { '+' });
        s.push_str(&(n - 1).abs().to_string());
    }
    s
}

/// Splits ryu's shortest text for a positive double into the significant
/// digits `s` (no leading or trailing zeros) and the exponent `n` such that
/// the value is `0.s × 10^n`, the `s` and `n` of ECMA-262's algorithm.
fn decimal_digits(text: &str) -> (String, i32) {
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = int.chars().chain(frac.chars()).collect();
    let mut n = i32::try_from(int.len()).unwrap_or(i32::MAX) + exp;
    while digits.starts_with('0') {
        digits.remove(0);
        n -= 1;
    }
    while digits.ends_with('0') {
        digits.pop();
    }
    (digits, n)
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0x0f)]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        String::from_utf8(to_canonical(v).unwrap()).unwrap()
    }

    #[test]
    fn escapes_only_what_rfc_8785_names() {
        let v = Value::String("\u{0}\u{1f}\"\\\u{8}\u{c}\n\r\t/\u{7f}\u{2028}é😀".to_owned());
        assert_eq!(
            canon(&v),
            "\"\\u0000\\u001f\\\"\\\\\\b\\f\\n\\r\\t/\u{7f}\u{2028}é😀\""
        );
    }

    #[test]
    fn sorts_names_by_utf16_code_units_not_utf8_bytes() {
        // U+FF61 is one UTF-16 unit 0xFF61; U+1F600 is the pair 0xD83D 0xDE00,
        // which sorts first in UTF-16 but last in UTF-8.
        let v = json!({"\u{ff61}": 1, "\u{1f600}": 2, "a": 3});
        assert_eq!(canon(&v), "{\"a\":3,\"\u{1f600}\":2,\"\u{ff61}\":1}");
    }

    #[test]
    fn writes_integers_and_refuses_those_no_double_holds() {
        assert_eq!(canon(&json!(9_007_199_254_740_992_u64)), "9007199254740992");
        assert_eq!(
            canon(&json!(-9_007_199_254_740_992_i64)),
            "-9007199254740992"
        );
        assert_eq!(canon(&json!(1_u64 << 63)), "9223372036854776000");
        let err = to_canonical(&json!({"a": [9_007_199_254_740_993_u64]})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a[0]: integer 9007199254740993 is not exactly an IEEE 754 double (RFC 8785 would round it); send it as a string"
        );
        assert!(to_canonical(&json!(i64::MIN + 1)).is_err());
    }

    #[test]
    fn writes_numbers_in_ecmascript_form() {
        for (f, want) in [
            (1.0, "1"),
            (-0.0, "0"),
            (0.5, "0.5"),
            (100.0, "100"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.25e-7, "1.25e-7"),
            (123.456, "123.456"),
            (-4.5e-10, "-4.5e-10"),
        ] {
            assert_eq!(es_number(f), want, "{f:e}");
        }
    }
}
