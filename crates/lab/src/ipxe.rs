//! Decides whether an iPXE boot would bring up Talos, the way a real server's firmware would
//! find out: an Image Factory PXE URL (`https://…/pxe/<schematic>/<version>/metal-amd64`), or
//! the base64 of an iPXE script that chains to one or loads the factory kernel and initramfs
//! with `talos.platform=metal`. Anything else never boots.

use base64::Engine;

/// The Talos image an iPXE boot loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BootImage {
    /// Image Factory schematic ID (64 lowercase hex digits).
    pub schematic: String,
    /// Talos version, e.g. `v1.11.5`.
    pub version: String,
}

/// Parses the `ipxe` attribute of a server. The error says why the server would not boot.
pub(crate) fn parse(ipxe: &str) -> Result<BootImage, String> {
    let ipxe = ipxe.trim();
    if ipxe.starts_with("https://") || ipxe.starts_with("http://") {
        return parse_url(ipxe, "pxe", "metal-amd64");
    }
    let compact: String = ipxe.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| "ipxe is neither an http(s) URL nor base64".to_string())?;
    let script =
        String::from_utf8(bytes).map_err(|_| "decoded ipxe script is not UTF-8".to_string())?;
    parse_script(&script)
}

fn parse_script(script: &str) -> Result<BootImage, String> {
    let mut lines = script
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("#!") || (!l.is_empty() && !l.starts_with('#')));
    if lines.next() != Some("#!ipxe") {
        return Err("decoded ipxe script does not start with #!ipxe".into());
    }
    let mut kernel = None;
    let mut has_initrd = false;
    for line in lines {
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or_default();
        let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
        match command {
            "chain" => {
                let url = rest
                    .first()
                    .copied()
                    .unwrap_or_default()
                    .replace("${buildarch}", "amd64");
                return parse_url(&url, "pxe", "metal-amd64");
            }
            "kernel" => {
                let url = rest
                    .first()
                    .copied()
                    .unwrap_or_default()
                    .replace("${buildarch}", "amd64");
                let image = parse_url(&url, "image", "kernel-amd64")?;
                if !rest.contains(&"talos.platform=metal") {
                    return Err("the kernel line lacks talos.platform=metal".into());
                }
                kernel = Some(image);
            }
            "initrd" => has_initrd = true,
            _ => {}
        }
    }
    match kernel {
        Some(image) if has_initrd => Ok(image),
        Some(_) => Err("the ipxe script loads a kernel but no initrd".into()),
        None => Err(
            "the ipxe script neither chains to a factory PXE URL nor loads a Talos kernel".into(),
        ),
    }
}

/// Checks `scheme://host/…/<kind>/<schematic>/<version>/<leaf>`.
fn parse_url(url: &str, kind: &str, leaf: &str) -> Result<BootImage, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} is not an http(s) URL"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    let segments: Vec<&str> = path.split('/').collect();
    let expected = format!("{url:?} does not end in /{kind}/<schematic>/<version>/{leaf}");
    let [.., k, schematic, version, l] = segments.as_slice() else {
        return Err(expected);
    };
    if *k != kind || *l != leaf {
        return Err(expected);
    }
    if schematic.len() != 64
        || !schematic
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "{url:?}: schematic {schematic:?} is not 64 lowercase hex digits"
        ));
    }
    if !is_talos_version(version) {
        return Err(format!(
            "{url:?}: {version:?} is not a Talos version like v1.11.5"
        ));
    }
    Ok(BootImage {
        schematic: (*schematic).to_owned(),
        version: (*version).to_owned(),
    })
}

/// `v<major>.<minor>.<patch>` with an optional `-<pre-release>` suffix.
fn is_talos_version(v: &str) -> bool {
    let Some(v) = v.strip_prefix('v') else {
        return false;
    };
    let (core, pre) = match v.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (v, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    numbers.len() == 3
        && numbers
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && pre.is_none_or(|p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VANILLA: &str = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn factory_url() {
        let url = format!("https://pxe.factory.talos.dev/pxe/{VANILLA}/v1.11.5/metal-amd64");
        let image = parse(&url).unwrap();
        assert_eq!(image.schematic, VANILLA);
        assert_eq!(image.version, "v1.11.5");
        assert!(
            parse(&format!(
                "http://127.0.0.1:8080/factory/pxe/{VANILLA}/v1.12.0-beta.1/metal-amd64"
            ))
            .is_ok()
        );
    }

    #[test]
    fn bad_urls() {
        for bad in [
            format!("https://pxe.factory.talos.dev/pxe/{VANILLA}/v1.11.5/metal-arm64"),
            format!(
                "https://pxe.factory.talos.dev/pxe/{}/v1.11.5/metal-amd64",
                VANILLA.to_uppercase()
            ),
            format!("https://pxe.factory.talos.dev/pxe/{VANILLA}/1.11.5/metal-amd64"),
            format!("https://pxe.factory.talos.dev/image/{VANILLA}/v1.11.5/metal-amd64"),
            "https:///pxe".to_string(),
            "ftp://example.com/boot.ipxe".to_string(),
            "not a script".to_string(),
            String::new(),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scripts() {
        let chain = format!(
            "#!ipxe\ndhcp\nchain --replace --autofree https://pxe.factory.talos.dev/pxe/{VANILLA}/v1.11.6/metal-${{buildarch}}\n"
        );
        assert_eq!(parse(&b64(&chain)).unwrap().version, "v1.11.6");
        let kernel = format!(
            "#!ipxe\nimgfree\nkernel https://pxe.factory.talos.dev/image/{VANILLA}/v1.11.5/kernel-amd64 talos.platform=metal console=tty0\ninitrd https://pxe.factory.talos.dev/image/{VANILLA}/v1.11.5/initramfs-amd64.xz\nboot\n"
        );
        assert!(parse(&b64(&kernel)).is_ok());
        assert!(parse(&b64(&kernel.replace("talos.platform=metal", ""))).is_err());
        assert!(parse(&b64(&kernel.replace("initrd", "#initrd"))).is_err());
        assert!(parse(&b64("#!ipxe\nboot\n")).is_err());
        assert!(parse(&b64("echo hi")).is_err());
    }
}
