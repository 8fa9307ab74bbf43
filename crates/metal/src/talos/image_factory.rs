//! Talos Image Factory: schematics, their IDs, and the URLs a server boots and installs from.
//!
//! The factory identifies a schematic by `hex(sha256(yaml.v3.Marshal(schematic)))`, so the ID
//! can be computed offline as long as the YAML is reproduced byte for byte. [`Schematic`] does
//! that for the two fields this installer uses (extra kernel arguments and official system
//! extensions) and refuses values whose Go encoding it cannot reproduce with certainty, rather
//! than risk an ID the factory does not know.
//!
//! Only `amd64` assets are built: every Latitude.sh plan the installer deploys is x86-64.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::TalosError;

/// The official Image Factory.
pub const DEFAULT_FACTORY_URL: &str = "https://factory.talos.dev";

/// The PXE frontend of the official Image Factory.
pub const DEFAULT_PXE_URL: &str = "https://pxe.factory.talos.dev";

/// The Talos version installed when none is requested: a current v1.11 release.
pub const DEFAULT_TALOS_VERSION: &str = "v1.11.5";

/// The only architecture the installer deploys.
const ARCH: &str = "amd64";

/// The supported Talos minor versions (all of major version 1).
const SUPPORTED_MINORS: std::ops::RangeInclusive<u64> = 10..=11;

// ---------------------------------------------------------------------------------------------
// Talos versions
// ---------------------------------------------------------------------------------------------

/// A validated, supported Talos version: `vMAJOR.MINOR.PATCH` with an optional semver
/// pre-release (`v1.11.0-beta.1`). Build with [`parse_talos_version`] or [`str::parse`]; the
/// [`Display`](fmt::Display) form is the input, which is also the factory's and the installer
/// image's version tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TalosVersion {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Option<String>,
}

impl TalosVersion {
    /// The major version (always 1 for a supported version).
    pub fn major(&self) -> u64 {
        self.major
    }

    /// The minor version (10 or 11 for a supported version).
    pub fn minor(&self) -> u64 {
        self.minor
    }

    /// The patch version.
    pub fn patch(&self) -> u64 {
        self.patch
    }

    /// The pre-release part without its leading `-` (`beta.1`), if any.
    pub fn pre_release(&self) -> Option<&str> {
        self.pre.as_deref()
    }
}

impl Default for TalosVersion {
    /// [`DEFAULT_TALOS_VERSION`].
    fn default() -> Self {
        Self {
            major: 1,
            minor: 11,
            patch: 5,
            pre: None,
        }
    }
}

impl fmt::Display for TalosVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(pre) = &self.pre {
            write!(f, "-{pre}")?;
        }
        Ok(())
    }
}

impl FromStr for TalosVersion {
    type Err = TalosError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_talos_version(s)
    }
}

/// Parses and checks a Talos version such as `v1.11.5` or `v1.10.0-beta.2`.
///
/// The leading `v` is required, the three numeric components are required and have no leading
/// zeros, an optional pre-release follows semver (dot-separated `[0-9A-Za-z-]` identifiers) and
/// build metadata (`+…`) is refused. Only v1.10.x and v1.11.x are supported: anything else is
/// [`TalosError::UnsupportedTalosVersion`], naming the value and the supported range.
pub fn parse_talos_version(value: &str) -> Result<TalosVersion, TalosError> {
    let invalid = |reason: &str| TalosError::InvalidTalosVersion {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };

    let rest = value
        .strip_prefix('v')
        .ok_or_else(|| invalid("it must start with \"v\""))?;
    if rest.contains('+') {
        return Err(invalid("build metadata (\"+…\") is not allowed"));
    }
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };

    let parts: Vec<&str> = core.split('.').collect();
    let [major, minor, patch] = parts.as_slice() else {
        return Err(invalid(
            "it needs exactly three numeric components MAJOR.MINOR.PATCH",
        ));
    };
    let number = |part: &str| -> Result<u64, TalosError> {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("MAJOR, MINOR and PATCH must be decimal numbers"));
        }
        if part.len() > 1 && part.starts_with('0') {
            return Err(invalid("version numbers must not have leading zeros"));
        }
        part.parse()
            .map_err(|_| invalid("a version number is too large"))
    };
    let (major, minor, patch) = (number(major)?, number(minor)?, number(patch)?);

    if let Some(pre) = pre {
        if pre.is_empty() {
            return Err(invalid("the pre-release after \"-\" is empty"));
        }
        for ident in pre.split('.') {
            if ident.is_empty()
                || !ident
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(invalid(
                    "the pre-release must be dot-separated identifiers of [0-9A-Za-z-]",
                ));
            }
            if ident.len() > 1
                && ident.starts_with('0')
                && ident.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(invalid(
                    "numeric pre-release identifiers must not have leading zeros",
                ));
            }
        }
    }

    if major != 1 || !SUPPORTED_MINORS.contains(&minor) {
        return Err(TalosError::UnsupportedTalosVersion {
            value: value.to_owned(),
        });
    }

    Ok(TalosVersion {
        major,
        minor,
        patch,
        pre: pre.map(str::to_owned),
    })
}

// ---------------------------------------------------------------------------------------------
// Schematics
// ---------------------------------------------------------------------------------------------

/// An Image Factory schematic restricted to the customisations this installer uses.
///
/// [`Default`] is the vanilla schematic (no customisation), whose ID is
/// `376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba`. Order matters and is
/// kept: the factory does not sort or deduplicate, so `[a, b]` and `[b, a]` are two schematics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schematic {
    /// `customization.extraKernelArgs`: kernel arguments added to the boot command line (honoured
    /// by PXE/ISO/disk images, ignored by the installer image).
    pub extra_kernel_args: Vec<String>,
    /// `customization.systemExtensions.officialExtensions`, e.g. `siderolabs/iscsi-tools`.
    pub official_extensions: Vec<String>,
}

impl Schematic {
    /// The schematic as the Image Factory marshals it: Go `yaml.v3` output, byte for byte.
    ///
    /// Layout: 4-space indentation, block sequences indented under their key, fields in the Go
    /// struct order (`extraKernelArgs`, then `systemExtensions.officialExtensions`), empty fields
    /// omitted, and `customization: {}` when nothing is customised.
    ///
    /// Scalars are written plain, or double-quoted for the words `yaml.v3` would otherwise read
    /// as booleans, nulls or special floats (`yes`, `off`, `null`, `.inf`, …). Anything whose
    /// encoding is less certain is refused with [`TalosError::UnsupportedSchematicValue`]:
    /// empty values, whitespace, control or non-ASCII characters, values that could be read as
    /// numbers or timestamps, and values `yaml.v3` would put in single quotes (a leading YAML
    /// indicator such as `#`, `&`, `*`, `!`, `%`, `@`, quotes or brackets, a leading `---` or
    /// `...`, or a trailing `:`).
    pub fn to_yaml(&self) -> Result<String, TalosError> {
        let kernel_args = self
            .extra_kernel_args
            .iter()
            .map(|v| yaml_scalar("extraKernelArgs", v))
            .collect::<Result<Vec<_>, _>>()?;
        let extensions = self
            .official_extensions
            .iter()
            .map(|v| yaml_scalar("officialExtensions", v))
            .collect::<Result<Vec<_>, _>>()?;

        if kernel_args.is_empty() && extensions.is_empty() {
            return Ok("customization: {}\n".to_owned());
        }
        let mut out = String::from("customization:\n");
        if !kernel_args.is_empty() {
            out.push_str("    extraKernelArgs:\n");
            for arg in &kernel_args {
                out.push_str("        - ");
                out.push_str(arg);
                out.push('\n');
            }
        }
        if !extensions.is_empty() {
            out.push_str("    systemExtensions:\n        officialExtensions:\n");
            for ext in &extensions {
                out.push_str("            - ");
                out.push_str(ext);
                out.push('\n');
            }
        }
        Ok(out)
    }

    /// The schematic ID: lowercase hex of the SHA-256 of [`Schematic::to_yaml`].
    pub fn id(&self) -> Result<String, TalosError> {
        let yaml = self.to_yaml()?;
        Ok(hex(&Sha256::digest(yaml.as_bytes())))
    }
}

/// Strings `yaml.v3` double-quotes because, unquoted, they would resolve to a bool, null or float
/// (its `resolveMap`, minus `""` and `<<`) or are YAML 1.1 booleans (`isOldBool`).
const QUOTED_WORDS: &[&str] = &[
    "true", "True", "TRUE", "false", "False", "FALSE", "~", "null", "Null", "NULL", ".nan", ".NaN",
    ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", "y", "Y",
    "yes", "Yes", "YES", "on", "On", "ON", "n", "N", "no", "No", "NO", "off", "Off", "OFF",
];

/// Every character that can occur in a plain scalar `yaml.v3` resolves to an int, float or
/// timestamp (Go `ParseInt` with base prefixes and `_`, YAML floats, base-60 floats,
/// `2006-01-02T15:04:05Z07:00` timestamps). A value starting with a digit, sign or `.` that
/// contains a character outside this set is certainly a string.
const NUMERIC_LIKE: &[u8] = b"0123456789+-._:abcdefABCDEFxXoObBpPtTzZ";

/// Encodes one sequence item the way `yaml.v3` does in block context, or refuses it.
fn yaml_scalar(field: &'static str, value: &str) -> Result<String, TalosError> {
    let refuse = |reason: &'static str| TalosError::UnsupportedSchematicValue {
        field,
        value: value.to_owned(),
        reason,
    };
    let bytes = value.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return Err(refuse("it is empty"));
    };
    if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(refuse(
            "only printable ASCII without spaces is supported (yaml.v3 may quote or fold others)",
        ));
    }
    if QUOTED_WORDS.contains(&value) {
        // Resolves to a non-string when plain, so yaml.v3 picks the double-quoted style; these
        // words contain nothing that needs escaping.
        return Ok(format!("\"{value}\""));
    }
    if matches!(first, b'0'..=b'9' | b'+' | b'-' | b'.')
        && bytes.iter().all(|b| NUMERIC_LIKE.contains(b))
    {
        return Err(refuse(
            "it could be read as a number or timestamp, so yaml.v3 may quote it",
        ));
    }
    if value == "<<" {
        return Err(refuse("it is the YAML merge key"));
    }
    let leading_indicator = matches!(
        first,
        b'#' | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
    ) || (matches!(first, b'?' | b':' | b'-') && bytes.len() == 1);
    if leading_indicator || last == b':' || value.starts_with("---") || value.starts_with("...") {
        return Err(refuse(
            "it starts with a YAML indicator or ends with ':', so yaml.v3 would single-quote it",
        ));
    }
    Ok(value.to_owned())
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Factory URLs
// ---------------------------------------------------------------------------------------------

/// Where images come from: the official Image Factory or a self-hosted one.
///
/// URLs are built from a schematic ID and a version tag as given; validate the version with
/// [`parse_talos_version`] first (the installer does when it reads its flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFactory {
    factory_url: String,
    pxe_url: String,
}

impl Default for ImageFactory {
    /// The official factory and its PXE frontend.
    fn default() -> Self {
        Self {
            factory_url: DEFAULT_FACTORY_URL.to_owned(),
            pxe_url: DEFAULT_PXE_URL.to_owned(),
        }
    }
}

impl ImageFactory {
    /// `None` (or the official URL itself) selects the official factory, [`DEFAULT_FACTORY_URL`],
    /// with PXE served by [`DEFAULT_PXE_URL`]. A custom URL is a self-hosted factory, which
    /// serves its PXE frontend on the same host, so both URLs are the given one. Trailing
    /// slashes are removed; the URL is otherwise expected to be validated by the caller
    /// (`http(s)://host[:port]`).
    pub fn new(factory_url: Option<&str>) -> Self {
        let Some(url) = factory_url else {
            return Self::default();
        };
        let url = url.trim().trim_end_matches('/');
        if url == DEFAULT_FACTORY_URL {
            return Self::default();
        }
        Self {
            factory_url: url.to_owned(),
            pxe_url: url.to_owned(),
        }
    }

    /// The factory's base URL, without a trailing slash.
    pub fn factory_url(&self) -> &str {
        &self.factory_url
    }

    /// The PXE frontend's base URL, without a trailing slash.
    pub fn pxe_url(&self) -> &str {
        &self.pxe_url
    }

    /// The factory's host (and port, if any) without the scheme: the container registry name
    /// in installer image references, e.g. `factory.talos.dev`.
    pub fn registry_host(&self) -> &str {
        let rest = self
            .factory_url
            .split_once("://")
            .map_or(self.factory_url.as_str(), |(_, rest)| rest);
        rest.split('/').next().unwrap_or(rest)
    }

    /// Where a schematic is registered: `POST <factory>/schematics` with the YAML body
    /// (`Content-Type: application/yaml`); the answer carries the same ID as [`Schematic::id`].
    pub fn schematics_url(&self) -> String {
        format!("{}/schematics", self.factory_url)
    }

    /// The iPXE script URL a server chain-loads:
    /// `<pxe>/pxe/<schematic_id>/<version>/metal-amd64`.
    pub fn ipxe_url(&self, schematic_id: &str, version: &str) -> String {
        format!("{}/pxe/{schematic_id}/{version}/metal-{ARCH}", self.pxe_url)
    }

    /// The installer image for `machine.install.image` and upgrades:
    /// `<factory host>/metal-installer/<schematic_id>:<version>`.
    pub fn installer_image(&self, schematic_id: &str, version: &str) -> String {
        format!(
            "{}/metal-installer/{schematic_id}:{version}",
            self.registry_host()
        )
    }

    /// The Talos versions the factory builds images for: `GET <factory>/versions`, a JSON array
    /// of tags (siderolabs/image-factory README, "HTTP Frontend API").
    pub fn versions_url(&self) -> String {
        format!("{}/versions", self.factory_url)
    }

    /// Fetches [`ImageFactory::versions_url`]. `Err` says why the list could not be had.
    pub async fn versions(&self, timeout: std::time::Duration) -> Result<Vec<String>, String> {
        let url = self.versions_url();
        // The same TLS setup as the Latitude client: rustls with ring, the platform's roots.
        let tls = crate::latitude::client::tls_config(&[]).map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let response = client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {url} answered {status}"));
        }
        response
            .json::<Vec<String>>()
            .await
            .map_err(|e| format!("GET {url}: not a JSON list of versions: {e}"))
    }

    /// The kernel: `<factory>/image/<schematic_id>/<version>/kernel-amd64`.
    pub fn kernel_url(&self, schematic_id: &str, version: &str) -> String {
        format!(
            "{}/image/{schematic_id}/{version}/kernel-{ARCH}",
            self.factory_url
        )
    }

    /// The initramfs: `<factory>/image/<schematic_id>/<version>/initramfs-amd64.xz`.
    pub fn initramfs_url(&self, schematic_id: &str, version: &str) -> String {
        format!(
            "{}/image/{schematic_id}/{version}/initramfs-{ARCH}.xz",
            self.factory_url
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VANILLA_ID: &str = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";
    const ISCSI_ID: &str = "c9078f9419961640c712a8bf2bb9174933dfcf1da383fd8ea2b7dc21493f8bac";

    fn iscsi() -> Schematic {
        Schematic {
            official_extensions: vec!["siderolabs/iscsi-tools".into()],
            ..Schematic::default()
        }
    }

    #[test]
    fn vanilla_schematic_bytes_and_id() {
        let s = Schematic::default();
        assert_eq!(s.to_yaml().unwrap(), "customization: {}\n");
        assert_eq!(s.id().unwrap(), VANILLA_ID);
    }

    #[test]
    fn iscsi_tools_schematic_bytes_and_id() {
        let s = iscsi();
        assert_eq!(
            s.to_yaml().unwrap(),
            "customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/iscsi-tools\n"
        );
        assert_eq!(s.id().unwrap(), ISCSI_ID);
    }

    /// `siderolabs/image-factory:pkg/schematic/schematic_test.go` ("config1").
    #[test]
    fn kernel_args_id_matches_the_factory_test_vector() {
        let s = Schematic {
            extra_kernel_args: vec!["noapic".into(), "nolapic".into()],
            ..Schematic::default()
        };
        assert_eq!(
            s.to_yaml().unwrap(),
            "customization:\n    extraKernelArgs:\n        - noapic\n        - nolapic\n"
        );
        assert_eq!(
            s.id().unwrap(),
            "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c"
        );
    }

    /// A schematic ID published with its factory image URL (gvisor, intel-ucode, iscsi-tools,
    /// util-linux-tools, in the factory UI's order).
    #[test]
    fn several_extensions_id() {
        let s = Schematic {
            official_extensions: ["gvisor", "intel-ucode", "iscsi-tools", "util-linux-tools"]
                .iter()
                .map(|e| format!("siderolabs/{e}"))
                .collect(),
            ..Schematic::default()
        };
        assert_eq!(
            s.id().unwrap(),
            "434a0300db532066f1098e05ac068159371d00f0aba0a3103a0e826e83825c82"
        );
    }

    #[test]
    fn kernel_args_come_before_extensions() {
        let s = Schematic {
            extra_kernel_args: vec!["console=ttyS0,115200n8".into(), "net.ifnames=0".into()],
            official_extensions: vec![
                "siderolabs/iscsi-tools".into(),
                "siderolabs/amd-ucode".into(),
            ],
        };
        assert_eq!(
            s.to_yaml().unwrap(),
            "customization:\n\
             \x20   extraKernelArgs:\n\
             \x20       - console=ttyS0,115200n8\n\
             \x20       - net.ifnames=0\n\
             \x20   systemExtensions:\n\
             \x20       officialExtensions:\n\
             \x20           - siderolabs/iscsi-tools\n\
             \x20           - siderolabs/amd-ucode\n"
        );
        let only_args = Schematic {
            extra_kernel_args: vec!["8250.nr_uarts=5".into()],
            ..Schematic::default()
        };
        assert_eq!(
            only_args.to_yaml().unwrap(),
            "customization:\n    extraKernelArgs:\n        - 8250.nr_uarts=5\n"
        );
        // The ID is the hash of exactly those bytes.
        assert_eq!(
            only_args.id().unwrap(),
            hex(&Sha256::digest(only_args.to_yaml().unwrap().as_bytes()))
        );
    }

    #[test]
    fn yaml_scalars_follow_yaml_v3_or_are_refused() {
        let enc = |v: &str| yaml_scalar("extraKernelArgs", v);
        assert_eq!(enc("quiet").unwrap(), "quiet");
        assert_eq!(enc("talos.platform=metal").unwrap(), "talos.platform=metal");
        assert_eq!(
            enc("-talos.halt_if_installed").unwrap(),
            "-talos.halt_if_installed"
        );
        assert_eq!(enc("a:b").unwrap(), "a:b");
        assert_eq!(enc("yes").unwrap(), "\"yes\"");
        assert_eq!(enc("off").unwrap(), "\"off\"");
        assert_eq!(enc("null").unwrap(), "\"null\"");
        assert_eq!(enc(".inf").unwrap(), "\".inf\"");
        for bad in [
            "",
            "a b",
            "tab\there",
            "line\nbreak",
            "é",
            "123",
            "0x1f",
            "1:20",
            "-1",
            ".5",
            "2024-01-01",
            "#x",
            "*x",
            "&x",
            "!x",
            "%x",
            "@x",
            "'x'",
            "\"x\"",
            "[x]",
            "{x}",
            "x:",
            "?",
            ":",
            "---x=1",
            "...x",
            "<<",
        ] {
            let err = enc(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    TalosError::UnsupportedSchematicValue {
                        field: "extraKernelArgs",
                        ..
                    }
                ),
                "{bad:?} -> {err:?}"
            );
        }
        let bad = Schematic {
            official_extensions: vec!["siderolabs/iscsi tools".into()],
            ..Schematic::default()
        };
        assert!(
            bad.id()
                .unwrap_err()
                .to_string()
                .contains("officialExtensions")
        );
    }

    #[test]
    fn official_factory_urls() {
        let f = ImageFactory::new(None);
        assert_eq!(f, ImageFactory::default());
        assert_eq!(f.factory_url(), DEFAULT_FACTORY_URL);
        assert_eq!(f.pxe_url(), DEFAULT_PXE_URL);
        assert_eq!(
            f.ipxe_url(ISCSI_ID, "v1.11.5"),
            format!("https://pxe.factory.talos.dev/pxe/{ISCSI_ID}/v1.11.5/metal-amd64")
        );
        assert_eq!(
            f.installer_image(ISCSI_ID, "v1.11.5"),
            format!("factory.talos.dev/metal-installer/{ISCSI_ID}:v1.11.5")
        );
        assert_eq!(
            f.kernel_url(VANILLA_ID, "v1.10.7"),
            format!("https://factory.talos.dev/image/{VANILLA_ID}/v1.10.7/kernel-amd64")
        );
        assert_eq!(
            f.initramfs_url(VANILLA_ID, "v1.10.7"),
            format!("https://factory.talos.dev/image/{VANILLA_ID}/v1.10.7/initramfs-amd64.xz")
        );
        assert_eq!(f.schematics_url(), "https://factory.talos.dev/schematics");
        // Naming the official factory explicitly still uses the official PXE host.
        assert_eq!(ImageFactory::new(Some("https://factory.talos.dev/")), f);
    }

    #[test]
    fn self_hosted_factory_serves_pxe_on_the_same_host() {
        let f = ImageFactory::new(Some("https://factory.example.net:8443/"));
        assert_eq!(f.factory_url(), "https://factory.example.net:8443");
        assert_eq!(f.pxe_url(), "https://factory.example.net:8443");
        assert_eq!(f.registry_host(), "factory.example.net:8443");
        assert_eq!(
            f.ipxe_url(VANILLA_ID, "v1.11.5"),
            format!("https://factory.example.net:8443/pxe/{VANILLA_ID}/v1.11.5/metal-amd64")
        );
        assert_eq!(
            f.installer_image(VANILLA_ID, "v1.11.5"),
            format!("factory.example.net:8443/metal-installer/{VANILLA_ID}:v1.11.5")
        );
        let plain = ImageFactory::new(Some("http://10.0.0.5"));
        assert_eq!(plain.registry_host(), "10.0.0.5");
        assert_eq!(
            plain.kernel_url(VANILLA_ID, "v1.11.5"),
            format!("http://10.0.0.5/image/{VANILLA_ID}/v1.11.5/kernel-amd64")
        );
    }

    #[test]
    fn supported_versions_parse() {
        let v = parse_talos_version(DEFAULT_TALOS_VERSION).unwrap();
        assert_eq!(v, TalosVersion::default());
        assert_eq!(v.to_string(), DEFAULT_TALOS_VERSION);
        for ok in [
            "v1.10.0",
            "v1.10.9",
            "v1.11.0",
            "v1.11.6",
            "v1.11.0-beta.1",
            "v1.10.0-alpha.2-dirty",
        ] {
            let v: TalosVersion = ok.parse().unwrap();
            assert_eq!(v.to_string(), ok);
            assert_eq!(v.major(), 1);
        }
        let v = parse_talos_version("v1.11.0-beta.1").unwrap();
        assert_eq!(
            (v.minor(), v.patch(), v.pre_release()),
            (11, 0, Some("beta.1"))
        );
    }

    #[test]
    fn malformed_versions_are_invalid() {
        for bad in [
            "",
            "1.11.5",
            "v1.11",
            "v1",
            "v1.11.5.1",
            "v1.11.x",
            "v01.11.5",
            "v1.011.5",
            "v1.11.5-",
            "v1.11.5-beta..1",
            "v1.11.5-beta.01",
            "v1.11.5+build",
            "V1.11.5",
            " v1.11.5",
            "v1.11.5 ",
            "v1.11.-5",
            "latest",
        ] {
            let err = parse_talos_version(bad).unwrap_err();
            assert!(
                matches!(err, TalosError::InvalidTalosVersion { .. }),
                "{bad:?} -> {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            assert!(msg.contains("vMAJOR.MINOR.PATCH"), "{msg}");
        }
    }

    #[test]
    fn unsupported_versions_name_the_range() {
        for bad in [
            "v1.9.5",
            "v1.12.0",
            "v1.12.0-alpha.1",
            "v2.11.0",
            "v0.11.0",
            "v1.1.0",
        ] {
            let err = parse_talos_version(bad).unwrap_err();
            assert_eq!(
                err,
                TalosError::UnsupportedTalosVersion { value: bad.into() }
            );
            let msg = err.to_string();
            assert!(msg.contains(bad), "{msg}");
            assert!(msg.contains("v1.10.x and v1.11.x"), "{msg}");
        }
    }
}
