//! Stock and region selection: given the provider's plan offers, which site can take the whole
//! cluster right now, and why every other site was passed over (`cto regions`,
//! `--auto-region`).
//!
//! A site qualifies only when **every** demanded plan lists it under `in_stock` (never
//! `available` alone) and the plan's stock level there is not `unavailable`. Qualifying sites
//! are ranked by their position in the fallback order (listed sites first), then stock level
//! (the worst over the demanded plans: high > medium > low > unknown), then the hourly price of
//! all nodes, then name. Everything here is plain data and serializes to JSON.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::provider::{PlanOffer, Provider, ProviderResult, StockLevel};

/// The fallback order used when the user gives none.
pub const DEFAULT_FALLBACK_ORDER: [&str; 4] = ["MIA2", "DAL", "ASH", "LAX"];

/// How many nodes of one plan the cluster needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDemand {
    /// Plan slug (`c2-small-x86`; the dotted name is accepted too).
    pub plan: String,
    /// Number of nodes.
    pub count: u32,
}

impl NodeDemand {
    /// `count` nodes of `plan`.
    pub fn new(plan: impl Into<String>, count: u32) -> Self {
        Self {
            plan: plan.into(),
            count,
        }
    }
}

/// What to place and where the user prefers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionRequest {
    /// Nodes per plan. Demands on the same plan add up; zero counts are ignored.
    pub demands: Vec<NodeDemand>,
    /// Preferred sites, best first (`--fallback-regions`); other sites rank after them.
    pub fallback_order: Vec<String>,
    /// A site that must be used (it must qualify).
    pub pinned_site: Option<String>,
}

impl RegionRequest {
    /// A cluster of `cp_count` control-plane nodes and `worker_count` workers, with the default
    /// fallback order and no pinned site.
    pub fn cluster(cp_plan: &str, cp_count: u32, worker_plan: &str, worker_count: u32) -> Self {
        Self {
            demands: vec![
                NodeDemand::new(cp_plan, cp_count),
                NodeDemand::new(worker_plan, worker_count),
            ],
            fallback_order: DEFAULT_FALLBACK_ORDER.map(str::to_owned).to_vec(),
            pinned_site: None,
        }
    }
}

/// The offers of the cluster's plans at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockSnapshot {
    /// When the offers were read, in seconds since the Unix epoch.
    pub taken_at: u64,
    /// The control-plane plan.
    pub control_plane: PlanOffer,
    /// The worker plan (may be the same plan).
    pub worker: PlanOffer,
}

/// The site chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteChoice {
    /// Site slug (`MIA2`).
    pub site: String,
    /// Country group (`United States`).
    pub country: Option<String>,
    /// The worst stock level over the demanded plans.
    pub stock_level: StockLevel,
    /// USD per hour for every node, when every plan has a price there.
    pub hourly_usd_total: Option<f64>,
    /// USD per month for every node, when every plan has a price there.
    pub monthly_usd_total: Option<f64>,
}

/// Why a site was or was not chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteVerdict {
    /// Site slug.
    pub site: String,
    /// Country group, when any demanded plan is offered there.
    pub country: Option<String>,
    /// True when every demanded plan is in stock here.
    pub accepted: bool,
    /// 1-based rank among the candidates (`None` when rejected, or not considered because
    /// another site is pinned).
    pub rank: Option<usize>,
    /// Human explanations: why rejected, or why ranked where it is.
    pub reasons: Vec<String>,
    /// The worst stock level over the demanded plans offered here.
    pub stock_level: StockLevel,
    /// USD per hour for every node, when every plan has a price here.
    pub hourly_usd_total: Option<f64>,
}

/// The result of [`InventoryManager::select_region`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionSelection {
    /// The site to use.
    pub chosen: SiteChoice,
    /// Every site considered: accepted ones by rank, then the rejected ones.
    pub verdicts: Vec<SiteVerdict>,
}

/// Why no site could be selected.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum InventoryError {
    /// A demanded plan is not sold.
    #[error("unknown plan {plan:?}; plans on offer: {}", known.join(", "))]
    UnknownPlan {
        /// The plan asked for.
        plan: String,
        /// Every plan slug on offer.
        known: Vec<String>,
    },
    /// The pinned site cannot take the cluster.
    #[error("site {site} cannot take this cluster: {}", reasons.join("; "))]
    SiteUnavailable {
        /// The pinned site.
        site: String,
        /// Why not.
        reasons: Vec<String>,
    },
    /// No site has every demanded plan in stock.
    #[error("no site has every requested plan in stock: {}", summarize(verdicts))]
    NoSite {
        /// Every site considered, with its reasons.
        verdicts: Vec<SiteVerdict>,
    },
    /// Nothing was asked for (no demand with a count above zero).
    #[error("no nodes were requested")]
    NoDemand,
}

fn summarize(verdicts: &[SiteVerdict]) -> String {
    const SHOWN: usize = 6;
    let mut out = String::new();
    for (i, v) in verdicts.iter().take(SHOWN).enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let _ = write!(out, "{}: {}", v.site, v.reasons.join(", "));
    }
    if verdicts.len() > SHOWN {
        let _ = write!(out, "; and {} more sites", verdicts.len() - SHOWN);
    }
    out
}

/// Holds the plan offers and answers stock questions about them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InventoryManager {
    offers: Vec<PlanOffer>,
}

/// One merged demand, resolved to its offer.
struct Demand<'a> {
    offer: &'a PlanOffer,
    count: u32,
}

/// A site, evaluated against every demand.
struct Evaluation {
    site: String,
    country: Option<String>,
    rejections: Vec<String>,
    stock_level: StockLevel,
    hourly: Option<f64>,
    monthly: Option<f64>,
    fallback_position: Option<usize>,
}

impl InventoryManager {
    /// Wraps offers read earlier.
    pub fn new(offers: Vec<PlanOffer>) -> Self {
        Self { offers }
    }

    /// Reads the offers from a provider.
    pub async fn fetch<P: Provider>(provider: &P) -> ProviderResult<Self> {
        Ok(Self::new(provider.plan_offers().await?))
    }

    /// Every offer.
    pub fn offers(&self) -> &[PlanOffer] {
        &self.offers
    }

    /// One plan by slug or dotted name (case-insensitive).
    pub fn plan(&self, plan: &str) -> Option<&PlanOffer> {
        let plan = plan.trim();
        self.offers
            .iter()
            .find(|o| o.slug.eq_ignore_ascii_case(plan))
            .or_else(|| {
                self.offers
                    .iter()
                    .find(|o| o.name.eq_ignore_ascii_case(plan))
            })
    }

    fn known_plan(&self, plan: &str) -> Result<&PlanOffer, InventoryError> {
        self.plan(plan).ok_or_else(|| {
            let mut known: Vec<String> = self.offers.iter().map(|o| o.slug.clone()).collect();
            known.sort();
            known.dedup();
            InventoryError::UnknownPlan {
                plan: plan.to_owned(),
                known,
            }
        })
    }

    /// The offers for the control-plane and worker plans, stamped with the current time.
    pub fn snapshot(
        &self,
        control_plane_plan: &str,
        worker_plan: &str,
    ) -> Result<StockSnapshot, InventoryError> {
        Ok(StockSnapshot {
            taken_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            control_plane: self.known_plan(control_plane_plan)?.clone(),
            worker: self.known_plan(worker_plan)?.clone(),
        })
    }

    /// Chooses the site for the request and explains the verdict on every site.
    pub fn select_region(
        &self,
        request: &RegionRequest,
    ) -> Result<RegionSelection, InventoryError> {
        let demands = self.merge_demands(&request.demands)?;
        let fallback: Vec<String> = request
            .fallback_order
            .iter()
            .map(|s| normalize_site(s))
            .filter(|s| !s.is_empty())
            .collect();
        let pinned = request
            .pinned_site
            .as_deref()
            .map(normalize_site)
            .filter(|s| !s.is_empty());

        // Every site worth a verdict: the pinned one, the preferred ones, and every site any
        // demanded plan is offered in.
        let mut sites: Vec<String> = Vec::new();
        let mut add = |site: &str| {
            if !sites.iter().any(|s| s == site) {
                sites.push(site.to_owned());
            }
        };
        pinned.iter().for_each(|s| add(s));
        fallback.iter().for_each(|s| add(s));
        for d in &demands {
            for s in &d.offer.sites {
                add(&normalize_site(&s.site));
            }
        }

        let evaluations: Vec<Evaluation> = sites
            .iter()
            .map(|site| evaluate(site, &demands, &fallback))
            .collect();
        let (mut accepted, mut rejected): (Vec<Evaluation>, Vec<Evaluation>) = evaluations
            .into_iter()
            .partition(|e| e.rejections.is_empty());
        accepted.sort_by(compare);
        rejected.sort_by(|a, b| {
            a.fallback_position
                .unwrap_or(usize::MAX)
                .cmp(&b.fallback_position.unwrap_or(usize::MAX))
                .then_with(|| a.site.cmp(&b.site))
        });

        let rejected_verdicts = rejected.iter().map(|e| SiteVerdict {
            site: e.site.clone(),
            country: e.country.clone(),
            accepted: false,
            rank: None,
            reasons: e.rejections.clone(),
            stock_level: e.stock_level.clone(),
            hourly_usd_total: e.hourly,
        });

        if let Some(pinned) = pinned {
            let Some(position) = accepted.iter().position(|e| e.site == pinned) else {
                let reasons = rejected
                    .iter()
                    .find(|e| e.site == pinned)
                    .map(|e| e.rejections.clone())
                    .unwrap_or_default();
                return Err(InventoryError::SiteUnavailable {
                    site: pinned,
                    reasons,
                });
            };
            let chosen = accepted.remove(position);
            let mut verdicts = vec![SiteVerdict {
                site: chosen.site.clone(),
                country: chosen.country.clone(),
                accepted: true,
                rank: Some(1),
                reasons: vec![format!("ranked 1st: {} is the pinned site", chosen.site)],
                stock_level: chosen.stock_level.clone(),
                hourly_usd_total: chosen.hourly,
            }];
            verdicts.extend(accepted.iter().map(|e| SiteVerdict {
                site: e.site.clone(),
                country: e.country.clone(),
                accepted: true,
                rank: None,
                reasons: vec![format!(
                    "qualifies, but not considered: the site is pinned to {}",
                    chosen.site
                )],
                stock_level: e.stock_level.clone(),
                hourly_usd_total: e.hourly,
            }));
            verdicts.extend(rejected_verdicts);
            return Ok(RegionSelection {
                chosen: choice(&chosen),
                verdicts,
            });
        }

        if accepted.is_empty() {
            return Err(InventoryError::NoSite {
                verdicts: rejected_verdicts.collect(),
            });
        }
        let mut verdicts: Vec<SiteVerdict> = accepted
            .iter()
            .enumerate()
            .map(|(i, e)| SiteVerdict {
                site: e.site.clone(),
                country: e.country.clone(),
                accepted: true,
                rank: Some(i + 1),
                reasons: vec![rank_reason(i, &accepted, fallback.is_empty())],
                stock_level: e.stock_level.clone(),
                hourly_usd_total: e.hourly,
            })
            .collect();
        verdicts.extend(rejected_verdicts);
        Ok(RegionSelection {
            chosen: choice(&accepted[0]),
            verdicts,
        })
    }

    /// Resolves plans, drops zero counts, adds up demands on the same plan.
    fn merge_demands(&self, demands: &[NodeDemand]) -> Result<Vec<Demand<'_>>, InventoryError> {
        let mut merged: Vec<Demand<'_>> = Vec::new();
        for d in demands {
            let offer = self.known_plan(&d.plan)?;
            if d.count == 0 {
                continue;
            }
            match merged.iter_mut().find(|m| m.offer.slug == offer.slug) {
                Some(m) => m.count += d.count,
                None => merged.push(Demand {
                    offer,
                    count: d.count,
                }),
            }
        }
        if merged.is_empty() {
            return Err(InventoryError::NoDemand);
        }
        Ok(merged)
    }
}

fn normalize_site(site: &str) -> String {
    site.trim().to_ascii_uppercase()
}

fn round_cents(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn evaluate(site: &str, demands: &[Demand<'_>], fallback: &[String]) -> Evaluation {
    let mut rejections = Vec::new();
    let mut country = None;
    let mut stock_level: Option<StockLevel> = None;
    let mut hourly = Some(0.0);
    let mut monthly = Some(0.0);
    for d in demands {
        let plan = &d.offer.slug;
        let Some(offer) = d.offer.site(site) else {
            rejections.push(format!("{plan} is not offered in {site}"));
            hourly = None;
            monthly = None;
            continue;
        };
        if country.is_none() && !offer.country.is_empty() {
            country = Some(offer.country.clone());
        }
        if !offer.in_stock {
            rejections.push(format!(
                "{plan} is not in stock in {site} (listed as available only)"
            ));
        } else if offer.stock_level == StockLevel::Unavailable {
            rejections.push(format!(
                "{plan} is listed in stock in {site} but its stock level is unavailable"
            ));
        }
        if stock_level
            .as_ref()
            .is_none_or(|worst| offer.stock_level.rank() < worst.rank())
        {
            stock_level = Some(offer.stock_level.clone());
        }
        let count = f64::from(d.count);
        hourly = hourly.zip(offer.hourly_usd).map(|(t, p)| t + p * count);
        monthly = monthly.zip(offer.monthly_usd).map(|(t, p)| t + p * count);
    }
    Evaluation {
        site: site.to_owned(),
        country,
        rejections,
        stock_level: stock_level.unwrap_or(StockLevel::Unknown),
        hourly: hourly.map(round_cents),
        monthly: monthly.map(round_cents),
        fallback_position: fallback.iter().position(|s| s == site),
    }
}

/// The ranking order: fallback position, stock level, hourly price, name.
fn compare(a: &Evaluation, b: &Evaluation) -> Ordering {
    compare_fallback(a, b)
        .then_with(|| b.stock_level.rank().cmp(&a.stock_level.rank()))
        .then_with(|| compare_price(a.hourly, b.hourly))
        .then_with(|| a.site.cmp(&b.site))
}

fn compare_fallback(a: &Evaluation, b: &Evaluation) -> Ordering {
    match (a.fallback_position, b.fallback_position) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn compare_price(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn price(p: Option<f64>) -> String {
    p.map_or_else(|| "no price".to_owned(), |p| format!("${p:.2}/h"))
}

/// Why the site at `index` is ranked there, relative to the one before it.
fn rank_reason(index: usize, ranked: &[Evaluation], no_fallback: bool) -> String {
    let this = &ranked[index];
    let ordinal = ordinal(index + 1);
    if index == 0 {
        return if this.fallback_position.is_some() {
            format!("ranked {ordinal}: first qualifying site in --fallback-regions order")
        } else if no_fallback {
            format!(
                "ranked {ordinal}: most stock, then lowest price ({})",
                price(this.hourly)
            )
        } else {
            format!(
                "ranked {ordinal}: no site in --fallback-regions qualifies; most stock, then \
                 lowest price ({})",
                price(this.hourly)
            )
        };
    }
    let prev = &ranked[index - 1];
    if compare_fallback(prev, this) == Ordering::Less {
        return if this.fallback_position.is_some() {
            format!(
                "ranked {ordinal}: after {} in --fallback-regions order",
                prev.site
            )
        } else {
            format!(
                "ranked {ordinal}: not in --fallback-regions, so after {}",
                prev.site
            )
        };
    }
    if prev.stock_level.rank() != this.stock_level.rank() {
        return format!(
            "ranked {ordinal}: after {}, which has more stock ({} vs {})",
            prev.site, prev.stock_level, this.stock_level
        );
    }
    if compare_price(prev.hourly, this.hourly) == Ordering::Less {
        return format!(
            "ranked {ordinal}: after {}, which is cheaper ({} vs {} for all nodes)",
            prev.site,
            price(prev.hourly),
            price(this.hourly)
        );
    }
    format!(
        "ranked {ordinal}: after {} (same stock and price; alphabetical)",
        prev.site
    )
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn choice(e: &Evaluation) -> SiteChoice {
    SiteChoice {
        site: e.site.clone(),
        country: e.country.clone(),
        stock_level: e.stock_level.clone(),
        hourly_usd_total: e.hourly,
        monthly_usd_total: e.monthly,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::SiteOffer;

    /// One country group: (country, stock level, available, in_stock, $/h, $/month).
    type Group<'a> = (
        &'a str,
        Option<&'a str>,
        &'a [&'a str],
        &'a [&'a str],
        f64,
        f64,
    );

    fn offer(slug: &str, groups: &[Group<'_>]) -> PlanOffer {
        let mut sites = Vec::new();
        for (country, level, available, in_stock, hour, month) in groups {
            for site in *available {
                sites.push(SiteOffer {
                    site: (*site).to_owned(),
                    country: (*country).to_owned(),
                    in_stock: in_stock.contains(site),
                    stock_level: level
                        .map_or(StockLevel::Unknown, |l| StockLevel::from(l.to_owned())),
                    hourly_usd: Some(*hour),
                    monthly_usd: Some(*month),
                });
            }
        }
        PlanOffer {
            slug: slug.to_owned(),
            name: slug.replace('-', "."),
            sites,
            drives: Vec::new(),
            ipxe: None,
        }
    }

    /// Modeled on the real `GET /plans` (May 2025): ASH and MIA offered but not in stock for
    /// c2-small-x86, FRA unavailable, BGT low.
    fn catalogue() -> InventoryManager {
        InventoryManager::new(vec![
            offer(
                "c2-small-x86",
                &[
                    (
                        "United States",
                        Some("high"),
                        &["CHI", "ASH", "DAL", "MIA2", "LAX", "NYC", "MIA"],
                        &["CHI", "DAL", "MIA2", "LAX", "NYC"],
                        0.21,
                        146.0,
                    ),
                    ("Germany", Some("unavailable"), &["FRA"], &[], 0.21, 146.0),
                    ("Colombia", Some("low"), &["BGT"], &["BGT"], 0.30, 208.0),
                    ("Brazil", Some("high"), &["SAO2"], &["SAO2"], 0.25, 180.0),
                    (
                        "Mexico",
                        Some("unavailable"),
                        &["MEX2"],
                        &["MEX2"],
                        0.22,
                        150.0,
                    ),
                ],
            ),
            offer(
                "m4-metal-small",
                &[
                    (
                        "United States",
                        Some("medium"),
                        &["MIA2", "DAL", "ASH", "LAX", "NYC"],
                        &["DAL", "ASH", "NYC"],
                        0.40,
                        292.0,
                    ),
                    ("Brazil", Some("low"), &["SAO2"], &["SAO2"], 0.55, 400.0),
                ],
            ),
            offer(
                "c3-large-x86",
                &[(
                    "United States",
                    None,
                    &["ASH", "DAL"],
                    &["ASH"],
                    0.80,
                    584.0,
                )],
            ),
        ])
    }

    fn request(demands: &[(&str, u32)], fallback: &[&str]) -> RegionRequest {
        RegionRequest {
            demands: demands
                .iter()
                .map(|(p, c)| NodeDemand::new(*p, *c))
                .collect(),
            fallback_order: fallback.iter().map(|s| (*s).to_owned()).collect(),
            pinned_site: None,
        }
    }

    fn verdict<'a>(sel: &'a [SiteVerdict], site: &str) -> &'a SiteVerdict {
        sel.iter()
            .find(|v| v.site == site)
            .unwrap_or_else(|| panic!("no verdict for {site}"))
    }

    #[test]
    fn first_fallback_site_in_stock_wins() {
        let sel = catalogue()
            .select_region(&request(
                &[("c2-small-x86", 3)],
                &["MIA2", "DAL", "ASH", "LAX"],
            ))
            .unwrap();
        assert_eq!(sel.chosen.site, "MIA2");
        assert_eq!(sel.chosen.country.as_deref(), Some("United States"));
        assert_eq!(sel.chosen.stock_level, StockLevel::High);
        assert_eq!(sel.chosen.hourly_usd_total, Some(0.63));
        assert_eq!(sel.chosen.monthly_usd_total, Some(438.0));

        let v = &sel.verdicts;
        assert_eq!(v[0].site, "MIA2");
        assert_eq!(
            v[0].reasons,
            ["ranked 1st: first qualifying site in --fallback-regions order"]
        );
        assert_eq!(v[1].site, "DAL");
        assert_eq!(v[1].rank, Some(2));
        assert_eq!(
            v[1].reasons,
            ["ranked 2nd: after MIA2 in --fallback-regions order"]
        );
        // ASH is in the fallback order but only available: rejected, never ranked.
        let ash = verdict(v, "ASH");
        assert!(!ash.accepted);
        assert_eq!(ash.rank, None);
        assert_eq!(
            ash.reasons,
            ["c2-small-x86 is not in stock in ASH (listed as available only)"]
        );
        assert_eq!(verdict(v, "LAX").rank, Some(3));
        // Unlisted sites come after the listed ones: by stock, then price, then name.
        let unlisted: Vec<&str> = v[3..]
            .iter()
            .filter(|v| v.accepted)
            .map(|v| v.site.as_str())
            .collect();
        assert_eq!(unlisted, ["CHI", "NYC", "SAO2", "BGT"]);
        assert_eq!(
            verdict(v, "CHI").reasons,
            ["ranked 4th: not in --fallback-regions, so after LAX"]
        );
        assert_eq!(
            verdict(v, "NYC").reasons,
            ["ranked 5th: after CHI (same stock and price; alphabetical)"]
        );
        assert_eq!(
            verdict(v, "SAO2").reasons,
            ["ranked 6th: after NYC, which is cheaper ($0.63/h vs $0.75/h for all nodes)"]
        );
        assert_eq!(
            verdict(v, "BGT").reasons,
            ["ranked 7th: after SAO2, which has more stock (high vs low)"]
        );
        assert!(
            verdict(v, "FRA").reasons[0].contains("not in stock in FRA"),
            "{:?}",
            verdict(v, "FRA")
        );
        assert_eq!(
            verdict(v, "MEX2").reasons,
            ["c2-small-x86 is listed in stock in MEX2 but its stock level is unavailable"]
        );
        // Accepted first (by rank), then rejected.
        let first_rejected = v.iter().position(|v| !v.accepted).unwrap();
        assert!(v[first_rejected..].iter().all(|v| !v.accepted));
        assert_eq!(
            v[first_rejected].site, "ASH",
            "listed rejected sites come first"
        );
    }

    #[test]
    fn every_plan_must_be_in_stock() {
        let sel = catalogue()
            .select_region(&request(
                &[("c2-small-x86", 3), ("m4-metal-small", 2)],
                &["MIA2", "SAO", "DAL", "ASH", "LAX"],
            ))
            .unwrap();
        assert_eq!(sel.chosen.site, "DAL");
        assert_eq!(
            sel.chosen.stock_level,
            StockLevel::Medium,
            "the worst level of the two plans"
        );
        assert_eq!(sel.chosen.hourly_usd_total, Some(1.43));
        let v = &sel.verdicts;
        assert_eq!(
            verdict(v, "MIA2").reasons,
            ["m4-metal-small is not in stock in MIA2 (listed as available only)"]
        );
        assert_eq!(
            verdict(v, "SAO").reasons,
            [
                "c2-small-x86 is not offered in SAO",
                "m4-metal-small is not offered in SAO"
            ]
        );
        assert_eq!(verdict(v, "SAO").country, None);
        assert_eq!(
            verdict(v, "ASH").reasons,
            ["c2-small-x86 is not in stock in ASH (listed as available only)"]
        );
        assert_eq!(
            verdict(v, "CHI").reasons,
            ["m4-metal-small is not offered in CHI"]
        );
        let accepted: Vec<&str> = v
            .iter()
            .filter(|v| v.accepted)
            .map(|v| v.site.as_str())
            .collect();
        assert_eq!(accepted, ["DAL", "NYC", "SAO2"]);
        assert_eq!(
            verdict(v, "NYC").reasons,
            ["ranked 2nd: not in --fallback-regions, so after DAL"]
        );
        assert_eq!(
            verdict(v, "SAO2").reasons,
            ["ranked 3rd: after NYC, which has more stock (medium vs low)"]
        );
    }

    #[test]
    fn without_fallback_order_stock_then_price_then_name() {
        let sel = catalogue()
            .select_region(&request(&[("c2-small-x86", 1)], &[]))
            .unwrap();
        let ranked: Vec<&str> = sel
            .verdicts
            .iter()
            .filter(|v| v.rank.is_some())
            .map(|v| v.site.as_str())
            .collect();
        assert_eq!(ranked, ["CHI", "DAL", "LAX", "MIA2", "NYC", "SAO2", "BGT"]);
        assert_eq!(sel.chosen.site, "CHI");
        assert_eq!(
            sel.verdicts[0].reasons,
            ["ranked 1st: most stock, then lowest price ($0.21/h)"]
        );
    }

    #[test]
    fn unknown_stock_level_ranks_below_low() {
        let mut inv = catalogue();
        inv.offers.push(offer(
            "x-test",
            &[
                ("A", None, &["AAA"], &["AAA"], 0.10, 70.0),
                ("B", Some("low"), &["BBB"], &["BBB"], 0.90, 650.0),
            ],
        ));
        let sel = inv.select_region(&request(&[("x-test", 1)], &[])).unwrap();
        assert_eq!(sel.chosen.site, "BBB");
        assert_eq!(sel.verdicts[1].site, "AAA");
        assert_eq!(sel.verdicts[1].stock_level, StockLevel::Unknown);
        assert_eq!(
            sel.verdicts[1].reasons,
            ["ranked 2nd: after BBB, which has more stock (low vs unknown)"]
        );
    }

    #[test]
    fn fallback_that_does_not_qualify_is_explained() {
        let sel = catalogue()
            .select_region(&request(&[("c2-small-x86", 1)], &["ASH", "FRA"]))
            .unwrap();
        assert_eq!(sel.chosen.site, "CHI");
        assert!(sel.verdicts[0].reasons[0].contains("no site in --fallback-regions qualifies"));
    }

    #[test]
    fn pinned_site_must_qualify() {
        let mut req = request(&[("c2-small-x86", 3)], &["MIA2", "DAL"]);
        req.pinned_site = Some("ash".into());
        let err = catalogue().select_region(&req).unwrap_err();
        assert_eq!(
            err,
            InventoryError::SiteUnavailable {
                site: "ASH".into(),
                reasons: vec![
                    "c2-small-x86 is not in stock in ASH (listed as available only)".into()
                ],
            }
        );
        assert!(
            err.to_string()
                .starts_with("site ASH cannot take this cluster: ")
        );

        req.pinned_site = Some("SAO".into());
        let err = catalogue().select_region(&req).unwrap_err();
        assert_eq!(
            err,
            InventoryError::SiteUnavailable {
                site: "SAO".into(),
                reasons: vec!["c2-small-x86 is not offered in SAO".into()],
            }
        );
    }

    #[test]
    fn pinned_site_wins_over_the_fallback_order() {
        let mut req = request(&[("c2-small-x86", 3)], &["MIA2", "DAL"]);
        req.pinned_site = Some("bgt".into());
        let sel = catalogue().select_region(&req).unwrap();
        assert_eq!(sel.chosen.site, "BGT");
        assert_eq!(sel.chosen.stock_level, StockLevel::Low);
        assert_eq!(sel.verdicts[0].rank, Some(1));
        assert_eq!(
            sel.verdicts[0].reasons,
            ["ranked 1st: BGT is the pinned site"]
        );
        let mia2 = verdict(&sel.verdicts, "MIA2");
        assert!(mia2.accepted);
        assert_eq!(mia2.rank, None);
        assert!(mia2.reasons[0].contains("pinned to BGT"));
    }

    #[test]
    fn unknown_plan_lists_the_known_ones() {
        let err = catalogue()
            .select_region(&request(&[("c9-huge", 1)], &[]))
            .unwrap_err();
        assert_eq!(
            err,
            InventoryError::UnknownPlan {
                plan: "c9-huge".into(),
                known: vec![
                    "c2-small-x86".into(),
                    "c3-large-x86".into(),
                    "m4-metal-small".into()
                ],
            }
        );
        assert!(err.to_string().contains("c2-small-x86, c3-large-x86"));
    }

    #[test]
    fn nothing_qualifies() {
        let err = catalogue()
            .select_region(&request(&[("c3-large-x86", 1), ("c2-small-x86", 2)], &[]))
            .unwrap_err();
        let InventoryError::NoSite { verdicts } = &err else {
            panic!("{err:?}");
        };
        assert!(verdicts.iter().all(|v| !v.accepted && v.rank.is_none()));
        assert_eq!(
            verdict(verdicts, "ASH").reasons,
            ["c2-small-x86 is not in stock in ASH (listed as available only)"]
        );
        assert_eq!(
            verdict(verdicts, "DAL").reasons,
            ["c3-large-x86 is not in stock in DAL (listed as available only)"]
        );
        assert!(
            err.to_string()
                .starts_with("no site has every requested plan in stock: ")
        );
    }

    #[test]
    fn demands_merge_and_zero_counts_are_ignored() {
        let inv = catalogue();
        // Same plan for control plane and workers: 3 + 2 nodes priced together.
        let sel = inv
            .select_region(&request(
                &[
                    ("c2-small-x86", 3),
                    ("c2.small.x86", 2),
                    ("c3-large-x86", 0),
                ],
                &["MIA2"],
            ))
            .unwrap();
        assert_eq!(sel.chosen.site, "MIA2");
        assert_eq!(sel.chosen.hourly_usd_total, Some(1.05));
        assert_eq!(
            inv.select_region(&request(&[("c2-small-x86", 0)], &[])),
            Err(InventoryError::NoDemand)
        );
        // An unknown plan is an error even with a zero count.
        assert!(matches!(
            inv.select_region(&request(&[("nope", 0)], &[])),
            Err(InventoryError::UnknownPlan { .. })
        ));
    }

    #[test]
    fn default_cluster_request() {
        let req = RegionRequest::cluster("c2-small-x86", 3, "m4-metal-small", 2);
        assert_eq!(req.fallback_order, ["MIA2", "DAL", "ASH", "LAX"]);
        let sel = catalogue().select_region(&req).unwrap();
        assert_eq!(sel.chosen.site, "DAL");
    }

    #[test]
    fn snapshot_holds_both_plans() {
        let inv = catalogue();
        let snap = inv.snapshot("c2-small-x86", "M4-METAL-SMALL").unwrap();
        assert!(snap.taken_at > 1_700_000_000);
        assert_eq!(snap.control_plane.slug, "c2-small-x86");
        assert_eq!(snap.worker.slug, "m4-metal-small");
        assert!(matches!(
            inv.snapshot("c2-small-x86", "zzz"),
            Err(InventoryError::UnknownPlan { .. })
        ));
    }

    #[test]
    fn selection_serializes_to_json() {
        let sel = catalogue()
            .select_region(&request(&[("c2-small-x86", 1)], &["MIA2"]))
            .unwrap();
        let json = serde_json::to_value(&sel).unwrap();
        assert_eq!(json["chosen"]["site"], "MIA2");
        assert_eq!(json["chosen"]["stock_level"], "high");
        assert_eq!(json["chosen"]["hourly_usd_total"], 0.21);
        assert_eq!(json["verdicts"][0]["rank"], 1);
        assert_eq!(json["verdicts"][0]["accepted"], true);
        let back: RegionSelection = serde_json::from_value(json).unwrap();
        assert_eq!(back, sel);

        let err = InventoryError::SiteUnavailable {
            site: "ASH".into(),
            reasons: vec!["x".into()],
        };
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            serde_json::json!({"error":"site_unavailable","site":"ASH","reasons":["x"]})
        );
    }

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd",
                "101st", "111th"
            ]
        );
    }
}
