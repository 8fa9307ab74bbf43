//! The block devices of a lab machine, as `storage.StorageService/Disks` reports them, as the
//! lab's Talos install resolves `machine.install.disk`/`diskSelector` against, and as the
//! simulated Mayastor checks DiskPool disks against.
//!
//! A machine's disks are its plan's `specs.drives` (Latitude's `GET /plans`, recorded in
//! `latitudesh/terraform-provider-latitudesh` `latitudesh/fixtures/TestAccPlan_Basic.yaml`):
//! each NVMe drive is `/dev/nvme<N>n1`, each SATA SSD or HDD `/dev/sd<x>`, numbered in the order
//! the plan lists them, each with a model, serial and WWID so that the `/dev/disk/by-id/` names
//! udev makes exist (`nvme-<model>_<serial>`, `nvme-<wwid>`, `ata-<model>_<serial>`,
//! `wwn-0x<wwn>`: systemd's `60-persistent-storage.rules`). `extra_disks` from the lab
//! configuration adds NVMe data disks; the `node.drives` fault replaces a server's drives, as
//! Latitude ships servers that differ from their plan (`TestAccServer_Basic.yaml` recorded
//! `c2-small-x86` servers with "480 GB SSD", "1 TB SSD" and "2 X 4 TB NVMe").
//!
//! No disk is a system disk before the machine installed Talos; afterwards the one its
//! configuration's install target resolves to is (see [`resolve_install_disk`]).

use crate::catalogue::{Drive, Plan};

/// What kind of drive (the Talos `Disk.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiskKind {
    Ssd,
    Hdd,
    Nvme,
}

impl DiskKind {
    fn parse(text: &str) -> DiskKind {
        match text.to_ascii_lowercase().as_str() {
            "nvme" => DiskKind::Nvme,
            "hdd" => DiskKind::Hdd,
            _ => DiskKind::Ssd,
        }
    }

    /// The lower-case name Talos' disk selector uses (`ssd`, `hdd`, `nvme`).
    pub fn name(self) -> &'static str {
        match self {
            DiskKind::Ssd => "ssd",
            DiskKind::Hdd => "hdd",
            DiskKind::Nvme => "nvme",
        }
    }
}

/// One block device of a lab machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LabDisk {
    /// `/dev/nvme0n1`, `/dev/sda`…
    pub device_name: String,
    /// Bytes.
    pub size: u64,
    pub model: String,
    pub serial: String,
    /// `eui.…` (NVMe) or `naa.…` (SATA), as `/sys/block/<dev>/device/wwid` reads.
    pub wwid: String,
    pub kind: DiskKind,
    /// The Talos system disk (the machine installed Talos on it).
    pub system: bool,
}

impl LabDisk {
    /// The `/dev/disk/by-id/` names udev gives this disk.
    pub fn by_id(&self) -> Vec<String> {
        let model = self.model.replace(' ', "_");
        match self.kind {
            DiskKind::Nvme => vec![
                format!("/dev/disk/by-id/nvme-{model}_{}", self.serial),
                format!("/dev/disk/by-id/nvme-{}", self.wwid),
            ],
            DiskKind::Ssd | DiskKind::Hdd => {
                let mut names = vec![format!("/dev/disk/by-id/ata-{model}_{}", self.serial)];
                if let Some(naa) = self.wwid.strip_prefix("naa.") {
                    names.push(format!("/dev/disk/by-id/wwn-0x{naa}"));
                }
                names
            }
        }
    }

    /// The paths this disk answers to: its device name or a by-id name, bare or as
    /// `aio://`/`uring://` URIs (Mayastor's DiskPool syntax).
    pub fn matches(&self, path: &str) -> bool {
        let path = path
            .strip_prefix("aio://")
            .or_else(|| path.strip_prefix("uring://"))
            .unwrap_or(path);
        let path = path.split('?').next().unwrap_or(path);
        path == self.device_name || self.by_id().iter().any(|p| p == path)
    }
}

/// The drives of a machine of `plan`, or of the `node.drives` fault's override.
pub(crate) fn for_plan(plan: Option<&Plan>, seed: &str, extra: u32) -> Vec<LabDisk> {
    let drives: Vec<Drive> = plan.map(|p| p.drives.clone()).unwrap_or_else(|| {
        vec![Drive {
            count: 2.0,
            size: "960 GB".into(),
            kind: "NVME".into(),
        }]
    });
    from_drives(&drives, seed, extra)
}

/// The disks a machine with `drives` has (plus `extra` 960 GB NVMe data disks).
pub(crate) fn from_drives(drives: &[Drive], seed: &str, extra: u32) -> Vec<LabDisk> {
    let tag: u32 = seed.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    let mut out = Vec::new();
    let (mut nvme, mut sata) = (0u32, 0u32);
    let mut push = |kind: DiskKind, size: u64| {
        let i = nvme + sata;
        let disk = match kind {
            DiskKind::Nvme => {
                let d = LabDisk {
                    device_name: format!("/dev/nvme{nvme}n1"),
                    size,
                    model: "LAB NVMe SSD".into(),
                    serial: format!("LAB{tag:08X}{i:02}"),
                    wwid: format!("eui.00{tag:08x}{i:06x}"),
                    kind,
                    system: false,
                };
                nvme += 1;
                d
            }
            DiskKind::Ssd | DiskKind::Hdd => {
                let letter = (b'a' + (sata % 26) as u8) as char;
                let d = LabDisk {
                    device_name: format!("/dev/sd{letter}"),
                    size,
                    model: if kind == DiskKind::Hdd {
                        "LAB SATA HDD".into()
                    } else {
                        "LAB SATA SSD".into()
                    },
                    serial: format!("LAB{tag:08X}{i:02}"),
                    wwid: format!("naa.5{tag:08x}{i:07x}"),
                    kind,
                    system: false,
                };
                sata += 1;
                d
            }
        };
        out.push(disk);
    };
    for drive in drives {
        for _ in 0..(drive.count.max(0.0) as u32).min(16) {
            push(DiskKind::parse(&drive.kind), parse_size(&drive.size));
        }
    }
    for _ in 0..extra {
        push(DiskKind::Nvme, 960_000_000_000);
    }
    out
}

/// A `node.drives` fault's drive list: `COUNTxSIZExTYPE` groups joined by `+`, such as
/// `1x480GBxSSD+2x4TBxNVME`.
pub(crate) fn parse_drives(spec: &str) -> Result<Vec<Drive>, String> {
    spec.split('+')
        .map(|group| {
            let bad = || format!("{group:?} is not COUNTxSIZExTYPE such as 2x1.9TBxNVME");
            let mut parts = group.splitn(3, 'x');
            let (Some(count), Some(size), Some(kind)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            let count: u32 = count
                .parse()
                .ok()
                .filter(|c| (1..=16).contains(c))
                .ok_or_else(bad)?;
            if !matches!(kind.to_ascii_uppercase().as_str(), "SSD" | "HDD" | "NVME")
                || parse_size(size) == 0
                || !size.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(bad());
            }
            Ok(Drive {
                count: f64::from(count),
                size: size.to_owned(),
                kind: kind.to_ascii_uppercase(),
            })
        })
        .collect()
}

/// The disks of a node the lab knows nothing more about: two 960 GB NVMe disks (plus
/// `extra`), the first its system disk.
pub(crate) fn default_for(seed: &str, extra: u32) -> Vec<LabDisk> {
    let mut disks = for_plan(None, seed, extra);
    if let Some(first) = disks.first_mut() {
        first.system = true;
    }
    disks
}

/// `"1.9 TB"`, `"800 GB"`, `"480GB"`, `"3.8TB"` → bytes (decimal units, as drives are sold;
/// Latitude's sizes are free text with or without a space).
pub(crate) fn parse_size(text: &str) -> u64 {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let number: f64 = text[..split].trim().parse().unwrap_or(960.0);
    let unit = match text[split..].trim().to_ascii_uppercase().as_str() {
        "TB" | "T" => 1e12,
        "MB" | "M" => 1e6,
        _ => 1e9,
    };
    (number * unit) as u64
}

/// The install target of a machine configuration: `machine.install.disk` or
/// `machine.install.diskSelector` (as a YAML/JSON value).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct InstallTarget {
    pub disk: Option<String>,
    pub selector: Option<serde_json::Value>,
}

/// Which disk Talos installs to, or the error its install task fails with.
///
/// Talos v1.11 `internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_sequencer_tasks.go`
/// (`Install`): a disk selector is matched against the machine's disks and the first match
/// taken, "no disks matched the expression" when none does; otherwise `machine.install.disk` goes
/// through `filepath.EvalSymlinks`, which fails with `lstat <path>: no such file or directory`
/// for a device the machine does not have. The configuration itself was accepted: Talos checks
/// only that one of the two is set (`v1alpha1_validation.go`).
pub(crate) fn resolve_install_disk(
    disks: &[LabDisk],
    target: &InstallTarget,
) -> Result<usize, String> {
    if let Some(selector) = target.selector.as_ref().filter(|s| !s.is_null()) {
        return disks
            .iter()
            .position(|d| selector_matches(d, selector))
            .ok_or_else(|| format!("no disks matched the expression: {}", describe(selector)));
    }
    let path = target.disk.as_deref().unwrap_or_default();
    disks
        .iter()
        .position(|d| d.device_name == path || d.by_id().iter().any(|p| p == path))
        .ok_or_else(|| format!("lstat {path}: no such file or directory"))
}

fn describe(selector: &serde_json::Value) -> String {
    selector
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    format!(
                        "disk.{k} == {}",
                        v.as_str().map_or(v.to_string(), |s| format!("{s:?}"))
                    )
                })
                .collect::<Vec<_>>()
                .join(" && ")
        })
        .unwrap_or_default()
}

/// Talos' `InstallDiskSelector` fields (`size`, `name`, `model`, `serial`, `wwid`, `type`,
/// `busPath`, `modalias`, `uuid`): `model`/`serial`/`name`/`busPath` are glob patterns, `size`
/// is an exact size or a comparison (`>= 1TB`), `type` one of `ssd`, `hdd`, `nvme`, `sd`.
fn selector_matches(disk: &LabDisk, selector: &serde_json::Value) -> bool {
    let Some(fields) = selector.as_object() else {
        return false;
    };
    fields.iter().all(|(key, value)| {
        let text = value
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        match key.as_str() {
            "type" => text.eq_ignore_ascii_case(disk.kind.name()),
            "model" => glob(&text, &disk.model),
            "serial" => glob(&text, &disk.serial),
            "wwid" => glob(&text, &disk.wwid),
            "name" => glob(&text, &disk.device_name),
            "size" => size_matches(&text, disk.size),
            // Fields the lab's disks do not carry match nothing.
            _ => false,
        }
    })
}

fn size_matches(text: &str, size: u64) -> bool {
    let text = text.trim();
    let (op, rest) = [">=", "<=", ">", "<", "=="]
        .iter()
        .find_map(|op| text.strip_prefix(op).map(|r| (*op, r)))
        .unwrap_or(("==", text));
    let want = parse_size(rest);
    match op {
        ">=" => size >= want,
        "<=" => size <= want,
        ">" => size > want,
        "<" => size < want,
        _ => size == want,
    }
}

/// Shell-style `*` globbing.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob(tail, &rest[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(count: f64, size: &str, kind: &str) -> Drive {
        Drive {
            count,
            size: size.into(),
            kind: kind.into(),
        }
    }

    #[test]
    fn sizes_and_paths() {
        assert_eq!(parse_size("1.9 TB"), 1_900_000_000_000);
        assert_eq!(parse_size("480GB"), 480_000_000_000);
        assert_eq!(parse_size("3.8TB"), 3_800_000_000_000);
        let disks = default_for("cp-1", 0);
        assert_eq!(disks.len(), 2);
        assert!(disks[0].system && !disks[1].system);
        assert!(disks[1].matches("/dev/nvme1n1"));
        assert!(disks[1].matches("aio:///dev/nvme1n1"));
        assert!(disks[1].matches(&format!("/dev/disk/by-id/nvme-{}", disks[1].wwid)));
        assert!(!disks[1].matches("/dev/nvme9n1"));
    }

    #[test]
    fn drives_become_sata_and_nvme_devices_in_plan_order() {
        let disks = from_drives(
            &[drive(2.0, "500 GB", "SSD"), drive(2.0, "1 TB", "NVME")],
            "s2",
            0,
        );
        let names: Vec<&str> = disks.iter().map(|d| d.device_name.as_str()).collect();
        assert_eq!(
            names,
            ["/dev/sda", "/dev/sdb", "/dev/nvme0n1", "/dev/nvme1n1"]
        );
        assert!(disks.iter().all(|d| !d.system));
        assert_eq!(disks[0].kind, DiskKind::Ssd);
        assert_eq!(disks[3].size, 1_000_000_000_000);
        let ata = &disks[1].by_id()[0];
        assert!(
            ata.starts_with("/dev/disk/by-id/ata-LAB_SATA_SSD_"),
            "{ata}"
        );
        assert!(disks[1].matches(ata));
        assert!(disks[1].by_id()[1].starts_with("/dev/disk/by-id/wwn-0x5"));
    }

    #[test]
    fn install_target_resolves_as_talos_does() {
        let disks = from_drives(&[drive(1.0, "800 GB", "NVME")], "c3", 0);
        let on = |disk: &str| InstallTarget {
            disk: Some(disk.into()),
            selector: None,
        };
        assert_eq!(resolve_install_disk(&disks, &on("/dev/nvme0n1")), Ok(0));
        assert_eq!(
            resolve_install_disk(&disks, &on(&disks[0].by_id()[0])),
            Ok(0)
        );
        assert_eq!(
            resolve_install_disk(&disks, &on("/dev/sda")).unwrap_err(),
            "lstat /dev/sda: no such file or directory"
        );
        let select = |v: serde_json::Value| InstallTarget {
            disk: None,
            selector: Some(v),
        };
        assert_eq!(
            resolve_install_disk(&disks, &select(serde_json::json!({"type": "nvme"}))),
            Ok(0)
        );
        assert_eq!(
            resolve_install_disk(
                &disks,
                &select(serde_json::json!({"size": ">= 500GB", "model": "LAB*"}))
            ),
            Ok(0)
        );
        let err =
            resolve_install_disk(&disks, &select(serde_json::json!({"type": "ssd"}))).unwrap_err();
        assert!(err.starts_with("no disks matched the expression"), "{err}");
    }
}
