//! The rules every URL a user gives `cto` must follow (`--api-url` / `LATITUDE_API_URL`,
//! `--image-factory-url`, and the userinfo rule of `--gitops-repo`):
//!
//! * **no userinfo** (`https://user:token@host/…`): a credential inside a URL ends up in the
//!   checkpoint, the log, `ps` and shell history, and the message refusing it never repeats it
//!   ([`redact_userinfo`]);
//! * `https://`, or plain `http://` only to a **literal loopback address** (`127.0.0.0/8` or
//!   `[::1]`). Names are never trusted as loopback, not even `localhost` or `*.localhost`: the
//!   resolver decides where a name goes (RFC 6761 §6.3 only asks resolvers to keep `.localhost`
//!   local, and not every one does), so `http://evil.localhost:8080` could carry the API key off
//!   the machine in clear.

use reqwest::Url;
use std::net::IpAddr;

/// True when `host` is a literal loopback address: `127.0.0.0/8`, or `::1` (with or without
/// brackets). Names, `localhost` included, are not.
pub fn is_literal_loopback_host(host: &str) -> bool {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// True for an `http(s)://` URL whose host is a literal loopback address (see
/// [`is_literal_loopback_host`]).
pub fn is_literal_loopback_url(raw: &str) -> bool {
    Url::parse(raw.trim())
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .and_then(|url| url.host_str().map(is_literal_loopback_host))
        .unwrap_or(false)
}

/// True when the URL carries a user name or password (`scheme://user[:password]@host`).
pub fn has_userinfo(url: &Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// `raw` with any userinfo replaced by `***`, for messages and logs: `https://***@host/x`.
/// Text that is not a URL with an authority is returned unchanged.
pub fn redact_userinfo(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return raw.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => raw.to_owned(),
    }
}

/// Checks a URL of a service `cto` talks to over HTTP (an API or the Image Factory): it must
/// parse, be `https://` (or `http://` to a literal loopback address), have a host, and carry
/// no userinfo, query or fragment. Returns the reason when it is refused; the reason never
/// contains the userinfo.
pub fn check_service_url(raw: &str) -> Result<Url, String> {
    let trimmed = raw.trim();
    let url = Url::parse(trimmed).map_err(|e| format!("not a URL ({e})"))?;
    if has_userinfo(&url) {
        return Err(
            "a URL must not carry a user name or password (user:secret@host): credentials in a \
             URL end up in logs, `ps` and shell history; give the URL without them"
                .to_owned(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a base URL must not have a query or fragment".to_owned());
    }
    let host = url.host_str().unwrap_or_default();
    if host.is_empty() {
        return Err("the URL has no host".to_owned());
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_literal_loopback_host(host) => Ok(url),
        "http" => Err(format!(
            "plain http:// to {host} would cross the network unencrypted: use https:// \
             (http:// is only for a local lab on a literal loopback address, 127.0.0.1 or [::1])"
        )),
        other => Err(format!("expected an https:// URL (got {other}://)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_literal_loopback_addresses_are_loopback() {
        for yes in ["127.0.0.1", "127.3.4.5", "::1", "[::1]"] {
            assert!(is_literal_loopback_host(yes), "{yes}");
        }
        for no in [
            "localhost",
            "evil.localhost",
            "LOCALHOST",
            "127.0.0.1.nip.io",
            "10.0.0.1",
            "::2",
            "[::ffff:8.8.8.8]",
            "",
        ] {
            assert!(!is_literal_loopback_host(no), "{no}");
        }
        assert!(is_literal_loopback_url("http://127.0.0.1:8080/"));
        assert!(is_literal_loopback_url("https://[::1]:9"));
        assert!(!is_literal_loopback_url("http://evil.localhost:8080"));
        assert!(!is_literal_loopback_url("ftp://127.0.0.1"));
        assert!(!is_literal_loopback_url("not a url"));
    }

    #[test]
    fn service_urls() {
        for ok in [
            "https://api.latitude.sh",
            "https://factory.example.net:8443/",
            "http://127.0.0.1:8080",
            "http://[::1]:9",
        ] {
            assert!(check_service_url(ok).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("http://evil.localhost:8080", "https://"),
            ("http://localhost:8080", "https://"),
            ("http://example.com", "unencrypted"),
            (
                "https://user:tok-123@api.example.com",
                "user name or password",
            ),
            ("https://tok-123@api.example.com", "user name or password"),
            ("http://user:tok-123@127.0.0.1:1", "user name or password"),
            ("ftp://127.0.0.1", "https://"),
            ("https://api.example.com/?a=b", "query"),
            ("api.example.com", "not a URL"),
        ] {
            let e = check_service_url(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains("tok-123"), "{bad}: the secret is repeated: {e}");
        }
    }

    #[test]
    fn userinfo_is_redacted() {
        assert_eq!(
            redact_userinfo("https://user:tok@github.com/a/b"),
            "https://***@github.com/a/b"
        );
        assert_eq!(
            redact_userinfo("https://tok@h/p@q"),
            "https://***@h/p@q",
            "an @ in the path is not userinfo"
        );
        assert_eq!(
            redact_userinfo("https://github.com/a@b"),
            "https://github.com/a@b"
        );
        assert_eq!(redact_userinfo("git@github.com:a/b"), "git@github.com:a/b");
        assert_eq!(redact_userinfo("plain"), "plain");
    }
}
