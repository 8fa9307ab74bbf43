//! The few pieces of Go's `yaml.v3` encoder that `secrets.yaml` and talosconfig files need, so
//! that what we write is byte for byte what talosctl writes: the choice of scalar style (plain,
//! single- or double-quoted) and the order of map keys.
//!
//! Block structure (4-space indentation, sequences indented under their key) is written by the
//! callers; this module only renders one scalar or compares two keys.

use std::cmp::Ordering;

/// The scalar `value` as `yaml.v3` writes it in block context: plain when that reads back as the
/// same string, double-quoted when a plain scalar would resolve to another type (null, bool,
/// number, timestamp, YAML 1.1 bools and base-60 floats, `<<`), single-quoted when the emitter
/// refuses the plain style (indicators, leading or trailing spaces, `: ` or ` #`), and
/// double-quoted with escapes when single quotes cannot hold it. Strings with line breaks are
/// double-quoted (`yaml.v3` would use a literal block; both read back identically).
pub(crate) fn scalar(value: &str) -> String {
    if value.contains(['\n', '\r']) || has_special_characters(value) {
        return double_quoted(value);
    }
    if resolves_to_non_string(value) {
        return double_quoted(value);
    }
    if plain_allowed(value) {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\'', "''"))
}

/// `yaml.v3`'s map-key order for string keys (its `keyList.Less`): runs of digits compare as
/// numbers, letters compare by code point, and at the first difference a non-letter sorts before
/// a letter unless the previous rune was a digit.
pub(crate) fn key_cmp(a: &str, b: &str) -> Ordering {
    if key_less(a, b) {
        Ordering::Less
    } else if key_less(b, a) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

fn key_less(a: &str, b: &str) -> bool {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut digits = false;
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            digits = ar[i].is_ascii_digit();
            i += 1;
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i] < br[i];
        }
        if al || bl {
            return if digits { al } else { bl };
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an
                .wrapping_mul(10)
                .wrapping_add(i64::from(ar[ai] as u8 - b'0'));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn
                .wrapping_mul(10)
                .wrapping_add(i64::from(br[bi] as u8 - b'0'));
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ar[i] < br[i];
    }
    ar.len() < br.len()
}

/// Characters the emitter will not write unescaped: libyaml's non-printables (tab included) and
/// line breaks (`yaml.v3` runs with unicode output on, so printable non-ASCII is fine).
fn has_special_characters(value: &str) -> bool {
    value.chars().any(|c| {
        let printable = matches!(c, '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{d7ff}' | '\u{10000}'..)
            || (('\u{e000}'..='\u{fffd}').contains(&c) && c != '\u{feff}');
        !printable || c == '\u{85}' || c == '\u{2028}' || c == '\u{2029}'
    })
}

/// Whether a plain scalar with this text would resolve to something other than a string in
/// `yaml.v3` (or is quoted for YAML 1.1 compatibility).
fn resolves_to_non_string(value: &str) -> bool {
    match value {
        "" | "~" | "null" | "Null" | "NULL" => return true,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => return true,
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "n" | "N" | "no" | "No" | "NO"
        | "off" | "Off" | "OFF" => return true,
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" | "<<" => return true,
        _ => {}
    }
    let first = value.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.')) {
        return false;
    }
    is_go_int(value) || is_yaml_float(value) || is_base60_float(value) || is_timestamp(value)
}

/// `strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64)` or `ParseUint` would succeed
/// (ignoring range), or `0b…` binary.
fn is_go_int(value: &str) -> bool {
    let plain: String = value.chars().filter(|&c| c != '_').collect();
    let unsigned = plain.strip_prefix(['+', '-']).unwrap_or(plain.as_str());
    if unsigned.is_empty() {
        return false;
    }
    let lower = unsigned.to_ascii_lowercase();
    let (digits, radix) = if let Some(rest) = lower.strip_prefix("0x") {
        (rest, 16)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (rest, 8)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (rest, 2)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (&lower[1..], 8)
    } else {
        (lower.as_str(), 10)
    };
    !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix))
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`, `yaml.v3`'s float syntax.
fn is_yaml_float(value: &str) -> bool {
    let s = value.strip_prefix(['+', '-']).unwrap_or(value);
    let b = s.as_bytes();
    let mut i = 0;
    let int_digits = count_digits(&b[i..]);
    i += int_digits;
    if int_digits == 0 {
        if b.get(i) != Some(&b'.') {
            return false;
        }
        i += 1;
        let frac = count_digits(&b[i..]);
        if frac == 0 {
            return false;
        }
        i += frac;
    } else if b.get(i) == Some(&b'.') {
        i += 1;
        i += count_digits(&b[i..]);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp = count_digits(&b[i..]);
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == b.len()
}

fn count_digits(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_digit()).count()
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$` (YAML 1.1 base-60 floats).
fn is_base60_float(value: &str) -> bool {
    let s = value.strip_prefix(['+', '-']).unwrap_or(value);
    let b = s.as_bytes();
    if !b.first().is_some_and(u8::is_ascii_digit) {
        return false;
    }
    let mut i = b
        .iter()
        .take_while(|c| c.is_ascii_digit() || **c == b'_')
        .count();
    let mut groups = 0;
    while b.get(i) == Some(&b':') {
        i += 1;
        let d = count_digits(&b[i..]);
        match d {
            1 => {}
            2 if b[i] <= b'5' => {}
            _ => return false,
        }
        i += d;
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        i += b[i..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || **c == b'_')
            .count();
    }
    i == b.len()
}

/// Starts like one of `yaml.v3`'s timestamp layouts (`2006-1-2`, optionally followed by a time
/// after `T`, `t` or a space).
fn is_timestamp(value: &str) -> bool {
    let b = value.as_bytes();
    if b.len() < 8 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let mut i = 5;
    let month = count_digits(&b[i..]);
    if !(1..=2).contains(&month) {
        return false;
    }
    i += month;
    if b.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    let day = count_digits(&b[i..]);
    if !(1..=2).contains(&day) {
        return false;
    }
    i += day;
    i == b.len() || matches!(b[i], b'T' | b't' | b' ')
}

/// libyaml's `yaml_emitter_analyze_scalar` verdict for the plain style in block context.
fn plain_allowed(value: &str) -> bool {
    if value.starts_with("---") || value.starts_with("...") {
        return false;
    }
    if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
        return false;
    }
    let chars: Vec<char> = value.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_blank = chars.get(i + 1).is_none_or(|n| matches!(n, ' ' | '\t'));
        let preceded_by_blank = i > 0 && matches!(chars[i - 1], ' ' | '\t');
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => return false,
                '?' | ':' | '-' if followed_by_blank => return false,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_blank => return false,
                '#' if preceded_by_blank => return false,
                _ => {}
            }
        }
    }
    true
}

/// A double-quoted scalar with libyaml's escapes.
fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{85}' => out.push_str("\\N"),
            '\u{a0}' => out.push_str("\\_"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            '\u{feff}' => out.push_str("\\uFEFF"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02X}", c as u32));
            }
            c if ('\u{80}'..'\u{a0}').contains(&c) => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c if c == '\u{fffe}' || c == '\u{ffff}' => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_stay_plain() {
        for s in [
            "10.0.0.11",
            "10.0.0.11:50000",
            "https://10.0.0.11:50000",
            "prod",
            "admin@prod",
            "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t+/=",
            "-abc=",
            "2psnp2.lry8e9gycdix3bpa",
            "a#b",
            "a:b",
            "fe80::1",
        ] {
            assert_eq!(scalar(s), s, "{s}");
        }
    }

    #[test]
    fn non_strings_are_double_quoted() {
        for s in [
            "",
            "true",
            "yes",
            "No",
            "null",
            "~",
            "123",
            "0x1F",
            "1_000",
            "1.5",
            ".5",
            "1e3",
            "0755",
            "08",
            "+1",
            ".inf",
            "<<",
            "1:20",
            "2024-01-02",
            "2024-1-2T10:00:00Z",
        ] {
            assert_eq!(scalar(s), format!("\"{s}\""), "{s}");
        }
    }

    #[test]
    fn indicators_are_single_quoted() {
        assert_eq!(scalar("a: b"), "'a: b'");
        assert_eq!(scalar("# x"), "'# x'");
        assert_eq!(scalar("*x"), "'*x'");
        assert_eq!(scalar("- x"), "'- x'");
        assert_eq!(scalar(" lead"), "' lead'");
        assert_eq!(scalar("trail:"), "'trail:'");
        assert_eq!(scalar("it's: x"), "'it''s: x'");
        assert_eq!(scalar("---x"), "'---x'");
    }

    #[test]
    fn escapes_are_double_quoted() {
        assert_eq!(scalar("a\nb"), "\"a\\nb\"");
        assert_eq!(scalar("a\u{1}b"), "\"a\\x01b\"");
        assert_eq!(scalar("é"), "é");
    }

    #[test]
    fn keys_sort_like_yaml_v3() {
        let mut keys = vec![
            "b", "a10", "a2", "a", "A", "a-1", "prod-1", "prod", "prod-10", "prod-2",
        ];
        keys.sort_by(|a, b| key_cmp(a, b));
        assert_eq!(
            keys,
            vec![
                "A", "a", "a-1", "a2", "a10", "b", "prod", "prod-1", "prod-2", "prod-10"
            ]
        );
    }
}
