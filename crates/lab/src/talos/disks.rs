//! The block devices of a lab machine, as `storage.StorageService/Disks` reports them and as the
//! simulated Mayastor checks DiskPool disks against.
//!
//! Every machine has an NVMe system disk `/dev/nvme0n1` (Talos installs there; `system_disk` is
//! reported once the node runs its configuration) and NVMe data disks `/dev/nvme1n1`,
//! `/dev/nvme2n1`…: one less than the plan's NVMe drive count, at least one (so every plan,
//! even `c2.small` with its single SSD, has `/dev/nvme1n1`), plus `extra_disks` from the lab
//! configuration. Sizes come from the plan's first NVMe drive group (960 GB without one).

use crate::catalogue::Plan;

/// One block device of a lab machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LabDisk {
    /// `/dev/nvme0n1`…
    pub device_name: String,
    /// Bytes.
    pub size: u64,
    pub model: String,
    pub serial: String,
    pub wwid: String,
    /// The Talos system disk.
    pub system: bool,
}

impl LabDisk {
    /// The paths this disk answers to: `/dev/nvmeXn1`, `aio:///dev/nvmeXn1`,
    /// `uring:///dev/nvmeXn1`, `/dev/disk/by-id/nvme-<wwid>` and `/dev/disk/by-id/nvme-<model>_<serial>`.
    pub fn matches(&self, path: &str) -> bool {
        let path = path
            .strip_prefix("aio://")
            .or_else(|| path.strip_prefix("uring://"))
            .unwrap_or(path);
        let path = path.split('?').next().unwrap_or(path);
        path == self.device_name
            || path == format!("/dev/disk/by-id/nvme-{}", self.wwid)
            || path
                == format!(
                    "/dev/disk/by-id/nvme-{}_{}",
                    self.model.replace(' ', "_"),
                    self.serial
                )
    }
}

/// The disks of a machine of `plan` (`None`: an unknown plan, two 960 GB NVMe disks) keyed by
/// `seed` (the server ID or node name, for serial numbers), with `extra` more data disks.
pub(crate) fn for_plan(plan: Option<&Plan>, seed: &str, extra: u32) -> Vec<LabDisk> {
    let nvme = plan.and_then(|p| {
        p.drives
            .iter()
            .find(|d| d.kind.eq_ignore_ascii_case("nvme"))
    });
    let nvme_count = nvme.map_or(0, |d| d.count.max(0.0) as u32);
    let size = nvme.map_or(960_000_000_000, |d| parse_size(&d.size));
    let data = nvme_count.saturating_sub(1).max(1) + extra;
    default_disks(seed, size, data)
}

/// The disks of a node the lab knows nothing more about: a system disk and one data disk
/// (plus `extra`), 960 GB each.
pub(crate) fn default_for(seed: &str, extra: u32) -> Vec<LabDisk> {
    default_disks(seed, 960_000_000_000, 1 + extra)
}

fn default_disks(seed: &str, size: u64, data: u32) -> Vec<LabDisk> {
    let tag: u32 = seed.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    (0..=data)
        .map(|i| LabDisk {
            device_name: format!("/dev/nvme{i}n1"),
            size,
            model: "LAB NVMe SSD".into(),
            serial: format!("LAB{tag:08X}{i:02}"),
            wwid: format!("eui.00{tag:08x}{i:06x}"),
            system: i == 0,
        })
        .collect()
}

/// `"1.9 TB"`, `"800 GB"` → bytes (decimal units, as drives are sold).
fn parse_size(text: &str) -> u64 {
    let mut parts = text.split_whitespace();
    let number: f64 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(960.0);
    let unit = match parts.next().unwrap_or("GB").to_ascii_uppercase().as_str() {
        "TB" => 1e12,
        "MB" => 1e6,
        _ => 1e9,
    };
    (number * unit) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_paths() {
        assert_eq!(parse_size("1.9 TB"), 1_900_000_000_000);
        let disks = default_for("cp-1", 0);
        assert_eq!(disks.len(), 2);
        assert!(disks[0].system && !disks[1].system);
        assert!(disks[1].matches("/dev/nvme1n1"));
        assert!(disks[1].matches("aio:///dev/nvme1n1"));
        assert!(disks[1].matches(&format!("/dev/disk/by-id/nvme-{}", disks[1].wwid)));
        assert!(!disks[1].matches("/dev/nvme9n1"));
    }
}
