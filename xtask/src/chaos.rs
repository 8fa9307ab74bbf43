//! `cargo xtask chaos --kills N --seed S [--nodes K] [--stop-after STEP] [--faults SPEC]`:
//! kill-anywhere convergence of the real `cto install`.
//!
//! 1. Builds `cto`, starts `cto lab serve` out of process (rate limits lifted; `--faults` passed
//!    through), and runs one uninterrupted probe install of a throwaway cluster to learn the
//!    timeline: which steps run and how many events each prints. The probe is destroyed.
//! 2. Draws N kill points from the seed across those steps — a step, an event index inside it
//!    and a delay of 0–250 ms after that event, or "right after a `server_ordered` event" — so
//!    kills land inside steps (during orders, waits, Talos calls), not only between them.
//! 3. Runs `cto install --output json --yes` and SIGKILLs it at each point in turn, resuming
//!    with `--resume` each time. After every kill: the checkpoint parses, the lab holds at most
//!    K servers with no duplicate hostname, and `secrets.yaml` (once generated) is byte-identical
//!    to the first one.
//! 4. A last uninterrupted `--resume` must reach the end: `Complete`, the `--stop-after` step, or
//!    the first step this build does not implement yet (exit 1 "not implemented yet", which
//!    counts as the end). Then exactly K servers with distinct hostnames, and `cto destroy
//!    --yes` must leave 0.
//!
//! Prints one summary line, e.g. `chaos: 50/50 converged, 0 duplicates, 0 servers after
//! destroy, seed 1`. Exit status 0 only when everything held.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::labproc::Lab;

/// The API key the chaos run uses against its lab.
const KEY: &str = "chaos-key";
/// The cluster under test, and the throwaway one that measures the timeline.
const CLUSTER: &str = "chaos";
const PROBE: &str = "probe";
/// No single run may take longer than this.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Options of `cargo xtask chaos`.
#[derive(Debug)]
struct Options {
    kills: usize,
    seed: u64,
    nodes: u32,
    stop_after: Option<String>,
    faults: Option<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        kills: 10,
        seed: 1,
        nodes: 2,
        stop_after: None,
        faults: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--kills" => o.kills = value()?.parse().map_err(|e| format!("--kills: {e}"))?,
            "--seed" => o.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--nodes" => o.nodes = value()?.parse().map_err(|e| format!("--nodes: {e}"))?,
            "--stop-after" => o.stop_after = Some(value()?),
            "--faults" => o.faults = Some(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    Ok(o)
}

/// splitmix64: a small, well-mixed generator, so a seed always draws the same kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// Where to kill: the first event at or after `(step, index)` (the index counts the events
/// printed since that step started in the current run; reaching the step's `step_finished`
/// or any later step also triggers), or the first `server_ordered` event, then `delay` later.
#[derive(Debug, Clone)]
struct KillPoint {
    step: u64,
    index: u64,
    after_order: bool,
    delay: Duration,
}

/// How one run of `cto install` ended.
struct RunEnd {
    killed: bool,
    code: Option<i32>,
    events: Vec<Value>,
}

struct Chaos {
    bin: PathBuf,
    dir: PathBuf,
    lab: Lab,
    options: Options,
}

/// Runs `cargo xtask chaos ARGS`; true when every kill converged.
pub fn run(args: &[String]) -> bool {
    let options = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "xtask chaos: {e}\nusage: cargo xtask chaos --kills N --seed S [--nodes K] [--stop-after STEP] [--faults SPEC]"
            );
            return false;
        }
    };
    match chaos(options) {
        Ok(ok) => ok,
        Err(e) => {
            eprintln!("xtask chaos: {e}");
            false
        }
    }
}

fn build_cto() -> Result<PathBuf, String> {
    crate::labproc::build_cto(false)
}

fn start_lab(bin: &Path, dir: &Path, faults: Option<&str>) -> Result<Lab, String> {
    // No address block: the lab claims a free one (docs/lab.md, "Address blocks").
    let config =
        r#"{"time_scale": 0.002, "reads_per_minute": 100000, "writes_per_minute": 100000}"#;
    Lab::start(bin, dir, config, faults)
}

fn get(url: &str, path: &str) -> Result<Value, String> {
    crate::labproc::get(url, path, KEY)
}

/// Hostnames of every live server in the lab (with repeats). Retried: the lab may be injecting
/// faults into this very API.
fn hostnames(lab: &Lab) -> Result<Vec<String>, String> {
    let mut attempt = 0;
    let body = loop {
        match get(&lab.url, "/servers?page%5Bsize%5D=100") {
            Ok(body) => break body,
            Err(e) if attempt >= 30 => return Err(e),
            Err(_) => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    let data = body["data"]
        .as_array()
        .ok_or_else(|| format!("no data in {body}"))?;
    let mut names: Vec<String> = data
        .iter()
        .filter_map(|s| s["attributes"]["hostname"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

fn duplicates(names: &[String]) -> usize {
    names.len() - names.iter().collect::<BTreeSet<_>>().len()
}

impl Chaos {
    fn cto(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("LATITUDE_API_KEY", KEY)
            .env("LATITUDE_PROJECT_ID", "proj_lab")
            .env("LATITUDE_API_URL", &self.lab.url)
            .env("HOME", &self.dir)
            .env("XDG_STATE_HOME", self.dir.join("xdg"))
            .env_remove("CTO_LOG")
            .stdin(Stdio::null());
        cmd
    }

    fn state(&self, cluster: &str) -> PathBuf {
        self.dir.join(cluster)
    }

    /// `cto install` (or `--resume` when a checkpoint exists) for `cluster`, killed at `kill`.
    fn install(&self, cluster: &str, kill: Option<&KillPoint>) -> Result<RunEnd, String> {
        let state = self.state(cluster);
        let mut cmd = self.cto();
        cmd.arg("install");
        if state.join("checkpoint.json").exists() {
            cmd.arg("--resume");
        } else {
            cmd.args(["--cluster-name", cluster, "--nodes"])
                .arg(self.options.nodes.to_string());
            if let Some(step) = &self.options.stop_after {
                cmd.args(["--stop-after", step]);
            }
        }
        cmd.arg("--state-dir")
            .arg(&state)
            .args(["--yes", "--output", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run cto install: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel::<Value>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Value>(&line)
                    && tx.send(event).is_err()
                {
                    break;
                }
            }
        });
        let started = Instant::now();
        let mut events = Vec::new();
        let mut step = 0u64;
        let mut index = 0u64;
        let mut kill_at: Option<Instant> = None;
        let mut killed = false;
        loop {
            let wait = kill_at
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(200));
            match rx.recv_timeout(wait) {
                Ok(event) => {
                    if event["event"] == "step_started" {
                        step = event["number"].as_u64().unwrap_or(step);
                        index = 0;
                    } else {
                        index += 1;
                    }
                    if let (Some(point), None) = (kill, kill_at) {
                        let ordered = point.after_order && event["event"] == "server_ordered";
                        let exact = step == point.step && index == point.index;
                        let late = step > point.step
                            || (step == point.step
                                && (index > point.index || event["event"] == "step_finished"));
                        if ordered || exact {
                            let delay = if ordered { Duration::ZERO } else { point.delay };
                            kill_at = Some(Instant::now() + delay);
                        } else if late {
                            // This run passed the point (a resumed step prints fewer events):
                            // kill at once, before the run can finish by itself.
                            kill_at = Some(Instant::now());
                        }
                    }
                    events.push(event);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if kill_at.is_some_and(|at| Instant::now() >= at) {
                // std's Child::kill is SIGKILL on Unix: no chance to clean up.
                let _ = child.kill();
                killed = true;
                break;
            }
            if started.elapsed() > RUN_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("cto install ran longer than {RUN_TIMEOUT:?}"));
            }
        }
        let status = child
            .wait()
            .map_err(|e| format!("waiting for cto install: {e}"))?;
        let _ = reader.join();
        while let Ok(event) = rx.try_recv() {
            events.push(event);
        }
        // Killed after it had already exited by itself: that was no kill.
        let killed = killed && status.code().is_none();
        Ok(RunEnd {
            killed,
            code: status.code(),
            events,
        })
    }

    /// The step a finished run of `cluster` reached, or why it did not finish.
    fn reached(&self, cluster: &str, end: &RunEnd) -> Result<String, String> {
        // The last step the checkpoint records as completed.
        let last_finished = std::fs::read(self.state(cluster).join("checkpoint.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|cp| {
                cp["completed"]
                    .as_array()
                    .and_then(|c| c.last())
                    .and_then(|s| s.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "none".to_owned());
        let finished = end.events.iter().find(|e| e["event"] == "finished");
        let failed = end.events.iter().find(|e| e["event"] == "failed");
        match (end.code, finished, failed) {
            (Some(0), Some(_), _) => Ok(last_finished),
            (Some(1), _, Some(f))
                if f["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("not implemented yet")) =>
            {
                Ok(last_finished)
            }
            (code, _, failed) => Err(format!(
                "the install did not converge (exit {code:?}): {}",
                failed
                    .and_then(|f| f["message"].as_str())
                    .unwrap_or("no failure event")
            )),
        }
    }

    fn destroy(&self, cluster: &str) -> Result<(), String> {
        let out = self
            .cto()
            .args(["destroy", "--yes", "--state-dir"])
            .arg(self.state(cluster))
            .output()
            .map_err(|e| format!("cannot run cto destroy: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "cto destroy failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

fn chaos(options: Options) -> Result<bool, String> {
    let bin = build_cto()?;
    let dir = std::env::temp_dir().join(format!(
        "cto-chaos-{}-seed{}",
        std::process::id(),
        options.seed
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let lab = start_lab(&bin, &dir, options.faults.as_deref())?;
    let chaos = Chaos {
        bin,
        dir: dir.clone(),
        lab,
        options,
    };
    let result = run_chaos(&chaos);
    drop(chaos);
    if result.as_ref().is_ok_and(|ok| *ok) {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("xtask chaos: state kept in {}", dir.display());
    }
    result
}

fn run_chaos(chaos: &Chaos) -> Result<bool, String> {
    let started = Instant::now();
    let o = &chaos.options;
    let k = o.nodes as usize;

    // 1. The timeline: events per step of one uninterrupted install.
    let probe = chaos.install(PROBE, None)?;
    let probe_reached = chaos
        .reached(PROBE, &probe)
        .map_err(|e| format!("probe install: {e}"))?;
    let mut per_step: BTreeMap<u64, u64> = BTreeMap::new();
    let mut step = 0;
    for event in &probe.events {
        if event["event"] == "step_started" {
            step = event["number"].as_u64().unwrap_or(0);
        }
        if step > 0 && event["event"] != "failed" && event["event"] != "finished" {
            *per_step.entry(step).or_default() += 1;
        }
    }
    chaos.destroy(PROBE)?;
    eprintln!(
        "xtask chaos: the install runs {} step(s) up to {probe_reached}; {} kill point(s) from seed {}",
        per_step.len(),
        o.kills,
        o.seed
    );

    // 2. Kill points, in timeline order.
    let mut rng = Rng(o.seed);
    let steps: Vec<(u64, u64)> = per_step.into_iter().collect();
    let last_step = steps.last().map_or(0, |(s, _)| *s);
    let mut points: Vec<KillPoint> = (0..o.kills)
        .map(|_| {
            if rng.below(100) < 15 {
                KillPoint {
                    step: 2,
                    index: 0,
                    after_order: true,
                    delay: Duration::ZERO,
                }
            } else {
                let (step, events) = steps[rng.below(steps.len() as u64) as usize];
                // Before the step's own `step_finished`, so the kill lands inside it; in the
                // last step, within its first half (a run prints a varying number of progress
                // events, and a kill point beyond the last one would come after the end).
                let span = if step == last_step {
                    events / 2
                } else {
                    events.saturating_sub(1)
                };
                KillPoint {
                    step,
                    index: rng.below(span.max(1)),
                    after_order: false,
                    delay: Duration::from_millis(rng.below(251)),
                }
            }
        })
        .collect();
    points.sort_by_key(|p| (p.step, p.index, p.delay));

    // 3. Kill, check, resume. When an install has converged while kill points remain (a kill
    //    landed after its last step), the rest go to a fresh install of another cluster, so
    //    every point is a real kill.
    let mut remaining: std::collections::VecDeque<KillPoint> = points.into();
    let mut converged_kills = 0usize;
    let mut kills_done = 0usize;
    let mut worst_duplicates = 0usize;
    let mut after = 0usize;
    let mut reached = String::from("none");
    let mut problems: Vec<String> = Vec::new();
    let mut round = 0;
    let mut misses = 0;
    while !remaining.is_empty() && problems.is_empty() {
        round += 1;
        let cluster = if round == 1 {
            CLUSTER.to_owned()
        } else {
            format!("{CLUSTER}{round}")
        };
        let state = chaos.state(&cluster);
        let mut secrets: Option<Vec<u8>> = None;
        let mut round_kills = 0usize;
        while let Some(point) = remaining.front().cloned() {
            let end = chaos.install(&cluster, Some(&point))?;
            if !end.killed {
                // The run ended by itself before the kill point: it must have converged.
                chaos
                    .reached(&cluster, &end)
                    .map_err(|e| format!("{cluster}: a run that was not killed: {e}"))?;
                if round_kills == 0 {
                    // Even a fresh install ended before this point: try it on another fresh
                    // install, a few times at most.
                    // After three misses the point moves to the start of the step before, so
                    // every drawn point ends up as a real kill (and the count stays N/N).
                    misses += 1;
                    if misses >= 3 {
                        if let Some(front) = remaining.front_mut() {
                            *front = KillPoint {
                                step: front.step.saturating_sub(1).max(1),
                                index: 0,
                                after_order: false,
                                delay: Duration::ZERO,
                            };
                        }
                        misses = 0;
                    }
                }
                break;
            }
            remaining.pop_front();
            misses = 0;
            round_kills += 1;
            kills_done += 1;
            let before = problems.len();
            let checkpoint = state.join("checkpoint.json");
            if checkpoint.exists() {
                match std::fs::read(&checkpoint)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string()))
                {
                    Ok(cp) if cp["version"].is_u64() => {}
                    Ok(_) => {
                        problems.push(format!("kill {kills_done}: the checkpoint has no version"))
                    }
                    Err(e) => problems.push(format!(
                        "kill {kills_done}: the checkpoint does not parse: {e}"
                    )),
                }
            }
            if let Ok(now) = std::fs::read(state.join("secrets.yaml")) {
                match &secrets {
                    None => secrets = Some(now),
                    Some(first) if *first != now => {
                        problems.push(format!("kill {kills_done}: secrets.yaml changed"));
                    }
                    Some(_) => {}
                }
            }
            let names = hostnames(&chaos.lab)?;
            let dups = duplicates(&names);
            worst_duplicates = worst_duplicates.max(dups);
            if names.len() > k || dups > 0 {
                problems.push(format!(
                    "kill {kills_done}: {} server(s) in the lab ({dups} duplicate(s)): {names:?}",
                    names.len()
                ));
            }
            if problems.len() == before {
                converged_kills += 1;
            }
        }

        // 4. The last, uninterrupted run must reach the end.
        let last = chaos.install(&cluster, None)?;
        reached = match chaos.reached(&cluster, &last) {
            Ok(step) => step,
            Err(e) => {
                problems.push(format!("{cluster}: final resume: {e}"));
                String::from("none")
            }
        };
        if reached != probe_reached {
            problems.push(format!(
                "{cluster} reached {reached}, but an uninterrupted install reaches {probe_reached}"
            ));
        }
        if let (Some(first), Ok(now)) = (&secrets, std::fs::read(state.join("secrets.yaml")))
            && *first != now
        {
            problems.push(format!("{cluster}: secrets.yaml changed by the final run"));
        }
        let names = hostnames(&chaos.lab)?;
        let dups = duplicates(&names);
        worst_duplicates = worst_duplicates.max(dups);
        let ours = names
            .iter()
            .filter(|n| n.starts_with(&format!("{cluster}-")))
            .count();
        if names.len() != k || dups > 0 || ours != k {
            problems.push(format!(
                "{cluster}: expected exactly {k} servers with distinct hostnames, the lab has {names:?}"
            ));
        }
        chaos.destroy(&cluster)?;
        after = hostnames(&chaos.lab)?.len();
        if after != 0 {
            problems.push(format!(
                "{after} server(s) left after cto destroy of {cluster}"
            ));
        }
    }
    if !problems.is_empty() {
        converged_kills = converged_kills.min(kills_done.saturating_sub(1));
    }
    for p in &problems {
        eprintln!("xtask chaos: {p}");
    }
    println!(
        "chaos: {converged_kills}/{kills_done} converged, {worst_duplicates} duplicates, {after} servers after destroy, seed {} (nodes {k}, reached {reached}, {round} install(s), {:.0}s)",
        o.seed,
        started.elapsed().as_secs_f64()
    );
    Ok(problems.is_empty() && kills_done > 0 && converged_kills == kills_done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let args: Vec<String> = ["--kills", "5", "--seed", "2", "--nodes", "3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = parse(&args).unwrap();
        assert_eq!((o.kills, o.seed, o.nodes), (5, 2, 3));
        assert!(parse(&["--kills".to_string()]).is_err());
        assert!(parse(&["--bogus".to_string()]).is_err());
    }

    #[test]
    fn the_seed_decides() {
        let (mut a, mut b) = (Rng(7), Rng(7));
        assert!((0..100).all(|_| a.next() == b.next()));
        assert!((0..100).all(|_| Rng(9).below(10) < 10));
    }
}
