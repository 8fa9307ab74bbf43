//! Which disk Talos installs to, which disk carries a Mayastor pool, and whether the cluster gets
//! replicated storage at all: one rule, applied twice.
//!
//! * **At step 1, to the plans** (Latitude's `specs.drives`, before anything is ordered): can
//!   each storage node's plan carry a Mayastor pool on a disk besides the one Talos installs to?
//!   `--storage auto` picks Mayastor when it can and local-path (the default StorageClass, no
//!   DiskPools) when it cannot; `--storage mayastor` stops at step 1 when it cannot, naming the
//!   plans at the site that could.
//! * **In maintenance mode, to the disks each node reports** over Talos' `Disks` RPC: servers
//!   differ from their plans (Latitude's recorded `c2-small-x86` servers came with 480 GB, 500 GB
//!   or 1 TB SSDs and even 2 × 4 TB NVMe), so what the node reports decides.
//!
//! The install disk rule ([`choose_install_disk`]): never read-only, a CD-ROM or an SD card, at
//! least [`MIN_INSTALL_BYTES`]; prefer a SATA/SAS SSD, then an NVMe disk, then an HDD (NVMe disks
//! are the better Mayastor disks, so a machine with both installs on the SSD); among those the
//! smallest; ties by device name. The data disk rule ([`choose_data_disk`]): of the other
//! writable SSD/NVMe/HDD disks of at least [`MIN_DATA_BYTES`], prefer NVMe, then the largest,
//! ties by device name. Talos' own install disk default (talosctl's `/dev/sda`) is not used:
//! Talos accepts a config naming a disk the machine lacks and fails only in its install task
//! (`v1alpha1_sequencer_tasks.go`, `Install`: `filepath.EvalSymlinks`).

use serde::{Deserialize, Serialize};

/// Talos needs a few GiB for its partitions; anything below 10 GB is not an install target.
pub const MIN_INSTALL_BYTES: u64 = 10_000_000_000;
/// A Mayastor pool disk of less than 10 GB is not worth a pool.
pub const MIN_DATA_BYTES: u64 = 10_000_000_000;

/// `--storage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageChoice {
    /// Mayastor where the storage nodes' plans have a data disk, local-path otherwise.
    #[default]
    Auto,
    /// Mayastor or nothing: stop at step 1 when the plans cannot carry it.
    Mayastor,
    /// local-path only, never DiskPools.
    LocalPath,
}

impl std::fmt::Display for StorageChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StorageChoice::Auto => "auto",
            StorageChoice::Mayastor => "mayastor",
            StorageChoice::LocalPath => "local-path",
        })
    }
}

impl std::str::FromStr for StorageChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(StorageChoice::Auto),
            "mayastor" => Ok(StorageChoice::Mayastor),
            "local-path" => Ok(StorageChoice::LocalPath),
            other => Err(format!(
                "{other:?} is not a storage choice: auto, mayastor or local-path"
            )),
        }
    }
}

/// What step 1 decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageMode {
    /// A DiskPool per storage node, `mayastor-nvme` the default StorageClass.
    Mayastor,
    /// local-path-provisioner's `local-path` stays the default StorageClass; no DiskPools.
    LocalPath,
}

impl std::fmt::Display for StorageMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StorageMode::Mayastor => "mayastor",
            StorageMode::LocalPath => "local-path",
        })
    }
}

/// The class of a disk, as Talos' `Disk.type` reports it (lower case) or a plan lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiskClass {
    /// A SATA/SAS solid-state disk.
    Ssd,
    /// An NVMe disk.
    Nvme,
    /// A spinning disk.
    Hdd,
    /// CD-ROM, SD card or unknown: never used.
    Other,
}

impl DiskClass {
    /// From Talos' type name (`nvme`, `ssd`, `hdd`, `sd`, `cd`, `unknown`) or a plan's drive
    /// type (`NVME`, `SSD`, `HDD`).
    pub fn parse(text: &str) -> DiskClass {
        match text.to_ascii_lowercase().as_str() {
            "ssd" => DiskClass::Ssd,
            "nvme" => DiskClass::Nvme,
            "hdd" => DiskClass::Hdd,
            _ => DiskClass::Other,
        }
    }
}

/// What the rules look at in a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFacts {
    /// `/dev/sda`, or for a planned disk a description (`SSD #1`).
    pub name: String,
    /// Its class.
    pub class: DiskClass,
    /// Bytes.
    pub size: u64,
    /// Read-only disks are never chosen.
    pub readonly: bool,
}

/// The index of the disk Talos should install to, if any disk qualifies.
pub fn choose_install_disk(disks: &[DiskFacts]) -> Option<usize> {
    disks
        .iter()
        .enumerate()
        .filter(|(_, d)| !d.readonly && d.class != DiskClass::Other && d.size >= MIN_INSTALL_BYTES)
        .min_by(|(_, a), (_, b)| {
            a.class
                .cmp(&b.class)
                .then(a.size.cmp(&b.size))
                .then(a.name.cmp(&b.name))
        })
        .map(|(i, _)| i)
}

/// The index of the disk a Mayastor pool should use, given the install disk.
pub fn choose_data_disk(disks: &[DiskFacts], install: Option<usize>) -> Option<usize> {
    let rank = |c: DiskClass| match c {
        DiskClass::Nvme => 0,
        DiskClass::Ssd => 1,
        DiskClass::Hdd => 2,
        DiskClass::Other => 3,
    };
    disks
        .iter()
        .enumerate()
        .filter(|(i, d)| {
            Some(*i) != install
                && !d.readonly
                && d.class != DiskClass::Other
                && d.size >= MIN_DATA_BYTES
        })
        .min_by(|(_, a), (_, b)| {
            rank(a.class)
                .cmp(&rank(b.class))
                .then(b.size.cmp(&a.size))
                .then(a.name.cmp(&b.name))
        })
        .map(|(i, _)| i)
}

pub use metal::provider::PlanDrive;

/// `"1.9 TB"`, `"480GB"` → bytes (decimal units, as drives are sold); 0 when unreadable.
pub fn parse_size(text: &str) -> u64 {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let Ok(number) = text[..split].trim().parse::<f64>() else {
        return 0;
    };
    let unit = match text[split..].trim().to_ascii_uppercase().as_str() {
        "TB" | "T" => 1e12,
        "MB" | "M" => 1e6,
        _ => 1e9,
    };
    (number * unit) as u64
}

/// The disks a machine of a plan is expected to have.
pub fn planned_disks(drives: &[PlanDrive]) -> Vec<DiskFacts> {
    let mut out = Vec::new();
    for drive in drives {
        for i in 0..drive.count.min(32) {
            out.push(DiskFacts {
                name: format!("{} {} #{}", drive.size, drive.kind, i + 1),
                class: DiskClass::parse(&drive.kind),
                size: parse_size(&drive.size),
                readonly: false,
            });
        }
    }
    out
}

/// `1× 500 GB SSD + 2× 1 TB NVME`.
pub fn describe_drives(drives: &[PlanDrive]) -> String {
    if drives.is_empty() {
        return "no drives listed".into();
    }
    drives
        .iter()
        .map(|d| format!("{}× {} {}", d.count, d.size, d.kind))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// True when a machine of a plan with `drives` has a data disk besides its install disk.
pub fn plan_has_data_disk(drives: &[PlanDrive]) -> bool {
    let disks = planned_disks(drives);
    let install = choose_install_disk(&disks);
    install.is_some() && choose_data_disk(&disks, install).is_some()
}

/// Step 1's storage decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageDecision {
    /// Mayastor or local-path.
    pub mode: StorageMode,
    /// One line for progress, `--dry-run` and the summary.
    pub note: String,
}

/// Decides the storage of a cluster whose storage nodes run `plan` (with `drives`; empty when
/// the provider did not list them), given `alternatives`: the plans offered at the chosen site
/// whose machines would have a data disk. `Err` (a prerequisite) when `--storage mayastor`
/// cannot be had.
pub fn decide(
    choice: StorageChoice,
    plan: &str,
    drives: &[PlanDrive],
    alternatives: &[String],
    site: &str,
) -> Result<StorageDecision, String> {
    let known = !drives.is_empty();
    let capable = known && plan_has_data_disk(drives);
    let others = if alternatives.is_empty() {
        format!("no plan offered in {site} has one")
    } else {
        format!(
            "plans in {site} that would give replicated storage: {}",
            alternatives.join(", ")
        )
    };
    match choice {
        StorageChoice::LocalPath => Ok(StorageDecision {
            mode: StorageMode::LocalPath,
            note: format!(
                "storage: local-path (--storage local-path): the default StorageClass, node-local volumes, no DiskPools; {others}"
            ),
        }),
        _ if capable => Ok(StorageDecision {
            mode: StorageMode::Mayastor,
            note: format!(
                "storage: Mayastor: {plan} ({}) has a data disk besides the one Talos installs to; one DiskPool per storage node, mayastor-nvme the default StorageClass",
                describe_drives(drives)
            ),
        }),
        StorageChoice::Mayastor if known => Err(format!(
            "--storage mayastor needs a disk besides the system disk on every storage node, and {plan} has {} (Talos takes its only suitable disk); {others}. Use --storage auto or local-path, or a --worker-plan/--cp-plan with a data disk",
            describe_drives(drives)
        )),
        StorageChoice::Mayastor => Ok(StorageDecision {
            mode: StorageMode::Mayastor,
            note: format!(
                "storage: Mayastor (--storage mayastor): the provider lists no drives for {plan}; the disks each node reports in maintenance mode are checked before anything is installed"
            ),
        }),
        StorageChoice::Auto => Ok(StorageDecision {
            mode: StorageMode::LocalPath,
            note: if known {
                format!(
                    "storage: local-path (the default StorageClass, no DiskPools, volumes not replicated): {plan} has {}, no disk besides the system disk for Mayastor; {others}",
                    describe_drives(drives)
                )
            } else {
                format!(
                    "storage: local-path (the default StorageClass, no DiskPools): the provider lists no drives for {plan}; {others}"
                )
            },
        }),
    }
}

/// [`decide`] for `plan` given the provider's offers: the plan's drives, and the plans in stock
/// at `site` with a data disk — or, when none is, those in stock elsewhere with their sites.
pub fn decide_for_offers(
    choice: StorageChoice,
    plan: &str,
    offers: &[metal::provider::PlanOffer],
    site: &str,
) -> Result<StorageDecision, String> {
    let drives = offers
        .iter()
        .find(|o| o.slug == plan)
        .map(|o| o.drives.clone())
        .unwrap_or_default();
    let alternatives: Vec<String> = offers
        .iter()
        .filter(|o| o.site(site).is_some_and(|s| s.in_stock) && plan_has_data_disk(&o.drives))
        .map(|o| o.slug.clone())
        .collect();
    if !alternatives.is_empty() {
        return decide(choice, plan, &drives, &alternatives, site);
    }
    let elsewhere: Vec<String> = offers
        .iter()
        .filter(|o| o.ipxe != Some(false) && plan_has_data_disk(&o.drives))
        .filter_map(|o| {
            let sites = o.in_stock_sites();
            (!sites.is_empty()).then(|| format!("{} (in {})", o.slug, sites.join(", ")))
        })
        .collect();
    decide(
        choice,
        plan,
        &drives,
        &elsewhere,
        &format!("other sites (none in {site})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(count: u32, size: &str, kind: &str) -> PlanDrive {
        PlanDrive {
            count,
            size: size.into(),
            kind: kind.into(),
        }
    }

    fn disk(name: &str, class: DiskClass, gb: u64) -> DiskFacts {
        DiskFacts {
            name: name.into(),
            class,
            size: gb * 1_000_000_000,
            readonly: false,
        }
    }

    #[test]
    fn install_disk_prefers_the_smallest_ssd_and_leaves_nvme_for_storage() {
        let s2 = [
            disk("/dev/nvme0n1", DiskClass::Nvme, 1000),
            disk("/dev/nvme1n1", DiskClass::Nvme, 1000),
            disk("/dev/sda", DiskClass::Ssd, 500),
            disk("/dev/sdb", DiskClass::Ssd, 500),
        ];
        let install = choose_install_disk(&s2);
        assert_eq!(install, Some(2));
        assert_eq!(choose_data_disk(&s2, install), Some(0));
        // m4-metal-small: 2 × 480 GB + 2 × 1 TB NVMe → the small one, a large one for data.
        let m4 = [
            disk("/dev/nvme0n1", DiskClass::Nvme, 480),
            disk("/dev/nvme1n1", DiskClass::Nvme, 480),
            disk("/dev/nvme2n1", DiskClass::Nvme, 1000),
            disk("/dev/nvme3n1", DiskClass::Nvme, 1000),
        ];
        let install = choose_install_disk(&m4);
        assert_eq!(install, Some(0));
        assert_eq!(choose_data_disk(&m4, install), Some(2));
        // NVMe only, one disk: it is the install disk and there is no data disk.
        let c3 = [disk("/dev/nvme0n1", DiskClass::Nvme, 800)];
        assert_eq!(choose_install_disk(&c3), Some(0));
        assert_eq!(choose_data_disk(&c3, Some(0)), None);
        // Never a read-only disk, a CD-ROM or a tiny disk.
        let odd = [
            DiskFacts {
                readonly: true,
                ..disk("/dev/sda", DiskClass::Ssd, 500)
            },
            disk("/dev/sr0", DiskClass::Other, 1),
            disk("/dev/sdb", DiskClass::Ssd, 4),
            disk("/dev/sdc", DiskClass::Hdd, 4000),
        ];
        assert_eq!(choose_install_disk(&odd), Some(3));
        assert_eq!(choose_install_disk(&odd[..3]), None);
    }

    #[test]
    fn plans_from_the_recordings() {
        assert!(!plan_has_data_disk(&[d(1, "500 GB", "SSD")]));
        assert!(plan_has_data_disk(&[d(2, "500 GB", "SSD")]));
        assert!(!plan_has_data_disk(&[d(1, "800 GB", "NVME")]));
        assert!(plan_has_data_disk(&[d(2, "1.9 TB", "NVME")]));
        assert!(plan_has_data_disk(&[
            d(2, "480GB", "NVME"),
            d(2, "3.8TB", "NVME")
        ]));
        assert_eq!(parse_size("3.8TB"), 3_800_000_000_000);
        assert_eq!(parse_size("480GB"), 480_000_000_000);
        assert_eq!(parse_size("lots"), 0);
    }

    #[test]
    fn decisions() {
        let small = [d(1, "500 GB", "SSD")];
        let alternatives = vec!["c2-medium-x86".to_string(), "c3-large-x86".to_string()];
        let auto = decide(
            StorageChoice::Auto,
            "c2-small-x86",
            &small,
            &alternatives,
            "DAL",
        )
        .unwrap();
        assert_eq!(auto.mode, StorageMode::LocalPath);
        assert!(auto.note.contains("local-path"), "{}", auto.note);
        assert!(
            auto.note.contains("c2-medium-x86, c3-large-x86"),
            "{}",
            auto.note
        );
        let err = decide(
            StorageChoice::Mayastor,
            "c2-small-x86",
            &small,
            &alternatives,
            "DAL",
        )
        .unwrap_err();
        assert!(err.contains("c2-medium-x86, c3-large-x86"), "{err}");
        assert!(err.contains("1× 500 GB SSD"), "{err}");
        let big = [d(2, "1.9 TB", "NVME")];
        let m = decide(
            StorageChoice::Auto,
            "c3-large-x86",
            &big,
            &alternatives,
            "DAL",
        )
        .unwrap();
        assert_eq!(m.mode, StorageMode::Mayastor);
        let lp = decide(StorageChoice::LocalPath, "c3-large-x86", &big, &[], "DAL").unwrap();
        assert_eq!(lp.mode, StorageMode::LocalPath);
        assert_eq!(
            "local-path".parse::<StorageChoice>(),
            Ok(StorageChoice::LocalPath)
        );
        assert!("zfs".parse::<StorageChoice>().is_err());
    }
}
