//! Which servers belong to an install, and how that is proven.
//!
//! Every install has a unique id, generated once and kept in the checkpoint
//! ([`crate::checkpoint::Ownership`]). Two provider tags carry it:
//!
//! * `cto-install-<install id>` — this install and nothing else. Attached to every server the
//!   install orders, right after the order answers (Latitude cannot tag at order time: the tag
//!   is created with `POST /tags` and attached with `PATCH /servers/{id}`, as
//!   `latitudesh/terraform-provider-latitudesh` `latitudesh/resource_server.go`
//!   `updateServerTags` does).
//! * `cto-cluster-<cluster name>` — every install of that cluster name, so that `cto destroy
//!   --cluster-name` finds a cluster's servers when the checkpoint is lost.
//!
//! A server is the install's own ([`proof`]) when
//!
//! 1. its id is in the checkpoint ([`Proof::Recorded`]), or
//! 2. it carries the install tag ([`Proof::Tagged`]), or
//! 3. it answers an order whose answer was lost ([`Proof::FreshIntent`]): its hostname is one
//!    of the install's nodes whose order intent is recorded, it carries no `cto-install-*` tag
//!    (so no other install claimed it), and the provider created it between
//!    [`CREATED_AT_SKEW`] before the intent and [`FRESH_WINDOW`] after it. Before the intent
//!    was recorded, step 2 listed the project and found no other server with that hostname
//!    (or it would have stopped), so a server with that name created in that window is the
//!    order the install posted. Without a creation time there is no proof.
//!
//! A hostname alone proves nothing: a server that merely has one of the cluster's hostnames is
//! never adopted, reinstalled, deleted or replaced, and before ordering one of its hostnames
//! the install stops (exit 3) naming it.

use std::time::Duration;

use metal::provider::Machine;
use rand::Rng;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::checkpoint::{Checkpoint, OrderState};

/// Prefix of the install tag.
pub const INSTALL_TAG_PREFIX: &str = "cto-install-";
/// Prefix of the cluster tag.
pub const CLUSTER_TAG_PREFIX: &str = "cto-cluster-";
/// How much earlier than the recorded intent the provider's clock may date a server that
/// answers it.
pub const CREATED_AT_SKEW: Duration = Duration::from_secs(2 * 60);
/// How long after the recorded intent a server may be created and still answer it: orders are
/// posted seconds after their intent; a lost answer is settled and retried within minutes.
pub const FRESH_WINDOW: Duration = Duration::from_secs(15 * 60);

/// A new install id: 12 random lowercase letters and digits.
pub fn new_install_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// `cto-install-<install id>`.
pub fn install_tag_name(install_id: &str) -> String {
    format!("{INSTALL_TAG_PREFIX}{install_id}")
}

/// `cto-cluster-<cluster name>`.
pub fn cluster_tag_name(cluster: &str) -> String {
    format!("{CLUSTER_TAG_PREFIX}{cluster}")
}

/// Why a server is the install's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// Its id is in the checkpoint.
    Recorded,
    /// It carries the install tag.
    Tagged,
    /// It answers a recorded order intent whose answer was lost.
    FreshIntent,
}

/// The proof that `machine` belongs to the install of `cp`, if there is one.
pub fn proof(cp: &Checkpoint, machine: &Machine) -> Option<Proof> {
    if is_recorded(cp, &machine.id) {
        return Some(Proof::Recorded);
    }
    if carries_install_tag(cp, machine) {
        return Some(Proof::Tagged);
    }
    fresh_intent(cp, machine).then_some(Proof::FreshIntent)
}

/// True when the checkpoint holds `id` as the install's (the ids of
/// [`Checkpoint::owned_server_ids`], without collecting them).
fn is_recorded(cp: &Checkpoint, id: &str) -> bool {
    cp.servers
        .iter()
        .any(|s| s.id.as_deref() == Some(id) || s.replaced.iter().any(|r| !r.gone && r.id == id))
        || cp.ownership.duplicates.iter().any(|d| d.id == id)
}

/// True when the machine carries this install's tag (by id, or by name).
pub fn carries_install_tag(cp: &Checkpoint, machine: &Machine) -> bool {
    if let Some(tag) = &cp.ownership.install_tag
        && machine.has_tag(&tag.id)
    {
        return true;
    }
    cp.ownership
        .install_id
        .as_deref()
        .is_some_and(|id| machine.has_tag_named(&install_tag_name(id)))
}

/// True when the machine carries some install's tag that is not this install's.
pub fn carries_other_install_tag(cp: &Checkpoint, machine: &Machine) -> bool {
    let ours = cp.ownership.install_id.as_deref().map(install_tag_name);
    let our_id = cp.ownership.install_tag.as_ref().map(|t| t.id.as_str());
    machine.tags.iter().any(|t| {
        t.name.starts_with(INSTALL_TAG_PREFIX)
            && Some(t.name.as_str()) != ours.as_deref()
            && Some(t.id.as_str()) != our_id
    })
}

/// The time a record's current order intent was written.
pub fn intent_time(cp: &Checkpoint, hostname: &str) -> Option<String> {
    let record = cp.servers.iter().find(|s| s.hostname == hostname)?;
    match (&record.intended_at, &record.order) {
        (Some(at), _) => Some(at.clone()),
        (None, OrderState::Intended { at }) => Some(at.clone()),
        _ => None,
    }
}

fn parse(at: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(at.trim(), &Rfc3339).ok()
}

/// Rule 3 of the module documentation.
fn fresh_intent(cp: &Checkpoint, machine: &Machine) -> bool {
    if machine
        .tags
        .iter()
        .any(|t| t.name.starts_with(INSTALL_TAG_PREFIX))
    {
        return false;
    }
    let Some(intent) = intent_time(cp, &machine.hostname)
        .as_deref()
        .and_then(parse)
    else {
        return false;
    };
    let Some(created) = machine.created_at.as_deref().and_then(parse) else {
        return false;
    };
    created >= intent - CREATED_AT_SKEW && created <= intent + FRESH_WINDOW
}

/// Servers that have the hostname of one of `hostnames` and no proof of being the install's:
/// another install's, or made by hand. Ordering such a hostname would make two servers answer
/// to it.
pub fn namesakes<'m>(
    cp: &Checkpoint,
    machines: &'m [Machine],
    hostnames: &[String],
) -> Vec<&'m Machine> {
    machines
        .iter()
        .filter(|m| hostnames.contains(&m.hostname) && proof(cp, m).is_none())
        .collect()
}

/// One line per server for messages: `s-cp-1 (sv_…, on, ubuntu_24_04_x64_lts, tags …)`.
pub fn describe(machine: &Machine) -> String {
    let tags: Vec<&str> = machine.tags.iter().map(|t| t.name.as_str()).collect();
    format!(
        "{} ({}, {}, {}{})",
        machine.hostname,
        machine.id,
        machine.raw_status,
        machine.operating_system.as_deref().unwrap_or("unknown OS"),
        if tags.is_empty() {
            ", no tags".to_owned()
        } else {
            format!(", tags {}", tags.join(" "))
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::InstallRequest;
    use metal::provider::{MachineState, Tag};

    fn checkpoint() -> Checkpoint {
        let spec = InstallRequest {
            cluster_name: "own".into(),
            nodes: 2,
            control_planes: 1,
            sync_timeout_minutes: 30,
            project: Some("proj_x".into()),
            api_url: "https://api.example.invalid".into(),
            ..Default::default()
        }
        .validate()
        .unwrap();
        Checkpoint::new(spec)
    }

    fn machine(hostname: &str, created_at: Option<&str>, tags: &[(&str, &str)]) -> Machine {
        Machine {
            id: format!("sv_{hostname}"),
            hostname: hostname.into(),
            state: MachineState::Ready,
            raw_status: "on".into(),
            primary_ipv4: None,
            site: None,
            plan: None,
            operating_system: Some("ipxe".into()),
            hourly_usd: None,
            tags: tags
                .iter()
                .map(|(id, name)| Tag {
                    id: (*id).into(),
                    name: (*name).into(),
                })
                .collect(),
            created_at: created_at.map(str::to_owned),
        }
    }

    #[test]
    fn ids_are_unique_and_plain() {
        let a = new_install_id();
        assert_eq!(a.len(), 12);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_ne!(a, new_install_id());
        assert!(checkpoint().ownership.install_id.is_some());
    }

    #[test]
    fn a_hostname_alone_proves_nothing() {
        let mut cp = checkpoint();
        let m = machine("own-cp-1", Some("2026-01-01T10:00:00+00:00"), &[]);
        assert_eq!(proof(&cp, &m), None, "no intent recorded");
        // An intent recorded after the server was made: still not ours.
        cp.servers[0].order = OrderState::Intended {
            at: "2026-01-01T11:00:00Z".into(),
        };
        assert_eq!(proof(&cp, &m), None);
        assert_eq!(
            namesakes(&cp, std::slice::from_ref(&m), &["own-cp-1".into()]).len(),
            1
        );
    }

    #[test]
    fn a_server_made_right_after_the_intent_answers_it() {
        let mut cp = checkpoint();
        cp.servers[0].order = OrderState::Intended {
            at: "2026-01-01T10:00:00Z".into(),
        };
        let m = machine("own-cp-1", Some("2026-01-01T10:00:03+00:00"), &[]);
        assert_eq!(proof(&cp, &m), Some(Proof::FreshIntent));
        // Unless another install tagged it, or no creation time is known, or it is far later.
        let other = machine(
            "own-cp-1",
            Some("2026-01-01T10:00:03+00:00"),
            &[("tag_x", "cto-install-someoneelse")],
        );
        assert_eq!(proof(&cp, &other), None);
        assert!(carries_other_install_tag(&cp, &other));
        assert_eq!(proof(&cp, &machine("own-cp-1", None, &[])), None);
        let late = machine("own-cp-1", Some("2026-01-02T10:00:00+00:00"), &[]);
        assert_eq!(proof(&cp, &late), None);
    }

    #[test]
    fn the_install_tag_and_recorded_ids_prove_ownership() {
        let mut cp = checkpoint();
        let name = install_tag_name(cp.ownership.install_id.as_deref().unwrap());
        let m = machine("whatever", None, &[("tag_1", name.as_str())]);
        assert_eq!(proof(&cp, &m), Some(Proof::Tagged));
        cp.servers[1].id = Some("sv_x".into());
        let mut x = machine("own-worker-1", None, &[]);
        x.id = "sv_x".into();
        assert_eq!(proof(&cp, &x), Some(Proof::Recorded));
    }
}
