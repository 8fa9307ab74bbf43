//! Label and field selectors, parsed with the grammar and the error messages of the real API
//! server (`k8s.io/apimachinery/pkg/labels` and `pkg/fields`): equality (`=`, `==`, `!=`),
//! set-based (`in`, `notin`, `key`, `!key`) and numeric (`>`, `<`) label requirements; field
//! selectors with `=`, `==`, `!=` on the fields each resource supports.

use std::collections::BTreeMap;

use serde_json::Value;

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelOp {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    GreaterThan(i64),
    LessThan(i64),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector {
    requirements: Vec<(String, LabelOp)>,
}

impl LabelSelector {
    /// Parses `labelSelector`. The error is the message the API server puts in its 400.
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(format!(
                    "unable to parse requirement: found '', expected: identifier in {text:?}"
                ));
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(LabelSelector { requirements })
    }

    /// Whether an object with `labels` matches.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|(key, op)| {
            let value = labels.get(key);
            match op {
                LabelOp::Equals(v) => value == Some(v),
                LabelOp::NotEquals(v) => value != Some(v),
                LabelOp::In(vs) => value.is_some_and(|x| vs.contains(x)),
                LabelOp::NotIn(vs) => value.is_none_or(|x| !vs.contains(x)),
                LabelOp::Exists => value.is_some(),
                LabelOp::DoesNotExist => value.is_none(),
                LabelOp::GreaterThan(n) => value
                    .and_then(|x| x.parse::<i64>().ok())
                    .is_some_and(|x| x > *n),
                LabelOp::LessThan(n) => value
                    .and_then(|x| x.parse::<i64>().ok())
                    .is_some_and(|x| x < *n),
            }
        })
    }

    /// Whether the object's `metadata.labels` match.
    pub fn matches_object(&self, object: &Value) -> bool {
        if self.requirements.is_empty() {
            return true;
        }
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        self.matches(&labels)
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<(String, LabelOp), String> {
    let fail = |why: &str| format!("unable to parse requirement: {why}");
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        validate_key(key).map_err(|e| fail(&e))?;
        return Ok((key.to_string(), LabelOp::DoesNotExist));
    }
    for (token, build) in [
        (
            "!=",
            (|v: String| LabelOp::NotEquals(v)) as fn(String) -> LabelOp,
        ),
        ("==", |v| LabelOp::Equals(v)),
        ("=", |v| LabelOp::Equals(v)),
    ] {
        if let Some((key, value)) = part.split_once(token) {
            let (key, value) = (key.trim(), value.trim());
            validate_key(key).map_err(|e| fail(&e))?;
            validate_value(value).map_err(|e| fail(&e))?;
            return Ok((key.to_string(), build(value.to_string())));
        }
    }
    for (token, greater) in [(">", true), ("<", false)] {
        if let Some((key, value)) = part.split_once(token) {
            let (key, value) = (key.trim(), value.trim());
            validate_key(key).map_err(|e| fail(&e))?;
            let n: i64 = value.parse().map_err(|_| {
                fail(&format!(
                    "for 'Gt', 'Lt' operators, the value must be an integer: {value}"
                ))
            })?;
            let op = if greater {
                LabelOp::GreaterThan(n)
            } else {
                LabelOp::LessThan(n)
            };
            return Ok((key.to_string(), op));
        }
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default().trim();
    let rest = words.next().unwrap_or_default().trim();
    validate_key(key).map_err(|e| fail(&e))?;
    if rest.is_empty() {
        return Ok((key.to_string(), LabelOp::Exists));
    }
    let (negated, set) = if let Some(set) = rest.strip_prefix("notin") {
        (true, set)
    } else if let Some(set) = rest.strip_prefix("in") {
        (false, set)
    } else {
        return Err(fail(&format!(
            "found '{rest}', expected: in, notin, =, ==, !=, gt, lt"
        )));
    };
    let inner = set
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| fail(&format!("found '{}', expected: '('", set.trim())))?;
    let mut values = Vec::new();
    for value in inner.split(',') {
        let value = value.trim();
        validate_value(value).map_err(|e| fail(&e))?;
        values.push(value.to_string());
    }
    if values.iter().all(String::is_empty) {
        return Err(fail(
            "for 'in', 'notin' operators, values set can't be empty",
        ));
    }
    let op = if negated {
        LabelOp::NotIn(values)
    } else {
        LabelOp::In(values)
    };
    Ok((key.to_string(), op))
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters of alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let ok = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err(format!(
                "invalid label key \"{key}\": prefix part must be a lowercase RFC 1123 subdomain"
            ));
        }
    }
    if !is_label_name(name) {
        return Err(format!(
            "invalid label key \"{key}\": name part must consist of alphanumeric characters, \
             '-', '_' or '.', and must start and end with an alphanumeric character"
        ));
    }
    Ok(())
}

fn validate_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value: \"{value}\": a valid label must be an empty string or \
             consist of alphanumeric characters, '-', '_' or '.', and must start and end with \
             an alphanumeric character"
        ))
    }
}

fn is_label_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A parsed field selector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector {
    /// (field, value, equal?) triples.
    requirements: Vec<(String, String, bool)>,
}

impl FieldSelector {
    /// Parses `fieldSelector`, accepting only `supported` fields (the resource's field labels).
    pub fn parse(text: &str, supported: &[&str]) -> Result<FieldSelector, String> {
        let mut requirements = Vec::new();
        for part in split_unescaped(text, ',') {
            if part.trim().is_empty() {
                continue;
            }
            let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, true)
            } else {
                return Err(format!(
                    "invalid selector: '{text}'; can't understand '{part}'"
                ));
            };
            let field = field.trim();
            if !supported.contains(&field) {
                return Err(format!("field label not supported: {field}"));
            }
            requirements.push((field.to_string(), unescape(value), equal));
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether the object matches; `field` extracts a supported field's value as text.
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|(field, value, equal)| {
            let actual = field_value(object, field);
            (actual == *value) == *equal
        })
    }
}

/// A field label's value, as the API server's field set renders it.
fn field_value(object: &Value, field: &str) -> String {
    // Events' `source` is the reporting component.
    let field = if field == "source" {
        "source.component"
    } else {
        field
    };
    let pointer = format!("/{}", field.replace('.', "/"));
    match object.pointer(&pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        // Booleans that are absent are false, as in Go's zero values.
        None if matches!(field, "spec.unschedulable" | "spec.hostNetwork") => "false".into(),
        _ => String::new(),
    }
}

fn split_unescaped(text: &str, separator: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            current.push('\\');
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == separator {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

fn unescape(value: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in value.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors_match_like_the_api_server() {
        let node = labels(&[
            ("kubernetes.io/hostname", "cp-1"),
            ("node-role.kubernetes.io/control-plane", ""),
            ("tier", "3"),
        ]);
        let yes = [
            "",
            "kubernetes.io/hostname=cp-1",
            "kubernetes.io/hostname==cp-1",
            "kubernetes.io/hostname!=w-1",
            "node-role.kubernetes.io/control-plane",
            "!node-role.kubernetes.io/worker",
            "kubernetes.io/hostname in (cp-1, cp-2)",
            "kubernetes.io/hostname notin (w-1)",
            "missing notin (x)",
            "tier>2,tier<4",
            "node-role.kubernetes.io/control-plane=",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&node), "{s}");
        }
        let no = [
            "kubernetes.io/hostname=w-1",
            "missing",
            "!tier",
            "kubernetes.io/hostname in (w-1)",
            "tier>3",
            "missing in (x)",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&node), "{s}");
        }
    }

    #[test]
    fn bad_label_selectors_are_rejected() {
        for s in ["a=b c", "-a=b", "a in b", "a in ()", "a>b", "a,,b"] {
            let error = LabelSelector::parse(s).unwrap_err();
            assert!(
                error.starts_with("unable to parse requirement"),
                "{s}: {error}"
            );
        }
    }

    #[test]
    fn field_selectors_accept_only_supported_fields() {
        let node = json!({"metadata": {"name": "cp-1"}, "spec": {}});
        let fields = ["metadata.name", "spec.unschedulable"];
        let s = FieldSelector::parse("metadata.name=cp-1", &fields).unwrap();
        assert!(s.matches(&node));
        assert!(
            !FieldSelector::parse("metadata.name!=cp-1", &fields)
                .unwrap()
                .matches(&node)
        );
        assert!(
            FieldSelector::parse("spec.unschedulable=false", &fields)
                .unwrap()
                .matches(&node)
        );
        assert_eq!(
            FieldSelector::parse("status.phase=Running", &fields).unwrap_err(),
            "field label not supported: status.phase"
        );
    }
}
