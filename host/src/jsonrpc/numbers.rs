//! Whether every number in a JSON text survives a trip through an IEEE
//! double (as RFC 8785 writes numbers): written back as the double's
//! shortest form, it is the same value. `9007199254740993` and
//! `0.1000000000000000000001` do not: a canonical form would write each as
//! a neighbour is written, and two different arguments alike.

/// Whether every number in `json` (checked JSON text) survives a double.
pub fn numbers_are_exact(json: &str) -> bool {
    let bytes = json.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string, escapes and all.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len() && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    i += 1;
                }
                if !exact(&json[start..i]) {
                    return false;
                }
            }
            _ => i += 1,
        }
    }
    true
}

/// Whether the number `text` is the value its double's shortest form says.
fn exact(text: &str) -> bool {
    let Ok(double) = text.parse::<f64>() else { return false };
    // RFC 8785 writes -0 as 0: a zero with a sign does not survive either.
    let signed_zero = double == 0.0 && text.starts_with('-');
    double.is_finite() && !signed_zero && decimal(text) == decimal(&format!("{double:e}"))
}

/// A number's value as (negative, significant digits, exponent of the
/// point after them): `-12.50` is (true, "125", 2); zero is (false, "", 0).
fn decimal(text: &str) -> Option<(bool, String, i64)> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i64>().ok()?),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = whole.chars().chain(fraction.chars()).collect();
    let leading = digits.len() - digits.trim_start_matches('0').len();
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    if significant.is_empty() {
        return Some((false, String::new(), 0));
    }
    let point = i64::try_from(whole.len()).ok()? - i64::try_from(leading).ok()? + exponent;
    Some((negative, significant.to_owned(), point))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_are_told_from_the_rest() {
        for ok in ["0", "0.0", "1", "1.50", "1E5", "1e-7", "9007199254740992", "0.1", "-2.5e300", "123.456"] {
            assert!(numbers_are_exact(ok), "{ok}");
        }
        for lossy in ["9007199254740993", "12345678901234567890123", "0.1000000000000000000001", "1e400", "-0", "-0.0"]
        {
            assert!(!numbers_are_exact(lossy), "{lossy}");
        }
        assert!(numbers_are_exact(r#"{"a":"9007199254740993","b":[1,2.5],"c\"":"\"12345678901234567890123"}"#));
        assert!(!numbers_are_exact(r#"{"a":[1,{"b":9007199254740993}]}"#));
    }
}
