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

impl Drop for ApiKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl zeroize::ZeroizeOnDrop for ApiKey {}

/// How key material shows in `Debug`: its length only, never a byte of it.
pub(crate) struct Redacted<'a>(pub &'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("[empty]")
        } else {
            write!(f, "[redacted, {} bytes]", self.0.len())
        }
    }
}

/// How a PEM certificate shows in `Debug`: its SPKI fingerprint, not its text.
pub(crate) struct CertSummary<'a>(pub &'a str);

impl fmt::Debug for CertSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::talos::pki::spki_sha256_b64(self.0) {
            Ok(fp) => write!(f, "[certificate, SPKI SHA-256 {fp}]"),
            Err(_) => write!(f, "[{} bytes, not a certificate]", self.0.len()),
        }
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
