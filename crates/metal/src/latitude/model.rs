//! The Latitude.sh wire format: serde types for JSON:API envelopes, resources, request bodies
//! and the error envelope.
//!
//! The API evolves and its published enums are incomplete, so decoding is deliberately lenient:
//! every field except a resource `id` is optional or defaulted, `null` is accepted wherever a
//! list or object is expected, unknown fields are ignored, and string enums are open
//! ([`ServerStatus`], [`StockLevel`]). Numbers in plan specs are floats.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

pub use crate::provider::StockLevel;

/// `null` or absent → `T::default()`.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Anything that does not fit `T` → `None`. For nested objects and fields the installer does not
/// depend on, so a change of shape there never makes a whole listing unreadable.
fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    if value.is_null() {
        return Ok(None);
    }
    Ok(serde_json::from_value(value).ok())
}

/// A string, or a number/boolean/other value rendered as text.
fn loose_string<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(
        match Option::<serde_json::Value>::deserialize(deserializer)? {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(other) => Some(other.to_string()),
        },
    )
}

/// A number, or a string holding one.
fn loose_f64<'de, D>(deserializer: D) -> Result<Option<f64>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(
        match Option::<serde_json::Value>::deserialize(deserializer)? {
            Some(serde_json::Value::Number(n)) => n.as_f64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Envelopes
// ---------------------------------------------------------------------------------------------

/// A JSON:API document: `{"data": ..., "meta": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document<T> {
    /// The payload: one resource or a list of them.
    pub data: T,
    /// Free-form metadata (`{}` in recorded responses; `stats` when asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
}

/// A JSON:API resource: `{"id", "type", "attributes"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "A: Deserialize<'de> + Default"))]
pub struct Resource<A> {
    /// The prefixed id (`sv_...`, `plan_...`).
    pub id: String,
    /// The resource type (`servers`, `plans`, ...).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The attributes; a missing or `null` object decodes as the default.
    #[serde(default, deserialize_with = "nullable")]
    pub attributes: A,
}

/// A list response.
pub type ListDocument<A> = Document<Vec<Resource<A>>>;
/// A single-resource response.
pub type ItemDocument<A> = Document<Resource<A>>;

// ---------------------------------------------------------------------------------------------
// Plans
// ---------------------------------------------------------------------------------------------

/// A plan resource (`GET /plans`).
pub type Plan = Resource<PlanAttributes>;

/// Attributes of a plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanAttributes {
    /// Slug used to order (`c2-small-x86`).
    pub slug: Option<String>,
    /// Dotted name (`c2.small.x86`), as used in `provisionable_on` and `server.plan.name`.
    pub name: Option<String>,
    /// Feature flags: `ssh`, `raid`, `user_data`, `sev`, ...
    #[serde(deserialize_with = "nullable")]
    pub features: Vec<String>,
    /// Minimum hardware specs.
    #[serde(deserialize_with = "lenient")]
    pub specs: Option<PlanSpecs>,
    /// Country groups with their sites, stock and prices.
    #[serde(deserialize_with = "nullable")]
    pub regions: Vec<PlanRegion>,
}

/// Minimum hardware of a plan (a deployed box may be better).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanSpecs {
    /// CPU.
    #[serde(deserialize_with = "lenient")]
    pub cpu: Option<CpuSpec>,
    /// Memory.
    #[serde(deserialize_with = "lenient")]
    pub memory: Option<MemorySpec>,
    /// Drives.
    #[serde(deserialize_with = "nullable")]
    pub drives: Vec<DriveSpec>,
    /// Network interfaces.
    #[serde(deserialize_with = "nullable")]
    pub nics: Vec<NicSpec>,
    /// GPU: `{}` (not null) on non-GPU plans; see [`GpuSpec::is_present`].
    #[serde(deserialize_with = "lenient")]
    pub gpu: Option<GpuSpec>,
}

impl PlanSpecs {
    /// True when the plan has a GPU (`gpu` is neither null nor `{}`).
    pub fn has_gpu(&self) -> bool {
        self.gpu.as_ref().is_some_and(GpuSpec::is_present)
    }
}

/// CPU of a plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuSpec {
    /// Model (`E-2134G`).
    #[serde(rename = "type")]
    pub model: Option<String>,
    /// Clock in GHz.
    #[serde(deserialize_with = "loose_f64")]
    pub clock: Option<f64>,
    /// Cores per CPU.
    #[serde(deserialize_with = "loose_f64")]
    pub cores: Option<f64>,
    /// Number of CPUs.
    #[serde(deserialize_with = "loose_f64")]
    pub count: Option<f64>,
}

/// Memory of a plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemorySpec {
    /// Total in GB.
    #[serde(deserialize_with = "loose_f64")]
    pub total: Option<f64>,
}

/// One group of identical drives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriveSpec {
    /// How many.
    #[serde(deserialize_with = "loose_f64")]
    pub count: Option<f64>,
    /// Size as text (`500 GB`).
    #[serde(deserialize_with = "loose_string")]
    pub size: Option<String>,
    /// `SSD`, `HDD`, `NVME`, ...
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// One group of identical NICs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NicSpec {
    /// How many.
    #[serde(deserialize_with = "loose_f64")]
    pub count: Option<f64>,
    /// Speed as text (`1 Gbps`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// GPU of a plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GpuSpec {
    /// How many.
    #[serde(deserialize_with = "loose_f64")]
    pub count: Option<f64>,
    /// Model.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

impl GpuSpec {
    /// False for the `{}` that non-GPU plans carry.
    pub fn is_present(&self) -> bool {
        self.count.is_some_and(|c| c > 0.0) || self.kind.as_deref().is_some_and(|k| !k.is_empty())
    }
}

/// A country group of sites in a plan (`regions[]`). Not a site.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanRegion {
    /// Country name (`United States`).
    pub name: Option<String>,
    /// OS slugs that deploy in ~15 s here (never `ipxe`).
    #[serde(deserialize_with = "nullable")]
    pub deploys_instantly: Vec<String>,
    /// Sites offering the plan and sites able to deploy it now.
    #[serde(deserialize_with = "lenient")]
    pub locations: Option<PlanLocations>,
    /// Stock level of the whole group (absent in older responses).
    #[serde(deserialize_with = "lenient")]
    pub stock_level: Option<StockLevel>,
    /// Prices by currency.
    #[serde(deserialize_with = "lenient")]
    pub pricing: Option<PlanPricing>,
}

/// Site slugs of a country group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanLocations {
    /// Sites that offer the plan.
    #[serde(deserialize_with = "nullable")]
    pub available: Vec<String>,
    /// Sites that can deploy it right now. Choose from these.
    #[serde(deserialize_with = "nullable")]
    pub in_stock: Vec<String>,
}

/// Prices by currency.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanPricing {
    /// US dollars.
    #[serde(rename = "USD", deserialize_with = "lenient")]
    pub usd: Option<Price>,
    /// Brazilian reais.
    #[serde(rename = "BRL", deserialize_with = "lenient")]
    pub brl: Option<Price>,
}

/// A price per period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Price {
    /// Per hour.
    #[serde(deserialize_with = "loose_f64")]
    pub hour: Option<f64>,
    /// Per month.
    #[serde(deserialize_with = "loose_f64")]
    pub month: Option<f64>,
    /// Per year.
    #[serde(deserialize_with = "loose_f64")]
    pub year: Option<f64>,
}

// ---------------------------------------------------------------------------------------------
// Regions (sites), projects, operating systems, SSH keys
// ---------------------------------------------------------------------------------------------

/// A site resource (`GET /regions`; ids are `loc_...`).
pub type Region = Resource<RegionAttributes>;

/// Attributes of a site.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegionAttributes {
    /// Display name (`Miami 2`).
    pub name: Option<String>,
    /// Site slug (`MIA2`).
    pub slug: Option<String>,
    /// Facility (`Colohouse - Miami`).
    pub facility: Option<String>,
    /// Country.
    #[serde(deserialize_with = "lenient")]
    pub country: Option<Country>,
    /// Site type (`Core`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// A country.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Country {
    /// Name (`United States`).
    pub name: Option<String>,
    /// Slug (`united-states`).
    pub slug: Option<String>,
}

/// A project resource (`GET /projects`; ids are `proj_...`).
pub type Project = Resource<ProjectAttributes>;

/// Attributes of a project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectAttributes {
    /// Display name.
    pub name: Option<String>,
    /// Slug (accepted wherever a project id is).
    pub slug: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Billing type (`Normal`, ...).
    pub billing_type: Option<String>,
    /// Provisioning type (`on_demand`, `reserved`).
    pub provisioning_type: Option<String>,
    /// Environment (`Development`, `Production`, ...).
    pub environment: Option<String>,
    /// Creation time.
    pub created_at: Option<String>,
}

/// An operating system resource (`GET /plans/operating_systems`).
pub type OperatingSystem = Resource<OperatingSystemAttributes>;

/// Attributes of an operating system.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OperatingSystemAttributes {
    /// Display name (`Custom image (iPXE)`).
    pub name: Option<String>,
    /// Slug (`ipxe`, `ubuntu_24_04_x64_lts`).
    pub slug: Option<String>,
    /// Distribution.
    #[serde(deserialize_with = "loose_string")]
    pub distro: Option<String>,
    /// Version.
    #[serde(deserialize_with = "loose_string")]
    pub version: Option<String>,
    /// Feature flags.
    #[serde(deserialize_with = "lenient")]
    pub features: Option<OsFeatures>,
    /// Plan **names** (dotted: `c2.small.x86`) this OS can be installed on.
    #[serde(deserialize_with = "nullable")]
    pub provisionable_on: Vec<String>,
}

impl OperatingSystemAttributes {
    /// True when the OS can be installed on the plan, given as slug or dotted name.
    pub fn provisionable_on_plan(&self, plan: &str) -> bool {
        let dotted = plan.replace('-', ".");
        self.provisionable_on
            .iter()
            .any(|p| p.eq_ignore_ascii_case(&dotted) || p.eq_ignore_ascii_case(plan))
    }
}

/// What an operating system supports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OsFeatures {
    /// RAID.
    pub raid: Option<bool>,
    /// Rescue mode.
    pub rescue: Option<bool>,
    /// SSH key injection (false for `ipxe`).
    pub ssh_keys: Option<bool>,
    /// cloud-init user data (false for `ipxe`).
    pub user_data: Option<bool>,
}

/// An SSH key resource (`GET /ssh_keys`; ids are `ssh_...`).
pub type SshKey = Resource<SshKeyAttributes>;

/// Attributes of an SSH key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SshKeyAttributes {
    /// Name.
    pub name: Option<String>,
    /// The public key (`ssh-ed25519 AAAA...`).
    pub public_key: Option<String>,
    /// Fingerprint.
    pub fingerprint: Option<String>,
    /// Tags (shape not relied upon).
    #[serde(deserialize_with = "nullable")]
    pub tags: Vec<serde_json::Value>,
    /// Owning user (shape not relied upon).
    pub user: Option<serde_json::Value>,
    /// Owning project: an id or an object, depending on the API generation.
    pub project: Option<serde_json::Value>,
    /// Creation time.
    pub created_at: Option<String>,
    /// Last update.
    pub updated_at: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Tags
// ---------------------------------------------------------------------------------------------

/// A tag resource (`GET /tags`; ids are `tag_...`). Tags belong to the team, not to a project:
/// `GET /tags` "List all Tags in the team" (`latitudesh/latitudesh-go-sdk`
/// `docs/sdks/tags/README.md`, `models/components/customtagdata.go`).
pub type Tag = Resource<TagAttributes>;

/// Attributes of a tag (`models/components/customtagdata.go`: name, slug, description, color,
/// team).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TagAttributes {
    /// Name (`cto-install-…`).
    pub name: Option<String>,
    /// Slug derived from the name by the API.
    pub slug: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Color (`#ffffff`).
    pub color: Option<String>,
    /// Owning team (shape not relied upon).
    pub team: Option<serde_json::Value>,
}

/// One entry of a server's `tags` as `GET /servers` returns it
/// (`models/components/serverdata.go` `ServerDataTags`: id, name, description, color).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerTag {
    /// Tag id (`tag_...`).
    pub id: String,
    /// Tag name.
    pub name: String,
}

impl ServerAttributes {
    /// The server's tags, read leniently: objects with an `id` (the SDK's shape), or bare id
    /// strings; anything else is skipped.
    pub fn tag_refs(&self) -> Vec<ServerTag> {
        self.tags
            .iter()
            .filter_map(|t| match t {
                serde_json::Value::String(id) => Some(ServerTag {
                    id: id.clone(),
                    name: String::new(),
                }),
                serde_json::Value::Object(o) => Some(ServerTag {
                    id: o.get("id")?.as_str()?.to_owned(),
                    name: o
                        .get("name")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                }),
                _ => None,
            })
            .collect()
    }
}

/// Wire attributes of `POST /tags` (`models/operations/createtag.go`: `name` required,
/// `description`, `color` defaulting to `#ffffff`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CreateTagAttributes<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub description: &'a str,
    pub color: &'static str,
}

/// The body of `PATCH /servers/{id}` that sets the server's tags
/// (`models/operations/updateserver.go`: `data.id`, `data.type = "servers"`,
/// `attributes.tags` = "List of Tag IDs"). The list replaces the server's tags, so callers send
/// the tags the server already has plus the new ones.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UpdateServerTagsBody<'a> {
    pub data: UpdateServerTagsData<'a>,
}

/// `data` of [`UpdateServerTagsBody`].
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UpdateServerTagsData<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub attributes: UpdateServerTagsAttributes<'a>,
}

/// Attributes of [`UpdateServerTagsData`].
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UpdateServerTagsAttributes<'a> {
    pub tags: &'a [String],
}

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

/// A server resource (`GET /servers`; ids are `sv_...`).
pub type Server = Resource<ServerAttributes>;

/// Status of a server. Open: values this version does not know are kept verbatim in
/// [`ServerStatus::Other`] and written back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ServerStatus {
    /// `on`: deployed and powered on.
    On,
    /// `off`: powered off.
    Off,
    /// `unknown`.
    Unknown,
    /// `disk_erasing`: reinstall in progress.
    DiskErasing,
    /// `deploying`: last stage of a deploy or reinstall.
    Deploying,
    /// `failed_deployment`: terminal failure.
    FailedDeployment,
    /// `failed_disk_erasing`: terminal failure during a reinstall.
    FailedDiskErasing,
    /// `rescue_mode`.
    RescueMode,
    /// `ready`: reinstall accepted, disk erasing should start shortly.
    Ready,
    /// `starting_deploy`: just ordered (not in the spec, but what create returns).
    StartingDeploy,
    /// Anything else, verbatim.
    Other(String),
}

impl ServerStatus {
    /// The wire form.
    pub fn as_str(&self) -> &str {
        match self {
            ServerStatus::On => "on",
            ServerStatus::Off => "off",
            ServerStatus::Unknown => "unknown",
            ServerStatus::DiskErasing => "disk_erasing",
            ServerStatus::Deploying => "deploying",
            ServerStatus::FailedDeployment => "failed_deployment",
            ServerStatus::FailedDiskErasing => "failed_disk_erasing",
            ServerStatus::RescueMode => "rescue_mode",
            ServerStatus::Ready => "ready",
            ServerStatus::StartingDeploy => "starting_deploy",
            ServerStatus::Other(s) => s,
        }
    }

    /// True for the failure states a wait should give up on.
    pub fn is_failed(&self) -> bool {
        matches!(
            self,
            ServerStatus::FailedDeployment | ServerStatus::FailedDiskErasing
        )
    }
}

impl From<String> for ServerStatus {
    fn from(value: String) -> Self {
        match value.as_str() {
            "on" => ServerStatus::On,
            "off" => ServerStatus::Off,
            "unknown" => ServerStatus::Unknown,
            "disk_erasing" => ServerStatus::DiskErasing,
            "deploying" => ServerStatus::Deploying,
            "failed_deployment" => ServerStatus::FailedDeployment,
            "failed_disk_erasing" => ServerStatus::FailedDiskErasing,
            "rescue_mode" => ServerStatus::RescueMode,
            "ready" => ServerStatus::Ready,
            "starting_deploy" => ServerStatus::StartingDeploy,
            _ => ServerStatus::Other(value),
        }
    }
}

impl From<ServerStatus> for String {
    fn from(value: ServerStatus) -> Self {
        match value {
            ServerStatus::Other(s) => s,
            known => known.as_str().to_owned(),
        }
    }
}

impl fmt::Display for ServerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Attributes of a server (§2.8 of the reference). Everything is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerAttributes {
    /// Hostname given at order time.
    pub hostname: Option<String>,
    /// Latitude's asset label (`21BS005889`).
    pub label: Option<String>,
    /// Price: hourly, or the yearly total for reserved servers.
    #[serde(deserialize_with = "loose_f64")]
    pub price: Option<f64>,
    /// Role (`Bare Metal`).
    pub role: Option<String>,
    /// Primary public IPv4 (already set in the create response).
    pub primary_ipv4: Option<String>,
    /// Primary public IPv6.
    pub primary_ipv6: Option<String>,
    /// Status (open enum).
    pub status: Option<ServerStatus>,
    /// IPMI status (`Normal`, `Intermittent`, `Unavailable`).
    pub ipmi_status: Option<String>,
    /// Creation time (RFC 3339 in real responses).
    #[serde(deserialize_with = "loose_string")]
    pub created_at: Option<String>,
    /// Scheduled deletion time, if any.
    #[serde(deserialize_with = "loose_string")]
    pub scheduled_deletion_at: Option<String>,
    /// Locked servers cannot be deleted or reinstalled (423).
    #[serde(deserialize_with = "lenient")]
    pub locked: Option<bool>,
    /// Whether rescue mode is allowed.
    #[serde(deserialize_with = "lenient")]
    pub rescue_allowed: Option<bool>,
    /// Site slug (newer responses).
    pub site: Option<String>,
    /// Location.
    #[serde(deserialize_with = "lenient")]
    pub region: Option<ServerRegion>,
    /// Owning project.
    #[serde(deserialize_with = "lenient")]
    pub project: Option<ServerProject>,
    /// Owning team (shape not relied upon).
    pub team: Option<serde_json::Value>,
    /// Plan.
    #[serde(deserialize_with = "lenient")]
    pub plan: Option<ServerPlan>,
    /// Installed operating system.
    #[serde(deserialize_with = "lenient")]
    pub operating_system: Option<ServerOperatingSystem>,
    /// Actual hardware (often better than the plan minimum).
    #[serde(deserialize_with = "lenient")]
    pub specs: Option<ServerSpecs>,
    /// Network interfaces.
    #[serde(deserialize_with = "lenient")]
    pub interfaces: Option<Vec<ServerInterface>>,
    /// Tags (shape not relied upon).
    #[serde(deserialize_with = "nullable")]
    pub tags: Vec<serde_json::Value>,
}

impl ServerAttributes {
    /// The site slug, from `site` or `region.site.slug`, uppercase.
    pub fn site_slug(&self) -> Option<String> {
        self.site
            .clone()
            .or_else(|| self.region.as_ref()?.site.as_ref()?.slug.clone())
            .map(|s| s.to_ascii_uppercase())
    }

    /// The plan slug.
    pub fn plan_slug(&self) -> Option<&str> {
        self.plan.as_ref()?.slug.as_deref()
    }
}

/// Location of a server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerRegion {
    /// City.
    pub city: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// Site.
    #[serde(deserialize_with = "lenient")]
    pub site: Option<ServerSite>,
}

/// Site of a server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerSite {
    /// Id (`loc_...`).
    pub id: Option<String>,
    /// Name (`São Paulo`).
    pub name: Option<String>,
    /// Slug (`SAO`).
    pub slug: Option<String>,
    /// Facility.
    pub facility: Option<String>,
    /// Rack.
    #[serde(deserialize_with = "loose_string")]
    pub rack_id: Option<String>,
}

/// Project of a server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerProject {
    /// Id (`proj_...`).
    pub id: Option<String>,
    /// Slug.
    pub slug: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Billing type.
    pub billing_type: Option<String>,
}

/// Plan of a server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerPlan {
    /// Id (`plan_...`).
    pub id: Option<String>,
    /// Dotted name.
    pub name: Option<String>,
    /// Slug.
    pub slug: Option<String>,
    /// Billing (`hourly`, `monthly`, `yearly`).
    pub billing: Option<String>,
}

/// Operating system of a server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerOperatingSystem {
    /// Name.
    pub name: Option<String>,
    /// Slug (`ipxe`, `ubuntu_24_04_x64_lts`).
    pub slug: Option<String>,
    /// Version.
    #[serde(deserialize_with = "loose_string")]
    pub version: Option<String>,
    /// Feature flags.
    #[serde(deserialize_with = "lenient")]
    pub features: Option<OsFeatures>,
    /// Distribution (shape not relied upon).
    pub distro: Option<serde_json::Value>,
}

/// Actual hardware of a server, as text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerSpecs {
    /// CPU (`Xeon E-2278G CPU @ 3.40GHz (8 cores)`).
    #[serde(deserialize_with = "loose_string")]
    pub cpu: Option<String>,
    /// Disks (`2 X 4 TB NVMe`).
    #[serde(deserialize_with = "loose_string")]
    pub disk: Option<String>,
    /// Memory (`64 GB`).
    #[serde(deserialize_with = "loose_string")]
    pub ram: Option<String>,
    /// NICs.
    #[serde(deserialize_with = "loose_string")]
    pub nic: Option<String>,
    /// GPU, `null` on non-GPU servers.
    #[serde(deserialize_with = "loose_string")]
    pub gpu: Option<String>,
}

/// A network interface of a server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerInterface {
    /// `external`, `internal`, `ipmi`, `unknown`.
    pub role: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// MAC address.
    pub mac_address: Option<String>,
    /// Description.
    pub description: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// What to order with `POST /servers`. The project is the client's; billing is always hourly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateServer {
    /// Hostname: ≤32 characters, letters, digits, `.` and `-`.
    pub hostname: String,
    /// Plan slug (`m4-metal-small`).
    pub plan: String,
    /// Site slug (`MIA2`); sent uppercase.
    pub site: String,
    /// Operating system slug; `ipxe` for a custom iPXE boot.
    pub operating_system: String,
    /// URL of an iPXE script, or the script in base64. Required when the OS is `ipxe`.
    pub ipxe: Option<String>,
    /// SSH key ids (`ssh_...`); not used by `ipxe`.
    pub ssh_keys: Vec<String>,
    /// Keep network boot on so every reboot iPXE-boots (`ipxe` only). `None` leaves the
    /// provider default (boot from disk after install).
    pub persistent_netboot: Option<bool>,
}

impl CreateServer {
    /// An order that iPXE-boots `ipxe` (a URL or a base64 script).
    pub fn ipxe(
        hostname: impl Into<String>,
        plan: impl Into<String>,
        site: impl Into<String>,
        ipxe: impl Into<String>,
    ) -> Self {
        Self {
            hostname: hostname.into(),
            plan: plan.into(),
            site: site.into(),
            operating_system: "ipxe".to_owned(),
            ipxe: Some(ipxe.into()),
            ssh_keys: Vec::new(),
            persistent_netboot: None,
        }
    }
}

/// What to reinstall with `POST /servers/{id}/reinstall`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reinstall {
    /// Operating system slug.
    pub operating_system: Option<String>,
    /// New hostname.
    pub hostname: Option<String>,
    /// iPXE URL or base64 script (required with `ipxe`).
    pub ipxe: Option<String>,
    /// SSH key ids.
    pub ssh_keys: Vec<String>,
    /// See [`CreateServer::persistent_netboot`].
    pub persistent_netboot: Option<bool>,
}

impl Reinstall {
    /// A reinstall that iPXE-boots `ipxe`.
    pub fn ipxe(hostname: impl Into<String>, ipxe: impl Into<String>) -> Self {
        Self {
            operating_system: Some("ipxe".to_owned()),
            hostname: Some(hostname.into()),
            ipxe: Some(ipxe.into()),
            ssh_keys: Vec::new(),
            persistent_netboot: None,
        }
    }
}

/// Filters for `GET /servers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerFilter {
    /// Project id or slug; `None` means the client's project.
    pub project: Option<String>,
    /// Exact hostname.
    pub hostname: Option<String>,
    /// Site slug (`filter[region]`).
    pub site: Option<String>,
    /// Status.
    pub status: Option<ServerStatus>,
    /// Plan slug.
    pub plan: Option<String>,
    /// Tag ids, all of which a server must carry (`filter[tags]`, comma-separated, AND:
    /// `models/operations/getservers.go`).
    pub tags: Vec<String>,
}

impl ServerFilter {
    /// Servers of the client's project carrying this tag.
    pub fn tag(tag_id: impl Into<String>) -> Self {
        Self {
            tags: vec![tag_id.into()],
            ..Self::default()
        }
    }

    /// Servers of the client's project with this hostname.
    pub fn hostname(hostname: impl Into<String>) -> Self {
        Self {
            hostname: Some(hostname.into()),
            ..Self::default()
        }
    }
}

/// A request body: `{"data":{"type":..., "attributes":...}}`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RequestBody<A: Serialize> {
    pub data: RequestData<A>,
}

/// The `data` of a request body.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RequestData<A: Serialize> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub attributes: A,
}

impl<A: Serialize> RequestBody<A> {
    pub(crate) fn new(kind: &'static str, attributes: A) -> Self {
        Self {
            data: RequestData { kind, attributes },
        }
    }
}

/// Wire attributes of `POST /servers`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CreateServerAttributes<'a> {
    pub project: &'a str,
    pub plan: &'a str,
    pub site: String,
    pub operating_system: &'a str,
    pub hostname: &'a str,
    pub billing: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipxe: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub ssh_keys: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent_netboot: Option<bool>,
}

impl<'a> CreateServerAttributes<'a> {
    pub(crate) fn new(project: &'a str, order: &'a CreateServer) -> Self {
        Self {
            project,
            plan: &order.plan,
            site: order.site.to_ascii_uppercase(),
            operating_system: &order.operating_system,
            hostname: &order.hostname,
            billing: "hourly",
            ipxe: order.ipxe.as_deref(),
            ssh_keys: &order.ssh_keys,
            persistent_netboot: order.persistent_netboot,
        }
    }
}

/// Wire attributes of `POST /servers/{id}/reinstall`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReinstallAttributes<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operating_system: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipxe: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub ssh_keys: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent_netboot: Option<bool>,
}

impl<'a> From<&'a Reinstall> for ReinstallAttributes<'a> {
    fn from(r: &'a Reinstall) -> Self {
        Self {
            operating_system: r.operating_system.as_deref(),
            hostname: r.hostname.as_deref(),
            ipxe: r.ipxe.as_deref(),
            ssh_keys: &r.ssh_keys,
            persistent_netboot: r.persistent_netboot,
        }
    }
}

/// Wire attributes of `POST /ssh_keys`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CreateSshKeyAttributes<'a> {
    pub name: &'a str,
    pub public_key: &'a str,
    pub project: &'a str,
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// The error envelope: `{"errors":[...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorEnvelope {
    /// The errors; the first one is reported.
    #[serde(deserialize_with = "nullable")]
    pub errors: Vec<ErrorObject>,
}

impl ErrorEnvelope {
    /// The first error, if any.
    pub fn first(&self) -> Option<&ErrorObject> {
        self.errors.first()
    }

    /// `errors[0].meta.retry_after`, in seconds.
    pub fn retry_after_secs(&self) -> Option<f64> {
        self.first()?.meta.as_ref()?.retry_after
    }
}

/// One JSON:API error. Every field is optional text: `status` is sometimes `"404"` and
/// sometimes `"locked"`, `code` can be null.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorObject {
    /// Machine code (`VALIDATION_ERROR`, `not_found`, ...).
    #[serde(deserialize_with = "loose_string")]
    pub code: Option<String>,
    /// Status as text (`"422"`, `"locked"`).
    #[serde(deserialize_with = "loose_string")]
    pub status: Option<String>,
    /// Short title (`Validation Error`).
    #[serde(deserialize_with = "loose_string")]
    pub title: Option<String>,
    /// Detail (`must be filled`).
    #[serde(deserialize_with = "loose_string")]
    pub detail: Option<String>,
    /// What in the request was wrong.
    #[serde(deserialize_with = "lenient")]
    pub source: Option<ErrorSource>,
    /// Extra data (`retry_after` on 429).
    #[serde(deserialize_with = "lenient")]
    pub meta: Option<ErrorMeta>,
}

/// Where an error points.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorSource {
    /// JSON pointer into the body.
    #[serde(deserialize_with = "loose_string")]
    pub pointer: Option<String>,
    /// Query parameter.
    #[serde(deserialize_with = "loose_string")]
    pub parameter: Option<String>,
}

/// `meta` of an error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorMeta {
    /// Seconds to wait before retrying (429).
    #[serde(deserialize_with = "loose_f64")]
    pub retry_after: Option<f64>,
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Real-shaped responses from the reference (recorded traffic), shared by unit tests.

    /// `GET /plans` (May 2025, trimmed to 3 of 10 country groups).
    pub const PLANS: &str = r#"{"data":[{"id":"plan_2X6KG5mA5yPBM","type":"plans","attributes":{
  "slug":"c2-small-x86","name":"c2.small.x86","features":["ssh","user_data"],
  "specs":{"cpu":{"type":"E-2134G","clock":3.5,"cores":4,"count":1},"memory":{"total":32},
           "drives":[{"count":1,"size":"500 GB","type":"SSD"}],"nics":[{"count":1,"type":"1 Gbps"}],"gpu":{}},
  "regions":[
    {"name":"United States","deploys_instantly":["ubuntu_24_04_x64_lts"],
     "locations":{"available":["CHI","ASH","DAL","MIA2","LAX","NYC","MIA"],"in_stock":["CHI","DAL","MIA2","LAX","NYC"]},
     "stock_level":"high",
     "pricing":{"USD":{"hour":0.21,"month":146.0,"year":1288.0},"BRL":{"hour":1.05,"month":728.0,"year":6439.0}}},
    {"name":"Germany","deploys_instantly":[],"locations":{"available":["FRA"],"in_stock":[]},
     "stock_level":"unavailable","pricing":{"USD":{"hour":0.21,"month":146.0,"year":1288.0}}},
    {"name":"Colombia","deploys_instantly":["ubuntu_24_04_x64_lts"],"locations":{"available":["BGT"],"in_stock":["BGT"]},
     "stock_level":"low","pricing":{"USD":{"hour":0.3,"month":208.0,"year":1840.0}}}
  ]}}],"meta":{}}"#;

    /// `POST /servers` → 201 (May 2025).
    pub const CREATE_201: &str = r#"{"data":{"type":"servers","id":"sv_ZWr75Zbjr5A91","attributes":{"hostname":"test","label":"21BS005889","role":"Bare Metal",
 "status":"starting_deploy","primary_ipv4":"177.54.146.23",
 "specs":{"cpu":"Xeon E-2278G CPU @ 3.40GHz (8 cores)","disk":"2 X 4 TB NVMe","ram":"64 GB","nic":"10 Gbit/s + 1 Gbit/s"},
 "plan":{"id":"plan_2X6KG5mA5yPBM","name":"c2.small.x86","slug":"c2-small-x86","billing":"hourly"}}},"meta":{}}"#;

    /// `GET /servers/{id}` → 200 (May 2025, trimmed).
    pub const GET_200: &str = r#"{"data":{"id":"sv_ZWr75Zbjr5A91","type":"servers","attributes":{
 "tags":[],"hostname":"test","label":"21BS005889","price":0.18,"role":"Bare Metal",
 "primary_ipv4":"177.54.146.23","status":"on","ipmi_status":"Normal",
 "created_at":"2025-05-05T10:54:34+00:00","scheduled_deletion_at":null,"locked":false,"rescue_allowed":true,
 "region":{"city":"São Paulo","country":"Brazil","site":{"id":"loc_87vRENkgNdPyk","name":"São Paulo","slug":"SAO","facility":"Latitude.sh SP1"}},
 "project":{"id":"proj_gXQvNedwV0zpb","slug":"terraform-test","billing_type":"Normal","...":"..."},
 "team":{"id":"team_...","status":"verified","currency":{"code":"USD"},"...":"..."},
 "plan":{"id":"plan_2X6KG5mA5yPBM","name":"c2.small.x86","slug":"c2-small-x86","billing":"hourly"},
 "operating_system":{"name":"Ubuntu","slug":"ubuntu_24_04_x64_lts","version":"24.04","features":{"raid":true,"rescue":true,"ssh_keys":true,"user_data":true},"distro":{"name":"ubuntu","slug":"ubuntu","series":"noble"}},
 "specs":{"cpu":"Xeon E-2278G CPU @ 3.40GHz (8 cores)","disk":"2 X 4 TB NVMe","ram":"64 GB","nic":"10 Gbit/s + 1 Gbit/s","gpu":null}}},"meta":{}}"#;

    /// 404 for a deleted server.
    pub const NOT_FOUND_404: &str = r#"{"errors":[{"code":"not_found","status":"404","title":"Error","detail":"Specified Record Not Found","meta":{}}]}"#;

    /// 429 from the rate limiter.
    pub const RATE_LIMITED_429: &str = r#"{"errors":[{"code":"RATE_LIMIT_EXCEEDED","title":"Rate Limit Exceeded","status":"429","detail":"Too many requests. Please slow down and retry.","meta":{"retry_after":60}}]}"#;

    /// 423 for a locked server.
    pub const LOCKED_423: &str = r#"{"errors":[{"code":null,"status":"locked","title":"Locked Server","detail":"Server is locked and cannot be updated or deleted","meta":{}}]}"#;

    /// 422 validation error.
    pub const VALIDATION_422: &str = r#"{"errors":[{"code":"VALIDATION_ERROR","status":"422","title":"Validation Error","detail":"must be filled",
            "source":{"pointer":"...","parameter":"..."},"meta":{}}]}"#;

    /// A server list whose second entry has a status this version does not know.
    pub const SERVERS_UNKNOWN_STATUS: &str = r#"{"data":[
 {"id":"sv_1","type":"servers","attributes":{"hostname":"cp-1","status":"deploying","site":"MIA2","primary_ipv4":"10.0.0.1",
   "plan":{"slug":"c2-small-x86","billing":"hourly"},"price":0.21,"operating_system":{"slug":"ipxe"}}},
 {"id":"sv_2","type":"servers","attributes":{"hostname":"cp-2","status":"quantum_superposition","primary_ipv4":null,
   "region":{"site":{"slug":"mia2"}},"interfaces":"not-a-list","tags":null}}
],"meta":{}}"#;

    /// `GET /regions` entry (2024).
    pub const REGIONS: &str = r#"{"data":[{"id":"loc_JLqG158d5BOgv","type":"regions","attributes":{"name":"Miami 2","slug":"MIA2","facility":"Colohouse - Miami","country":{"name":"United States","slug":"united-states"},"type":"Core"}}],"meta":{}}"#;

    /// `GET /plans/operating_systems` entry (2024).
    pub const OPERATING_SYSTEMS: &str = r#"{"data":[{"id":"os_Z1Gjbano0L2wl","type":"operating_system","attributes":{"slug":"ipxe","name":"Custom image (iPXE)",
 "features":{"raid":false,"rescue":false,"ssh_keys":false,"user_data":false},
 "provisionable_on":["c2.small.x86","c3.small.x86","m4.metal.small","s3.large.x86","c1.tiny.x86"]}}],"meta":{}}"#;
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn plan_list_decodes() {
        let doc: ListDocument<PlanAttributes> = serde_json::from_str(PLANS).unwrap();
        let plan = &doc.data[0];
        assert_eq!(plan.id, "plan_2X6KG5mA5yPBM");
        assert_eq!(plan.kind.as_deref(), Some("plans"));
        let a = &plan.attributes;
        assert_eq!(a.slug.as_deref(), Some("c2-small-x86"));
        assert_eq!(a.name.as_deref(), Some("c2.small.x86"));
        let specs = a.specs.as_ref().unwrap();
        assert_eq!(specs.cpu.as_ref().unwrap().clock, Some(3.5));
        assert_eq!(specs.cpu.as_ref().unwrap().cores, Some(4.0));
        assert_eq!(specs.memory.as_ref().unwrap().total, Some(32.0));
        assert_eq!(specs.drives[0].kind.as_deref(), Some("SSD"));
        assert!(!specs.has_gpu(), "`gpu: {{}}` is not a GPU");
        assert_eq!(a.regions.len(), 3);
        let us = &a.regions[0];
        assert_eq!(us.name.as_deref(), Some("United States"));
        assert_eq!(us.stock_level, Some(StockLevel::High));
        let loc = us.locations.as_ref().unwrap();
        assert!(loc.available.contains(&"ASH".to_owned()));
        assert!(!loc.in_stock.contains(&"ASH".to_owned()));
        let usd = us.pricing.as_ref().unwrap().usd.as_ref().unwrap();
        assert_eq!(usd.hour, Some(0.21));
        assert_eq!(usd.month, Some(146.0));
        assert_eq!(
            us.pricing.as_ref().unwrap().brl.as_ref().unwrap().hour,
            Some(1.05)
        );
        assert_eq!(a.regions[1].stock_level, Some(StockLevel::Unavailable));
        assert!(a.regions[1].pricing.as_ref().unwrap().brl.is_none());
    }

    #[test]
    fn plan_without_stock_level_and_with_null_gpu_decodes() {
        let json = r#"{"data":[{"id":"plan_1","type":"plans","attributes":{"slug":"g3-gh200",
            "specs":{"gpu":{"count":1,"type":"GH200"},"cpu":null},
            "regions":[{"name":"Brazil","locations":{"available":["SAO2"],"in_stock":null}}],
            "features":null,"brand_new_field":{"x":1}}},
            {"id":"plan_2","attributes":{"slug":"c3-small-x86","specs":{"gpu":null}}}]}"#;
        let doc: ListDocument<PlanAttributes> = serde_json::from_str(json).unwrap();
        let gpu = &doc.data[0].attributes;
        assert!(gpu.specs.as_ref().unwrap().has_gpu());
        assert_eq!(gpu.regions[0].stock_level, None);
        assert!(
            gpu.regions[0]
                .locations
                .as_ref()
                .unwrap()
                .in_stock
                .is_empty()
        );
        assert!(gpu.features.is_empty());
        assert!(doc.meta.is_none());
        assert!(!doc.data[1].attributes.specs.as_ref().unwrap().has_gpu());
    }

    #[test]
    fn create_response_decodes() {
        let doc: ItemDocument<ServerAttributes> = serde_json::from_str(CREATE_201).unwrap();
        assert_eq!(doc.data.id, "sv_ZWr75Zbjr5A91");
        let a = &doc.data.attributes;
        assert_eq!(a.status, Some(ServerStatus::StartingDeploy));
        assert_eq!(a.primary_ipv4.as_deref(), Some("177.54.146.23"));
        assert_eq!(a.plan_slug(), Some("c2-small-x86"));
        assert_eq!(a.plan.as_ref().unwrap().billing.as_deref(), Some("hourly"));
        assert_eq!(a.site_slug(), None);
        assert_eq!(a.price, None);
    }

    #[test]
    fn get_response_decodes() {
        let doc: ItemDocument<ServerAttributes> = serde_json::from_str(GET_200).unwrap();
        let a = &doc.data.attributes;
        assert_eq!(a.status, Some(ServerStatus::On));
        assert_eq!(a.price, Some(0.18));
        assert_eq!(a.locked, Some(false));
        assert_eq!(a.site_slug().as_deref(), Some("SAO"));
        assert_eq!(
            a.project.as_ref().unwrap().slug.as_deref(),
            Some("terraform-test")
        );
        let os = a.operating_system.as_ref().unwrap();
        assert_eq!(os.slug.as_deref(), Some("ubuntu_24_04_x64_lts"));
        assert_eq!(os.features.as_ref().unwrap().ssh_keys, Some(true));
        assert_eq!(a.specs.as_ref().unwrap().gpu, None);
        assert_eq!(a.created_at.as_deref(), Some("2025-05-05T10:54:34+00:00"));
    }

    #[test]
    fn unknown_status_round_trips_verbatim() {
        let doc: ListDocument<ServerAttributes> =
            serde_json::from_str(SERVERS_UNKNOWN_STATUS).unwrap();
        assert_eq!(doc.data[0].attributes.status, Some(ServerStatus::Deploying));
        let odd = &doc.data[1].attributes;
        assert_eq!(
            odd.status,
            Some(ServerStatus::Other("quantum_superposition".into()))
        );
        assert_eq!(odd.site_slug().as_deref(), Some("MIA2"));
        assert_eq!(odd.interfaces, None, "a malformed nested field is dropped");
        assert_eq!(
            serde_json::to_string(&odd.status).unwrap(),
            r#""quantum_superposition""#
        );
        for known in [
            "on",
            "off",
            "unknown",
            "disk_erasing",
            "deploying",
            "failed_deployment",
            "failed_disk_erasing",
            "rescue_mode",
            "ready",
            "starting_deploy",
        ] {
            let status = ServerStatus::from(known.to_owned());
            assert!(!matches!(status, ServerStatus::Other(_)), "{known}");
            assert_eq!(String::from(status), known);
        }
    }

    #[test]
    fn error_envelopes_decode() {
        let e: ErrorEnvelope = serde_json::from_str(NOT_FOUND_404).unwrap();
        let first = e.first().unwrap();
        assert_eq!(first.code.as_deref(), Some("not_found"));
        assert_eq!(first.status.as_deref(), Some("404"));
        assert_eq!(first.detail.as_deref(), Some("Specified Record Not Found"));
        assert_eq!(e.retry_after_secs(), None);

        let e: ErrorEnvelope = serde_json::from_str(RATE_LIMITED_429).unwrap();
        assert_eq!(e.retry_after_secs(), Some(60.0));
        assert_eq!(
            e.first().unwrap().code.as_deref(),
            Some("RATE_LIMIT_EXCEEDED")
        );

        let e: ErrorEnvelope = serde_json::from_str(LOCKED_423).unwrap();
        assert_eq!(e.first().unwrap().code, None);
        assert_eq!(e.first().unwrap().status.as_deref(), Some("locked"));

        let e: ErrorEnvelope = serde_json::from_str(VALIDATION_422).unwrap();
        assert_eq!(
            e.first()
                .unwrap()
                .source
                .as_ref()
                .unwrap()
                .pointer
                .as_deref(),
            Some("...")
        );

        let e: ErrorEnvelope =
            serde_json::from_str(r#"{"errors":[{"status":429,"meta":{"retry_after":"5"}}]}"#)
                .unwrap();
        assert_eq!(e.first().unwrap().status.as_deref(), Some("429"));
        assert_eq!(e.retry_after_secs(), Some(5.0));
    }

    #[test]
    fn regions_and_operating_systems_decode() {
        let doc: ListDocument<RegionAttributes> = serde_json::from_str(REGIONS).unwrap();
        let r = &doc.data[0].attributes;
        assert_eq!(r.slug.as_deref(), Some("MIA2"));
        assert_eq!(
            r.country.as_ref().unwrap().name.as_deref(),
            Some("United States")
        );

        let doc: ListDocument<OperatingSystemAttributes> =
            serde_json::from_str(OPERATING_SYSTEMS).unwrap();
        let os = &doc.data[0].attributes;
        assert_eq!(os.slug.as_deref(), Some("ipxe"));
        assert!(os.provisionable_on_plan("m4-metal-small"));
        assert!(os.provisionable_on_plan("c2.small.x86"));
        assert!(!os.provisionable_on_plan("g3-gh200"));
        assert_eq!(os.features.as_ref().unwrap().user_data, Some(false));
    }

    #[test]
    fn create_body_has_hourly_billing_and_uppercase_site() {
        let order = CreateServer::ipxe(
            "talos-cp-1",
            "m4-metal-small",
            "mia2",
            "https://pxe.factory.talos.dev/pxe/abc/v1.11.0/metal-amd64",
        );
        let body = RequestBody::new("servers", CreateServerAttributes::new("proj_X", &order));
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"data":{"type":"servers","attributes":{
                "project":"proj_X","plan":"m4-metal-small","site":"MIA2",
                "operating_system":"ipxe","hostname":"talos-cp-1","billing":"hourly",
                "ipxe":"https://pxe.factory.talos.dev/pxe/abc/v1.11.0/metal-amd64"}}})
        );
    }

    #[test]
    fn reinstall_body_matches_the_spec_example() {
        let r = Reinstall::ipxe("BRC1", "https://some-host.com/image.ipxe");
        let body = RequestBody::new("reinstalls", ReinstallAttributes::from(&r));
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"data":{"type":"reinstalls","attributes":{
                "operating_system":"ipxe","hostname":"BRC1","ipxe":"https://some-host.com/image.ipxe"}}})
        );
    }
}
