//! Secrets that must never reach a log line, an error message or a file by accident.

use std::fmt;

/// An API key. `Debug` and `Display` print `[redacted]`; the only way to read the value is
/// [`ApiKey::expose`], which is called in exactly one place: building the `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key. Surrounding whitespace (a trailing newline from `$(cat keyfile)`) is removed.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into().trim().to_owned())
    }

    /// True when the key is empty after trimming.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The key itself. Only for building request headers.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_key() {
        let key = ApiKey::new("  sk_live_123\n");
        assert_eq!(key.expose(), "sk_live_123");
        assert!(!format!("{key:?}").contains("sk_live"));
        assert!(!format!("{key}").contains("sk_live"));
    }
}
