//! Reading JSON:API request bodies, `{"data":{"type":"<resource>","attributes":{…}}}`, and
//! collecting attribute validation errors so one 422 can list them all.

use serde_json::{Map, Value};

use super::errors::{ApiError, ErrorObject};

/// The attributes of a request body, with the errors found while reading them.
pub(crate) struct Attributes {
    map: Map<String, Value>,
    pub errors: Vec<ErrorObject>,
}

impl Attributes {
    /// Parses `body`, requiring `data.type == resource_type` and an `attributes` object.
    pub fn parse(body: &[u8], resource_type: &str) -> Result<Attributes, ApiError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?;
        let Some(data) = value.get("data").and_then(Value::as_object) else {
            return Err(ApiError::validation(vec![ErrorObject::invalid_member(
                "/data",
                "data must be filled",
            )]));
        };
        match data.get("type").and_then(Value::as_str) {
            Some(t) if t == resource_type => {}
            Some(t) => {
                return Err(ApiError::validation(vec![ErrorObject::invalid_member(
                    "/data/type",
                    format!("type must be {resource_type:?}, got {t:?}"),
                )]));
            }
            None => {
                return Err(ApiError::validation(vec![ErrorObject::invalid_member(
                    "/data/type",
                    format!("type must be filled (expected {resource_type:?})"),
                )]));
            }
        }
        let map = match data.get("attributes") {
            Some(Value::Object(map)) => map.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(_) => {
                return Err(ApiError::validation(vec![ErrorObject::invalid_member(
                    "/data/attributes",
                    "attributes must be an object",
                )]));
            }
        };
        Ok(Attributes {
            map,
            errors: Vec::new(),
        })
    }

    /// A string attribute. Missing (or null, or empty when `required`) and required records
    /// "must be filled"; a non-string records a type error.
    pub fn string(&mut self, name: &str, required: bool) -> Option<String> {
        match self.map.get(name) {
            None | Some(Value::Null) => {
                if required {
                    self.errors.push(ErrorObject::invalid_attribute(
                        name,
                        format!("{name} must be filled"),
                    ));
                }
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                if required {
                    self.errors.push(ErrorObject::invalid_attribute(
                        name,
                        format!("{name} must be filled"),
                    ));
                }
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.errors.push(ErrorObject::invalid_attribute(
                    name,
                    format!("{name} must be a string"),
                ));
                None
            }
        }
    }

    /// An optional array of strings.
    pub fn strings(&mut self, name: &str) -> Vec<String> {
        match self.map.get(name) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(_) => {
                self.errors.push(ErrorObject::invalid_attribute(
                    name,
                    format!("{name} must be an array of strings"),
                ));
                Vec::new()
            }
        }
    }

    /// True when the body has the attribute `name` (even `null`).
    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// The attributes outside `allowed`, sorted.
    pub fn unknown(&self, allowed: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = self
            .map
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .cloned()
            .collect();
        out.sort();
        out
    }

    /// Records a validation error about `name`.
    pub fn reject(&mut self, name: &str, detail: impl Into<String>) {
        self.errors
            .push(ErrorObject::invalid_attribute(name, detail));
    }

    /// 422 with every recorded error, if there are any.
    pub fn finish(&mut self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(std::mem::take(&mut self.errors)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_checked() {
        assert_eq!(
            Attributes::parse(b"nope", "servers")
                .err()
                .unwrap()
                .status
                .as_u16(),
            400
        );
        assert_eq!(
            Attributes::parse(b"{}", "servers")
                .err()
                .unwrap()
                .status
                .as_u16(),
            422
        );
        let err = Attributes::parse(br#"{"data":{"type":"server","attributes":{}}}"#, "servers")
            .err()
            .unwrap();
        assert_eq!(err.body()["errors"][0]["source"]["pointer"], "/data/type");
    }

    #[test]
    fn attributes_collect_errors() {
        let mut a = Attributes::parse(
            br#"{"data":{"type":"servers","attributes":{"hostname":"","plan":3,"ssh_keys":["ssh_1"]}}}"#,
            "servers",
        )
        .unwrap();
        assert_eq!(a.string("hostname", true), None);
        assert_eq!(a.string("plan", true), None);
        assert_eq!(a.string("billing", false), None);
        assert_eq!(a.strings("ssh_keys"), ["ssh_1"]);
        let err = a.finish().unwrap_err();
        assert_eq!(err.errors.len(), 2);
        assert!(a.finish().is_ok());
    }
}
