//! Fault injection (`cto lab serve --faults SPEC`, [`crate::LabConfig::faults`]).
//!
//! SPEC is comma-separated `key=value` entries:
//!
//! | key | value | effect |
//! |---|---|---|
//! | `latitude.5xx`, `talos.5xx`, `kube.5xx` | probability 0–1 | Latitude: `503` with Latitude's error body, before the request is handled; Talos: gRPC `UNAVAILABLE`; Kubernetes: `503` `Status` |
//! | `latitude.429`, `kube.429` (`talos.429` too: `RESOURCE_EXHAUSTED`) | probability | `429` with the real body and `meta.retry_after` (Latitude) or `Retry-After` (Kubernetes) |
//! | `latitude.latency`, `talos.latency`, `kube.latency` | duration (`300ms`, `2s`) | added to every request |
//! | `latitude.reset`, `talos.reset`, `kube.reset` | probability | the connection is dropped: Latitude and Kubernetes *after* handling the request (the answer is lost), Talos before the TLS handshake |
//! | `latitude.retry_after` | whole seconds (default 1) | the `retry_after` sent with injected 429s |
//! | `server.fail` | `HOSTNAME[:N|:always]` | the first (or first N, or every) server ordered with that hostname goes to `failed_deployment` instead of `deploying`; repeatable |
//! | `node.noboot` | `HOSTNAME` | that server deploys but Talos never answers on :50000; repeatable |
//! | `talos.rekey` | `HOSTNAME` | after its first `Version` call in maintenance mode (cto's step-5 probe), that node presents a new maintenance-mode key, as after a reboot or another machine at its address; repeatable |
//! | `stock.vanish` | `SITE` | the site stays listed `in_stock` but every order there gets Latitude's `422` "no stock"; repeatable |
//! | `node.drives` | `HOSTNAME:COUNTxSIZExTYPE[+…]` | that server's disks are these drives instead of its plan's (`1x480GBxSSD+2x4TBxNVME`), as Latitude ships servers that differ from their plans; repeatable |
//! | `latitude.status` | `disk_erasing` | iPXE servers read `disk_erasing` instead of `deploying` until they are `on`, while Talos already answers |
//! | `latitude.flap` | `failed_deployment` | each iPXE server reads `failed_deployment` once during its deployment (one read), then recovers |
//! | `argocd.degraded` | `APP` | the Argo CD Application stays `Degraded` (mapped onto [`crate::LabConfig::argocd_degraded`]); repeatable |
//! | `order.lost` | `HOSTNAME[:N]` | the first order of that hostname is created but its answer is lost (the connection drops), and the new server is left out of the next N server listings (default 1), as a listing that lags behind would; repeatable |
//! | `faults.seed` | integer | seed of the random draws (default 0), so a run can be replayed |
//!
//! Unknown keys and bad values are refused with a message naming them.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Probabilistic faults of one API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiFaults {
    /// Probability of a server error (HTTP 503, gRPC `UNAVAILABLE`).
    pub error_5xx: f64,
    /// Probability of a rate-limit answer (HTTP 429, gRPC `RESOURCE_EXHAUSTED`).
    pub error_429: f64,
    /// Probability that the connection is dropped.
    pub reset: f64,
    /// Added to every request.
    pub latency: Duration,
}

impl ApiFaults {
    fn is_empty(&self) -> bool {
        *self == ApiFaults::default()
    }
}

/// How often `server.fail` strikes a hostname.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailCount {
    /// The first `n` orders of the hostname.
    First(u32),
    /// Every order.
    Always,
}

/// A parsed fault specification. `Default` injects nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    /// The Latitude REST API.
    pub latitude: ApiFaults,
    /// `retry_after` (seconds) of injected Latitude 429s.
    pub latitude_retry_after: u64,
    /// The Talos gRPC API of every node.
    pub talos: ApiFaults,
    /// The clusters' Kubernetes APIs.
    pub kube: ApiFaults,
    /// `server.fail`: hostname → how many of its orders fail deployment.
    pub server_fail: Vec<(String, FailCount)>,
    /// `node.noboot`: hostnames whose Talos never answers.
    pub node_noboot: Vec<String>,
    /// `talos.rekey`: hostnames whose maintenance-mode key changes after their first probe.
    pub talos_rekey: Vec<String>,
    /// `stock.vanish`: sites listed in stock whose orders are refused.
    pub stock_vanish: Vec<String>,
    /// `argocd.degraded`: Applications that stay Degraded.
    pub argocd_degraded: Vec<String>,
    /// `node.drives`: hostname → drive list replacing its plan's.
    pub node_drives: Vec<(String, String)>,
    /// `latitude.status=disk_erasing`: deploying iPXE servers read `disk_erasing`.
    pub status_disk_erasing: bool,
    /// `latitude.flap=failed_deployment`: each deploying iPXE server reads `failed_deployment`
    /// once.
    pub flap_failed_deployment: bool,
    /// Seed of the random draws.
    pub seed: u64,
    /// `order.lost`: hostname → how many listings leave the new server out.
    pub order_lost: Vec<(String, u32)>,
}

impl Default for FaultSpec {
    fn default() -> Self {
        FaultSpec {
            latitude: ApiFaults::default(),
            latitude_retry_after: 1,
            talos: ApiFaults::default(),
            kube: ApiFaults::default(),
            server_fail: Vec::new(),
            node_noboot: Vec::new(),
            talos_rekey: Vec::new(),
            stock_vanish: Vec::new(),
            argocd_degraded: Vec::new(),
            node_drives: Vec::new(),
            status_disk_erasing: false,
            flap_failed_deployment: false,
            seed: 0,
            order_lost: Vec::new(),
        }
    }
}

/// Why a fault specification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault {entry:?}: {reason}")]
pub struct FaultSpecError {
    /// The entry at fault.
    pub entry: String,
    /// What is wrong and what is allowed.
    pub reason: String,
}

const KEYS: &str = "latitude.{5xx,429,reset,latency,retry_after}, talos.{5xx,429,reset,latency,rekey}, kube.{5xx,429,reset,latency}, server.fail, node.noboot, node.drives, latitude.status, latitude.flap, stock.vanish, argocd.degraded, order.lost, faults.seed";

fn probability(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{value:?} is not a probability between 0 and 1")),
    }
}

/// `300ms`, `2s`, `1.5s`, `0`.
fn duration(value: &str) -> Result<Duration, String> {
    let bad = || format!("{value:?} is not a duration such as 300ms or 2s");
    let (number, scale) = if let Some(n) = value.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1.0)
    } else if value == "0" {
        ("0", 1.0)
    } else {
        return Err(bad());
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 && n * scale <= 600.0 => {
            Ok(Duration::from_secs_f64(n * scale))
        }
        _ => Err(bad()),
    }
}

fn hostname(value: &str) -> Result<String, String> {
    crate::api::check_hostname(value)?;
    Ok(value.to_owned())
}

fn format_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut out = FaultSpec::default();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let err = |reason: String| FaultSpecError {
                entry: entry.to_owned(),
                reason,
            };
            let (key, value) = entry
                .split_once('=')
                .ok_or_else(|| err("expected key=value".into()))?;
            let (key, value) = (key.trim(), value.trim());
            if value.is_empty() {
                return Err(err("the value is empty".into()));
            }
            let api = |name: &str| -> Option<&str> { key.strip_prefix(name) };
            let target = if let Some(rest) = api("latitude.") {
                Some((&mut out.latitude, rest))
            } else if let Some(rest) = api("talos.") {
                Some((&mut out.talos, rest))
            } else if let Some(rest) = api("kube.") {
                Some((&mut out.kube, rest))
            } else {
                None
            };
            match (key, target) {
                ("latitude.retry_after", _) => {
                    out.latitude_retry_after = value
                        .parse::<u64>()
                        .ok()
                        .filter(|s| *s <= 300)
                        .ok_or_else(|| err(format!("{value:?} is not whole seconds (0-300)")))?;
                }
                (_, Some((faults, "5xx"))) => faults.error_5xx = probability(value).map_err(err)?,
                (_, Some((faults, "429"))) => faults.error_429 = probability(value).map_err(err)?,
                (_, Some((faults, "reset"))) => faults.reset = probability(value).map_err(err)?,
                (_, Some((faults, "latency"))) => faults.latency = duration(value).map_err(err)?,
                ("server.fail", _) => {
                    let (host, count) = match value.rsplit_once(':') {
                        Some((host, "always")) => (host, FailCount::Always),
                        Some((host, n)) => (
                            host,
                            FailCount::First(n.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(
                                || err(format!("{n:?} is not a count (1, 2, … or always)")),
                            )?),
                        ),
                        None => (value, FailCount::First(1)),
                    };
                    out.server_fail.push((hostname(host).map_err(err)?, count));
                }
                ("node.noboot", _) => out.node_noboot.push(hostname(value).map_err(err)?),
                ("node.drives", _) => {
                    let (host, drives) = value
                        .split_once(':')
                        .ok_or_else(|| err("expected HOSTNAME:COUNTxSIZExTYPE[+…]".into()))?;
                    crate::talos::disks::parse_drives(drives).map_err(err)?;
                    out.node_drives
                        .push((hostname(host).map_err(err)?, drives.to_owned()));
                }
                ("latitude.status", _) => match value {
                    "disk_erasing" => out.status_disk_erasing = true,
                    _ => {
                        return Err(err(format!(
                            "{value:?} is not a status the lab can hold (disk_erasing)"
                        )));
                    }
                },
                ("latitude.flap", _) => match value {
                    "failed_deployment" => out.flap_failed_deployment = true,
                    _ => {
                        return Err(err(format!(
                            "{value:?} is not a status the lab can flap to (failed_deployment)"
                        )));
                    }
                },
                ("talos.rekey", _) => out.talos_rekey.push(hostname(value).map_err(err)?),
                ("order.lost", _) => {
                    let (host, hide) = match value.rsplit_once(':') {
                        Some((host, n)) => (
                            host,
                            n.parse::<u32>()
                                .map_err(|_| err(format!("{n:?} is not a number of listings")))?,
                        ),
                        None => (value, 1),
                    };
                    out.order_lost.push((hostname(host).map_err(err)?, hide));
                }
                ("stock.vanish", _) => {
                    if !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
                        return Err(err(format!("{value:?} is not a site slug such as MIA2")));
                    }
                    out.stock_vanish.push(value.to_ascii_uppercase());
                }
                ("argocd.degraded", _) => {
                    if !value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                    {
                        return Err(err(format!("{value:?} is not an Application name")));
                    }
                    out.argocd_degraded.push(value.to_owned());
                }
                ("faults.seed", _) => {
                    out.seed = value
                        .parse::<u64>()
                        .map_err(|_| err(format!("{value:?} is not an unsigned integer")))?;
                }
                _ => return Err(err(format!("unknown key {key:?}; known keys: {KEYS}"))),
            }
        }
        let total = |f: &ApiFaults| f.error_5xx + f.error_429 + f.reset;
        for (name, faults) in [
            ("latitude", &out.latitude),
            ("talos", &out.talos),
            ("kube", &out.kube),
        ] {
            if total(faults) > 1.0 {
                return Err(FaultSpecError {
                    entry: spec.to_owned(),
                    reason: format!("the {name}.* probabilities add up to more than 1"),
                });
            }
        }
        Ok(out)
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut entries: Vec<String> = Vec::new();
        for (name, api) in [
            ("latitude", &self.latitude),
            ("talos", &self.talos),
            ("kube", &self.kube),
        ] {
            if api.error_5xx > 0.0 {
                entries.push(format!("{name}.5xx={}", api.error_5xx));
            }
            if api.error_429 > 0.0 {
                entries.push(format!("{name}.429={}", api.error_429));
            }
            if api.reset > 0.0 {
                entries.push(format!("{name}.reset={}", api.reset));
            }
            if !api.latency.is_zero() {
                entries.push(format!("{name}.latency={}", format_duration(api.latency)));
            }
        }
        if self.latitude_retry_after != 1 {
            entries.push(format!(
                "latitude.retry_after={}",
                self.latitude_retry_after
            ));
        }
        for (host, count) in &self.server_fail {
            entries.push(match count {
                FailCount::First(1) => format!("server.fail={host}"),
                FailCount::First(n) => format!("server.fail={host}:{n}"),
                FailCount::Always => format!("server.fail={host}:always"),
            });
        }
        entries.extend(self.node_noboot.iter().map(|h| format!("node.noboot={h}")));
        entries.extend(self.talos_rekey.iter().map(|h| format!("talos.rekey={h}")));
        entries.extend(
            self.stock_vanish
                .iter()
                .map(|s| format!("stock.vanish={s}")),
        );
        entries.extend(
            self.argocd_degraded
                .iter()
                .map(|a| format!("argocd.degraded={a}")),
        );
        entries.extend(
            self.node_drives
                .iter()
                .map(|(h, d)| format!("node.drives={h}:{d}")),
        );
        if self.status_disk_erasing {
            entries.push("latitude.status=disk_erasing".into());
        }
        if self.flap_failed_deployment {
            entries.push("latitude.flap=failed_deployment".into());
        }
        entries.extend(
            self.order_lost
                .iter()
                .map(|(h, n)| format!("order.lost={h}:{n}")),
        );
        if self.seed != 0 {
            entries.push(format!("faults.seed={}", self.seed));
        }
        f.write_str(&entries.join(","))
    }
}

impl Serialize for FaultSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for FaultSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FaultSpec {
    /// True when nothing is injected.
    pub fn is_empty(&self) -> bool {
        self.latitude.is_empty()
            && self.talos.is_empty()
            && self.kube.is_empty()
            && self.server_fail.is_empty()
            && self.node_noboot.is_empty()
            && self.talos_rekey.is_empty()
            && self.stock_vanish.is_empty()
            && self.argocd_degraded.is_empty()
            && self.node_drives.is_empty()
            && !self.status_disk_erasing
            && !self.flap_failed_deployment
            && self.order_lost.is_empty()
    }
}

/// Which API a request reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Latitude,
    Talos,
    Kube,
}

/// What to do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strike {
    /// Serve it normally.
    None,
    /// Answer with a server error.
    ServerError,
    /// Answer with a rate-limit error.
    RateLimited,
    /// Drop the connection.
    Reset,
}

/// The faults of a running lab: the spec, the seeded random source, and what `server.fail` has
/// used up.
pub(crate) struct Faults {
    pub spec: FaultSpec,
    rng: Mutex<StdRng>,
    failed_orders: Mutex<HashMap<String, u32>>,
    /// (server id, lifecycle) pairs that already read their `latitude.flap` status.
    flapped: Mutex<std::collections::HashSet<(String, i64)>>,
    /// `order.lost`: hostnames whose lost order was spent, and server id → listings it is
    /// still left out of.
    lost_orders: Mutex<(Vec<String>, HashMap<String, u32>)>,
}

impl Faults {
    pub fn new(spec: FaultSpec) -> Faults {
        let rng = StdRng::seed_from_u64(spec.seed);
        Faults {
            spec,
            rng: Mutex::new(rng),
            failed_orders: Mutex::new(HashMap::new()),
            flapped: Mutex::new(std::collections::HashSet::new()),
            lost_orders: Mutex::new((Vec::new(), HashMap::new())),
        }
    }

    /// The status a read of an iPXE server reports under `latitude.status` and
    /// `latitude.flap`, given the status its lifecycle says (`status`). Third-party runs saw
    /// `disk_erasing` while Talos already answered, and terraform-provider-latitudesh PR #183
    /// describes an iPXE reinstall reading `failed_deployment` while the machine was still
    /// erasing its disk; both end in `on`.
    pub fn quirk_status(
        &self,
        server: &str,
        lifecycle: i64,
        ipxe: bool,
        status: &'static str,
    ) -> &'static str {
        if !ipxe || !matches!(status, "deploying" | "disk_erasing") {
            return status;
        }
        if self.spec.flap_failed_deployment
            && self
                .flapped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((server.to_owned(), lifecycle))
        {
            return "failed_deployment";
        }
        if self.spec.status_disk_erasing {
            return "disk_erasing";
        }
        status
    }

    fn api(&self, api: Api) -> &ApiFaults {
        match api {
            Api::Latitude => &self.spec.latitude,
            Api::Talos => &self.spec.talos,
            Api::Kube => &self.spec.kube,
        }
    }

    fn draw(&self) -> f64 {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).random()
    }

    /// Whether a new connection to `api` is dropped at once (`<api>.reset`).
    pub fn reset(&self, api: Api) -> bool {
        let p = self.api(api).reset;
        let hit = p > 0.0 && self.draw() < p;
        if hit {
            tracing::info!(?api, "injected fault: connection dropped");
        }
        hit
    }

    /// Draws the fate of one request (and sleeps the configured latency first). Talos resets
    /// are drawn per connection ([`Faults::reset`]), not here.
    pub async fn strike(&self, api: Api) -> Strike {
        let faults = self.api(api);
        if !faults.latency.is_zero() {
            tokio::time::sleep(faults.latency).await;
        }
        let reset = if api == Api::Talos { 0.0 } else { faults.reset };
        let total = faults.error_5xx + faults.error_429 + reset;
        if total <= 0.0 {
            return Strike::None;
        }
        let draw = self.draw();
        let strike = if draw < faults.error_5xx {
            Strike::ServerError
        } else if draw < faults.error_5xx + faults.error_429 {
            Strike::RateLimited
        } else if draw < total {
            Strike::Reset
        } else {
            Strike::None
        };
        if strike != Strike::None {
            tracing::info!(?api, ?strike, "injected fault");
        }
        strike
    }

    /// Whether a new order of `hostname` is doomed to `failed_deployment` (and counts it).
    pub fn order_fails(&self, hostname: &str) -> bool {
        let Some((_, count)) = self.spec.server_fail.iter().find(|(h, _)| h == hostname) else {
            return false;
        };
        let mut used = self.failed_orders.lock().unwrap_or_else(|p| p.into_inner());
        let n = used.entry(hostname.to_owned()).or_default();
        let doomed = match count {
            FailCount::Always => true,
            FailCount::First(limit) => *n < *limit,
        };
        if doomed {
            *n += 1;
            tracing::info!(%hostname, "injected fault: this server will fail its deployment");
        }
        doomed
    }

    /// Whether the answer to this new order of `hostname` (server `id`) is lost
    /// (`order.lost`, once per hostname); the server is then hidden from the next listings.
    pub fn order_answer_lost(&self, hostname: &str, id: &str) -> bool {
        let Some((_, hide)) = self.spec.order_lost.iter().find(|(h, _)| h == hostname) else {
            return false;
        };
        let mut lost = self.lost_orders.lock().unwrap_or_else(|p| p.into_inner());
        if lost.0.iter().any(|h| h == hostname) {
            return false;
        }
        lost.0.push(hostname.to_owned());
        if *hide > 0 {
            lost.1.insert(id.to_owned(), *hide);
        }
        tracing::info!(%hostname, %id, hide, "injected fault: order answer lost");
        true
    }

    /// Whether `order.lost` keeps server `id` out of the listing being served.
    pub fn hidden_from_listing(&self, id: &str) -> bool {
        let lost = self.lost_orders.lock().unwrap_or_else(|p| p.into_inner());
        lost.1.contains_key(id)
    }

    /// Counts one served server listing against the `order.lost` hiding.
    pub fn listing_served(&self) {
        let mut lost = self.lost_orders.lock().unwrap_or_else(|p| p.into_inner());
        lost.1.retain(|_, n| {
            *n -= 1;
            *n > 0
        });
    }

    /// Whether orders at `site` are refused for lack of stock.
    pub fn stock_vanished(&self, site: &str) -> bool {
        self.spec
            .stock_vanish
            .iter()
            .any(|s| s.eq_ignore_ascii_case(site))
    }
}

/// Faults of the Kubernetes APIs, found by the API's `host:port` (the API server is started
/// by the node reconciler, which registers the lab's faults for it here).
static KUBE_FAULTS: Mutex<Vec<(String, std::sync::Arc<Faults>)>> = Mutex::new(Vec::new());

/// Registers (or, with `None`, forgets) the faults of the Kubernetes API at `address`.
pub(crate) fn register_kube(address: &str, faults: Option<std::sync::Arc<Faults>>) {
    let mut all = KUBE_FAULTS.lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|(a, _)| a != address);
    if let Some(faults) = faults.filter(|f| !f.spec.kube.is_empty()) {
        all.push((address.to_owned(), faults));
    }
}

/// The fault hook of the lab's Kubernetes API: `Some(response)` replaces the real answer to a
/// request reaching `address`. `handled` produces the real response (a reset drops the
/// connection after it was produced).
pub(crate) async fn kube_hook(address: &str) -> Option<hyper::Response<axum::body::Body>> {
    let faults = {
        let all = KUBE_FAULTS.lock().unwrap_or_else(|p| p.into_inner());
        all.iter()
            .find(|(a, _)| a == address)
            .map(|(_, f)| f.clone())
    }?;
    let status_body = |code: u16, reason: &str, message: &str| {
        serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code,
        })
        .to_string()
    };
    let response = |code: u16, body: String| {
        hyper::Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .header("retry-after", "1")
            .body(axum::body::Body::from(body))
            .ok()
    };
    match faults.strike(Api::Kube).await {
        Strike::None => None,
        Strike::ServerError => response(
            503,
            status_body(
                503,
                "ServiceUnavailable",
                "the lab injected a fault (kube.5xx)",
            ),
        ),
        Strike::RateLimited => response(
            429,
            status_body(
                429,
                "TooManyRequests",
                "the lab injected a fault (kube.429); please try again later",
            ),
        ),
        Strike::Reset => Some(broken_response()),
    }
}

/// A response whose body fails at once: the server drops the connection mid-answer.
pub(crate) fn broken_response() -> hyper::Response<axum::body::Body> {
    let body =
        axum::body::Body::from_stream(tokio_stream::once(Err::<Vec<u8>, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "the lab injected a connection reset",
        ))));
    let mut response = hyper::Response::new(body);
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("static"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key_and_round_trips() {
        let spec: FaultSpec = "latitude.5xx=0.1, latitude.429=0.1,latitude.latency=300ms,latitude.reset=0.05,talos.5xx=0.1,talos.latency=1s,kube.429=0.2,server.fail=a-worker-1,server.fail=a-cp-1:always,server.fail=b-cp-1:2,node.noboot=a-cp-2,talos.rekey=a-cp-1,stock.vanish=mia2,argocd.degraded=vault,faults.seed=7,latitude.retry_after=2"
            .parse()
            .unwrap();
        assert_eq!(spec.latitude.error_5xx, 0.1);
        assert_eq!(spec.latitude.latency, Duration::from_millis(300));
        assert_eq!(spec.talos.latency, Duration::from_secs(1));
        assert_eq!(spec.kube.error_429, 0.2);
        assert_eq!(
            spec.server_fail,
            vec![
                ("a-worker-1".into(), FailCount::First(1)),
                ("a-cp-1".into(), FailCount::Always),
                ("b-cp-1".into(), FailCount::First(2)),
            ]
        );
        assert_eq!(spec.stock_vanish, ["MIA2"]);
        assert_eq!(spec.talos_rekey, ["a-cp-1"]);
        assert_eq!(spec.argocd_degraded, ["vault"]);
        assert_eq!(spec.seed, 7);
        assert_eq!(spec.latitude_retry_after, 2);
        let again: FaultSpec = spec.to_string().parse().unwrap();
        assert_eq!(again, spec);
        assert!(FaultSpec::default().is_empty());
        assert_eq!("".parse::<FaultSpec>().unwrap(), FaultSpec::default());
    }

    #[test]
    fn refuses_bad_entries_naming_them() {
        for (bad, mentions) in [
            ("latitude.5xx=2", "latitude.5xx=2"),
            ("latitude.5xx=lots", "lots"),
            ("latitude.503=0.1", "latitude.503"),
            ("frobnicate=1", "frobnicate"),
            ("latitude.latency=fast", "fast"),
            ("server.fail=Bad_Host", "Bad_Host"),
            ("talos.rekey=Bad_Host", "Bad_Host"),
            ("server.fail=a:0", "\"0\""),
            ("stock.vanish=MI A", "MI A"),
            ("faults.seed=-1", "-1"),
            ("latitude.5xx", "key=value"),
            ("talos.5xx=0.6,talos.reset=0.6", "more than 1"),
        ] {
            let err = bad.parse::<FaultSpec>().unwrap_err().to_string();
            assert!(err.contains(mentions), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn draws_follow_the_seed_and_the_rates() {
        let spec: FaultSpec = "latitude.5xx=0.25,latitude.429=0.25,faults.seed=3"
            .parse()
            .unwrap();
        let a = Faults::new(spec.clone());
        let b = Faults::new(spec);
        let mut hits = 0;
        for _ in 0..400 {
            let x = a.strike(Api::Latitude).await;
            assert_eq!(x, b.strike(Api::Latitude).await, "same seed, same draws");
            if x != Strike::None {
                hits += 1;
            }
            assert_eq!(a.strike(Api::Talos).await, Strike::None);
        }
        assert!((150..250).contains(&hits), "{hits}");
    }

    #[test]
    fn server_fail_counts_orders() {
        let f = Faults::new("server.fail=a:2,server.fail=b:always".parse().unwrap());
        assert!(f.order_fails("a"));
        assert!(f.order_fails("a"));
        assert!(!f.order_fails("a"));
        assert!((0..5).all(|_| f.order_fails("b")));
        assert!(!f.order_fails("c"));
    }
}
