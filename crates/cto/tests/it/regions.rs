//! `cto regions` and `--auto-region`: ranking by fallback order, stock, price, with reasons.

use serde_json::{Value, json};

use crate::harness::{LabProcess, User, describe, events, run};

#[test]
fn regions_ranks_in_stock_sites_and_explains_the_others() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let out = run(
        user.cto(Some(&lab)),
        &[
            "regions",
            "--plan",
            "c2-small-x86",
            "--nodes",
            "3",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["chosen"]["site"], "MIA2", "{v}");
    let sites = v["sites"].as_array().unwrap();
    let ash = sites
        .iter()
        .find(|s| s["site"] == "ASH")
        .expect("ASH listed");
    assert_eq!(ash["accepted"], false);
    assert!(ash["reasons"].to_string().contains("not in stock"), "{ash}");
    let ranked: Vec<(&str, u64)> = sites
        .iter()
        .filter(|s| s["accepted"] == true)
        .map(|s| (s["site"].as_str().unwrap(), s["rank"].as_u64().unwrap()))
        .collect();
    assert!(ranked.contains(&("MIA2", 1)), "{ranked:?}");
    assert!(ranked.contains(&("DAL", 2)), "{ranked:?}");
}

#[test]
fn auto_region_skips_a_site_without_stock_and_says_why() {
    let lab = LabProcess::start(json!({"out_of_stock_sites": ["MIA2"]}));
    let user = User::new();
    let state = user.state_dir("ar");
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--cluster-name",
            "ar",
            "--auto-region",
            "--dry-run",
            "--output",
            "json",
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let evs = events(&out);
    let selected = evs
        .iter()
        .find(|e| e["event"] == "region_selected")
        .expect("region_selected");
    assert_eq!(selected["site"], "DAL", "{selected}");
    assert!(!selected["reason"].as_str().unwrap().is_empty());
    let mia2 = selected["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["site"] == "MIA2")
        .unwrap();
    assert_eq!(mia2["accepted"], false);
    let plan = evs.iter().find(|e| e["event"] == "plan").expect("plan");
    assert_eq!(plan["servers"].as_array().unwrap().len(), 3);
    assert!(plan["hourly_usd"].as_f64().unwrap() > 0.0);
    assert!(lab.hostnames().is_empty(), "a dry run orders nothing");
    assert!(!state.exists(), "a dry run leaves no state behind");
}
