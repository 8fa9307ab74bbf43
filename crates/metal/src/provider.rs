//! The provider-neutral view of rented machines that the installer works with.
//!
//! The installer only ever sees [`Provider`]; [`crate::latitude::LatitudeProvider`] implements it
//! for Latitude.sh. Everything here is plain data: which plans exist and where they are in stock,
//! which machines the cluster has, and the errors a provider can answer with, classified so the
//! installer can decide between retrying, adopting, and telling the user.

use std::fmt;
use std::future::Future;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Stock level of a plan in a group of sites, as the provider reports it. Open: unknown values
/// are kept verbatim in [`StockLevel::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum StockLevel {
    /// The provider says nothing can be deployed.
    Unavailable,
    /// Little stock left.
    Low,
    /// Some stock.
    Medium,
    /// Plenty of stock.
    High,
    /// A one-off machine.
    Unique,
    /// The provider did not say (older API responses have no stock level).
    Unknown,
    /// A value this version does not know.
    Other(String),
}

impl StockLevel {
    /// Ranking weight: higher is better. Unknown values rank below `low`.
    pub fn rank(&self) -> u8 {
        match self {
            StockLevel::High => 4,
            StockLevel::Medium => 3,
            StockLevel::Low => 2,
            StockLevel::Unique => 1,
            StockLevel::Unknown | StockLevel::Other(_) => 1,
            StockLevel::Unavailable => 0,
        }
    }

    /// The wire form (lowercase).
    pub fn as_str(&self) -> &str {
        match self {
            StockLevel::Unavailable => "unavailable",
            StockLevel::Low => "low",
            StockLevel::Medium => "medium",
            StockLevel::High => "high",
            StockLevel::Unique => "unique",
            StockLevel::Unknown => "unknown",
            StockLevel::Other(s) => s,
        }
    }
}

impl From<String> for StockLevel {
    fn from(value: String) -> Self {
        match value.to_ascii_lowercase().as_str() {
            "unavailable" => StockLevel::Unavailable,
            "low" => StockLevel::Low,
            "medium" => StockLevel::Medium,
            "high" => StockLevel::High,
            "unique" => StockLevel::Unique,
            "unknown" | "" => StockLevel::Unknown,
            _ => StockLevel::Other(value),
        }
    }
}

impl From<StockLevel> for String {
    fn from(value: StockLevel) -> Self {
        value.as_str().to_owned()
    }
}

impl fmt::Display for StockLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One site where a plan is offered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteOffer {
    /// Site slug, uppercase (`MIA2`).
    pub site: String,
    /// The country group the site belongs to (`United States`).
    pub country: String,
    /// True when the provider lists the site under `in_stock` (deployable right now).
    pub in_stock: bool,
    /// The stock level of the site's country group.
    pub stock_level: StockLevel,
    /// Hourly price in USD, if the provider published one.
    pub hourly_usd: Option<f64>,
    /// Monthly price in USD, if the provider published one.
    pub monthly_usd: Option<f64>,
}

/// A plan and every site that offers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanOffer {
    /// Plan slug (`c2-small-x86`).
    pub slug: String,
    /// Plan name in its dotted form (`c2.small.x86`).
    pub name: String,
    /// Every site in `available`, with `in_stock` telling which can deploy now.
    pub sites: Vec<SiteOffer>,
    /// The plan's drives (`specs.drives`): what a machine of the plan should have. Empty when
    /// the provider did not list them.
    #[serde(default)]
    pub drives: Vec<PlanDrive>,
    /// Whether the provider can deploy the plan with a custom iPXE boot (Latitude: the `ipxe`
    /// operating system's `provisionable_on`); `None` when it did not say.
    #[serde(default)]
    pub ipxe: Option<bool>,
}

/// A group of identical drives of a plan (Latitude's `specs.drives[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanDrive {
    /// How many.
    pub count: u32,
    /// Free text as the provider writes it (`500 GB`, `480GB`, `3.8TB`).
    pub size: String,
    /// `SSD`, `NVME`, `HDD`.
    pub kind: String,
}

impl PlanOffer {
    /// The offer for one site, if the plan is offered there.
    pub fn site(&self, site: &str) -> Option<&SiteOffer> {
        self.sites
            .iter()
            .find(|s| s.site.eq_ignore_ascii_case(site))
    }

    /// The sites that can deploy the plan now, in the provider's order.
    pub fn in_stock_sites(&self) -> Vec<&str> {
        self.sites
            .iter()
            .filter(|s| s.in_stock)
            .map(|s| s.site.as_str())
            .collect()
    }
}

/// The project (account scope) that servers are ordered into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectInfo {
    /// Provider id (`proj_...`).
    pub id: String,
    /// Human slug.
    pub slug: String,
    /// Display name.
    pub name: String,
}

/// Where a machine is in its life, in provider-neutral terms. The provider's own status string
/// is kept beside it in [`Machine::raw_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineState {
    /// Ordered or being deployed/reinstalled.
    Provisioning,
    /// Deployed and powered on.
    Ready,
    /// Deployment or disk erasing failed; the machine needs replacing or a reinstall.
    Failed,
    /// Powered off.
    Off,
    /// Anything else (rescue mode, a status this version does not know).
    Other,
}

impl MachineState {
    /// True for states a wait should give up on.
    pub fn is_failed(self) -> bool {
        matches!(self, MachineState::Failed)
    }
}

/// A rented machine, as the provider reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Provider id (`sv_...`).
    pub id: String,
    /// Hostname given at order time.
    pub hostname: String,
    /// Neutral state.
    pub state: MachineState,
    /// The provider's own status string (`starting_deploy`, `deploying`, `on`, …).
    pub raw_status: String,
    /// Primary public IPv4 address, once assigned.
    pub primary_ipv4: Option<Ipv4Addr>,
    /// Site slug.
    pub site: Option<String>,
    /// Plan slug.
    pub plan: Option<String>,
    /// Operating system slug (`ipxe` for a custom iPXE boot).
    pub operating_system: Option<String>,
    /// Hourly price in USD as billed.
    pub hourly_usd: Option<f64>,
    /// The provider's tags on the machine (how an install proves a machine is its own).
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// When the provider created the machine (RFC 3339), if it said.
    #[serde(default)]
    pub created_at: Option<String>,
}

impl Machine {
    /// True when the machine carries the tag with this id.
    pub fn has_tag(&self, tag_id: &str) -> bool {
        self.tags.iter().any(|t| t.id == tag_id)
    }

    /// True when the machine carries a tag with this name (exact).
    pub fn has_tag_named(&self, name: &str) -> bool {
        self.tags.iter().any(|t| t.name == name)
    }
}

/// A provider-side tag: an id (`tag_...`) and a name. On Latitude tags belong to the team and
/// are attached to servers after they are ordered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Provider id.
    pub id: String,
    /// Name.
    pub name: String,
}

/// What to order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineOrder {
    /// Hostname (also how the installer finds the machine again).
    pub hostname: String,
    /// Plan slug.
    pub plan: String,
    /// Site slug.
    pub site: String,
    /// URL of the iPXE script to boot.
    pub ipxe_url: String,
}

/// Outcome of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deleted {
    /// The provider accepted the delete.
    Deleted,
    /// The machine was already gone (404), which is success.
    AlreadyGone,
}

/// How a provider error should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderErrorKind {
    /// The API key is missing, wrong or lacks permission (401/403).
    Unauthorized,
    /// The object does not exist (404).
    NotFound,
    /// The request was rejected as invalid (400/422), including "no stock".
    Rejected,
    /// Payment required (402): retrying will not help.
    Billing,
    /// The machine is locked (423).
    Locked,
    /// Rate limited and the retry budget is spent.
    RateLimited,
    /// A transient failure (5xx, timeout, reset) that outlived the retries.
    Transient,
    /// The request may or may not have taken effect (a write whose answer was lost). Look the
    /// object up before trying again.
    Ambiguous,
    /// The response could not be understood.
    Protocol,
}

/// An error from a provider, with everything the user needs to act on it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    /// How to handle it.
    pub kind: ProviderErrorKind,
    /// One line: what happened, including the HTTP status, the provider's title/detail and the
    /// request id when there is one.
    pub message: String,
    /// HTTP status, if the provider answered.
    pub status: Option<u16>,
    /// The provider's request id (`X-Request-Id`), for support tickets.
    pub request_id: Option<String>,
    /// The provider's machine-readable error code (Latitude's `errors[0].code`), if it sent one.
    pub code: Option<String>,
}

/// Latitude's code for an order refused for lack of stock (`422`, `errors[0].code`), as
/// `latitudesh/terraform-provider-latitudesh`'s acceptance tests check for
/// (`isServersOutOfStockError`).
pub const OUT_OF_STOCK_CODE: &str = "SERVERS_OUT_OF_STOCK";

impl ProviderError {
    /// Builds an error without HTTP details.
    pub fn new(kind: ProviderErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            status: None,
            request_id: None,
            code: None,
        }
    }

    /// True for an order refused because the plan is out of stock at the site: `422` with the
    /// code [`OUT_OF_STOCK_CODE`].
    pub fn is_out_of_stock(&self) -> bool {
        self.status == Some(422)
            && self
                .code
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(OUT_OF_STOCK_CODE))
    }
}

/// A result from a provider call.
pub type ProviderResult<T> = Result<T, ProviderError>;

/// A bare-metal provider, as the installer needs it. Every method is one logical operation; the
/// implementation owns retries, paging and rate limiting.
pub trait Provider: Send + Sync + 'static {
    /// Short name for messages (`latitude`).
    fn name(&self) -> &'static str;

    /// Checks that the API key works and the configured project exists.
    fn check_project(&self) -> impl Future<Output = ProviderResult<ProjectInfo>> + Send;

    /// Every plan the provider sells, with per-site stock and prices.
    fn plan_offers(&self) -> impl Future<Output = ProviderResult<Vec<PlanOffer>>> + Send;

    /// Every machine in the project, in one listing (paged internally).
    fn list_machines(&self) -> impl Future<Output = ProviderResult<Vec<Machine>>> + Send;

    /// One machine by id; `None` when it does not exist.
    fn get_machine(&self, id: &str)
    -> impl Future<Output = ProviderResult<Option<Machine>>> + Send;

    /// Orders one machine. Billable. A failure of kind [`ProviderErrorKind::Ambiguous`] means
    /// the order may exist: look it up by hostname before ordering again.
    fn create_machine(
        &self,
        order: &MachineOrder,
    ) -> impl Future<Output = ProviderResult<Machine>> + Send;

    /// Reinstalls a machine so it boots the given iPXE script.
    fn reinstall_ipxe(
        &self,
        id: &str,
        hostname: &str,
        ipxe_url: &str,
    ) -> impl Future<Output = ProviderResult<()>> + Send;

    /// Deletes a machine. "Not found" is success ([`Deleted::AlreadyGone`]).
    fn delete_machine(&self, id: &str) -> impl Future<Output = ProviderResult<Deleted>> + Send;

    /// The tag with exactly this name, if it exists. Never creates one.
    fn find_tag(&self, name: &str) -> impl Future<Output = ProviderResult<Option<Tag>>> + Send;

    /// The tag with this name: found by name, else created. Safe to call again (and after a
    /// lost answer): a create that races another is settled by looking the name up.
    fn ensure_tag(
        &self,
        name: &str,
        description: &str,
    ) -> impl Future<Output = ProviderResult<Tag>> + Send;

    /// Attaches the tags to a machine, keeping the tags it already has (`machine.tags`, as last
    /// listed; re-read after a lost answer). Idempotent.
    fn tag_machine(
        &self,
        machine: &Machine,
        tag_ids: &[String],
    ) -> impl Future<Output = ProviderResult<()>> + Send;

    /// Every machine of the project carrying the tag (with their tags).
    fn list_machines_tagged(
        &self,
        tag_id: &str,
    ) -> impl Future<Output = ProviderResult<Vec<Machine>>> + Send;
}
