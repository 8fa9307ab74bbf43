//! `cargo xtask bench --nodes N [--control-planes 1|3] [--seed S] [--baseline sequential]
//! [--time-scale F] [--baseline-time-scale F] [--profile P]`: how close a real `cto install` comes to the
//! physical limit of the lab's world.
//!
//! 1. Builds `cto` in release mode and times `cto --help` (median of 20 runs).
//! 2. Starts `cto lab serve` with Latitude's real rate limits (60 reads, 20 writes per
//!    modelled minute), the seed and the time scale, and runs the real installer in the same
//!    scaled time (`CTO_TIME_SCALE`): first `--stop-after generating-configs`, then `--resume`
//!    to the end, so the resume overhead (resumed start → the lab's first new request) is
//!    measured inside an ordinary install. Each process is reaped with `wait4(2)` for its peak
//!    RSS and CPU time.
//! 3. Asks the lab for its request counters (`/_lab/stats`) and its lower bound for this world
//!    (`/_lab/critical-path`): a zero-latency installer doing all independent work in parallel
//!    within the rate limits (see docs/performance.md).
//! 4. With `--baseline sequential`, builds the same world again (same seed, so the same
//!    machines with the same durations) and runs `cto` with `CTO_BASELINE=sequential`: one node
//!    at a time, fixed 5 s polling, the way comparable tools work. Its time scale is smaller
//!    (chosen so it takes about two real minutes, or `--baseline-time-scale`), which ratios do
//!    not depend on.
//!
//! Prints one JSON object on stdout (the installer's figures at the top level, the baseline's
//! under `baseline_sequential`); progress goes to stderr. Besides the totals, each run says
//! where its time went: `steps` (when each step finished, modelled seconds from the start,
//! beside the step-ordered bound's time for it), `milestones` (when the lab saw the last node
//! in maintenance, installed, registered, Ready, …, beside the DAG bound's) and `lab_cpu_s`
//! (the emulator's own CPU: when it nears the wall time, the lab, not the installer, is slow). Exit status 0 when every run
//! completed; targets are judged by a reader of the numbers (docs/performance.md), never here.

use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::labproc::{self, Lab};

/// The API key of the bench's labs.
const KEY: &str = "bench-key";
/// The cluster every bench run installs.
const CLUSTER: &str = "bench";
/// The step after which the installer's run is stopped and resumed.
const RESUME_AFTER: &str = "generating-configs";
/// How long (real seconds) the sequential baseline should take when its time scale is chosen
/// automatically.
const BASELINE_TARGET_REAL_S: f64 = 120.0;
/// Rough modelled seconds one node costs a sequential installer (deploy, boot, status lag,
/// install), and the platform after it: only used to choose the baseline's time scale.
const SEQUENTIAL_PER_NODE_S: f64 = 560.0;
const SEQUENTIAL_PLATFORM_S: f64 = 600.0;

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone)]
struct Options {
    nodes: u32,
    control_planes: u32,
    seed: u64,
    baseline: bool,
    time_scale: f64,
    baseline_time_scale: Option<f64>,
    profile: Option<String>,
}

const USAGE: &str = "usage: cargo xtask bench --nodes N [--control-planes 1|3] [--seed S] [--baseline sequential] [--time-scale F] [--baseline-time-scale F] [--profile P]";

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        nodes: 0,
        control_planes: 1,
        seed: 1,
        baseline: false,
        time_scale: 0.02,
        baseline_time_scale: None,
        profile: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--nodes" => options.nodes = value()?.parse().map_err(|e| format!("--nodes: {e}"))?,
            "--control-planes" => {
                options.control_planes = value()?
                    .parse()
                    .map_err(|e| format!("--control-planes: {e}"))?
            }
            "--seed" => options.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--baseline" => match value()?.as_str() {
                "sequential" => options.baseline = true,
                other => {
                    return Err(format!(
                        "--baseline {other:?}: the only baseline is `sequential`"
                    ));
                }
            },
            "--time-scale" => options.time_scale = scale(&value()?, "--time-scale")?,
            "--baseline-time-scale" => {
                options.baseline_time_scale = Some(scale(&value()?, "--baseline-time-scale")?)
            }
            "--profile" => options.profile = Some(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if options.nodes == 0 {
        return Err("--nodes is required (at least 1)".into());
    }
    if options.nodes > 250 {
        return Err("--nodes: the lab hosts at most 250 servers per site".into());
    }
    if options.control_planes != 1 && options.control_planes != 3 {
        return Err("--control-planes must be 1 or 3".into());
    }
    if options.nodes < options.control_planes {
        return Err("--nodes must be at least --control-planes".into());
    }
    Ok(options)
}

fn scale(raw: &str, flag: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(format!("{flag} must be a number in (0, 1], got {raw:?}")),
    }
}

/// Runs `cargo xtask bench ARGS`; true when every run completed and the JSON was printed.
pub fn run(args: &[String]) -> bool {
    let options = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("xtask bench: {e}\n{USAGE}");
            return false;
        }
    };
    match bench(&options) {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            true
        }
        Err(e) => {
            eprintln!("xtask bench: {e}");
            false
        }
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Which installer a world is run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `cto` as shipped, stopped once and resumed.
    Cto,
    /// `CTO_BASELINE=sequential`, in one go.
    Sequential,
}

/// What `wait4(2)` says about a finished child.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    code: Option<i32>,
    peak_rss_kb: i64,
    cpu_s: f64,
}

/// Waits for `child` and returns its exit code, peak resident set and CPU time (user +
/// system). `std` has no API for a child's resource usage, hence `wait4`.
#[allow(unsafe_code)]
fn wait_with_usage(child: Child) -> Result<Usage, String> {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain old data for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unreaped child (its `Child` handle is consumed here and never
    // waited on by std), and both out-pointers point to live, writable locals.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    drop(child);
    if reaped != pid {
        return Err(format!(
            "wait4({pid}) failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Usage {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        // Linux reports ru_maxrss in kibibytes.
        peak_rss_kb: usage.ru_maxrss,
        cpu_s: seconds(usage.ru_utime) + seconds(usage.ru_stime),
    })
}

/// One measured `cto` process.
struct Process {
    started_ms: i64,
    wall: Duration,
    usage: Usage,
    /// `(step, unix ms)` of every `step_finished` event, as the bench saw it.
    finished: Vec<(String, i64)>,
}

/// One world (a lab) and the installer runs against it.
struct World {
    dir: PathBuf,
    lab: Lab,
    time_scale: f64,
}

impl World {
    fn create(
        bin: &Path,
        dir: PathBuf,
        options: &Options,
        time_scale: f64,
    ) -> Result<World, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        // Latitude's own rate limits (60 reads and 20 writes a modelled minute): the default.
        let config = json!({
            // No address block: the lab claims a free one.
            "time_scale": time_scale,
            "seed": options.seed,
        });
        let lab = Lab::start(bin, &dir, &config.to_string(), None)?;
        Ok(World {
            dir,
            lab,
            time_scale,
        })
    }

    fn cto(&self, bin: &Path, mode: Mode) -> Command {
        let mut cmd = Command::new(bin);
        cmd.env("LATITUDE_API_KEY", KEY)
            .env("LATITUDE_PROJECT_ID", "proj_lab")
            .env("LATITUDE_API_URL", &self.lab.url)
            .env("HOME", self.dir.join("home"))
            .env("XDG_STATE_HOME", self.dir.join("xdg"))
            .env("CTO_TIME_SCALE", self.time_scale.to_string())
            .env_remove("CTO_LOG")
            .env_remove("CTO_TIMEOUT_SCALE")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
        match mode {
            Mode::Cto => cmd.env_remove("CTO_BASELINE"),
            Mode::Sequential => cmd.env("CTO_BASELINE", "sequential"),
        };
        cmd
    }

    /// Runs `cto install ARGS` to its end and measures it; a non-zero exit is an error that
    /// quotes the installer's last words.
    fn install(&self, bin: &Path, mode: Mode, args: &[String]) -> Result<Process, String> {
        let log = self.dir.join(format!("cto-{}.stderr", unix_ms()));
        let stderr =
            std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let mut cmd = self.cto(bin, mode);
        cmd.arg("install")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr);
        let started_ms = unix_ms();
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        // The JSON event stream: drained so the installer never blocks; the last step seen is
        // shown as progress.
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let tty = std::io::stderr().is_terminal();
        let reader = std::thread::spawn(move || {
            let mut last = String::new();
            let mut finished = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(event) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let step = event["step"].as_str().unwrap_or_default().to_owned();
                if event["event"] == "step_started" {
                    if tty {
                        eprint!("\rxtask bench:   {step:<32}");
                    }
                    last = step;
                } else if event["event"] == "step_finished" {
                    finished.push((step, unix_ms()));
                }
            }
            if tty {
                eprintln!();
            }
            (last, finished)
        });
        let usage = wait_with_usage(child)?;
        let wall = started.elapsed();
        let (last_step, finished) = reader.join().unwrap_or_default();
        if usage.code != Some(0) {
            let mut text = String::new();
            let _ = std::fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut text));
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "cto install {} exited with {:?} in {last_step} after {:.1} s:\n{}",
                args.join(" "),
                usage.code,
                wall.as_secs_f64(),
                tail.join("\n")
            ));
        }
        Ok(Process {
            started_ms,
            wall,
            usage,
            finished,
        })
    }

    fn get(&self, path: &str) -> Result<Value, String> {
        labproc::get(&self.lab.url, path, KEY)
    }
}

/// The flags of a fresh install of the bench cluster.
fn install_args(options: &Options, state: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--cluster-name".into(),
        CLUSTER.into(),
        "--nodes".into(),
        options.nodes.to_string(),
        "--control-planes".into(),
        options.control_planes.to_string(),
    ];
    if let Some(profile) = &options.profile {
        args.push("--profile".into());
        args.push(profile.clone());
    }
    args.extend(common_args(state));
    args
}

fn common_args(state: &Path) -> Vec<String> {
    vec![
        "--state-dir".into(),
        state.display().to_string(),
        "--yes".into(),
        "--output".into(),
        "json".into(),
    ]
}

/// Measures one world with one installer and returns its figures.
fn measure(
    bin: &Path,
    dir: PathBuf,
    options: &Options,
    mode: Mode,
    time_scale: f64,
) -> Result<Value, String> {
    let world = World::create(bin, dir, options, time_scale)?;
    let state = world.dir.join("state");
    let runs = match mode {
        Mode::Cto => {
            let mut first = install_args(options, &state);
            first.extend(["--stop-after".into(), RESUME_AFTER.into()]);
            let first = world.install(bin, mode, &first)?;
            let mut resume = vec!["--resume".to_owned()];
            resume.extend(common_args(&state));
            let second = world.install(bin, mode, &resume)?;
            vec![first, second]
        }
        Mode::Sequential => vec![world.install(bin, mode, &install_args(options, &state))?],
    };
    let start_ms = runs[0].started_ms;
    let end = &runs[runs.len() - 1];
    let wall_s = (end.started_ms - start_ms) as f64 / 1000.0 + end.wall.as_secs_f64();

    let stats = world.get(&format!("/_lab/stats?since_ms={start_ms}"))?;
    let bound = world.get("/_lab/critical-path")?;
    let critical_path_s = number(&bound, "dag_real_s")?;
    let step_ordered_s = number(&bound, "step_ordered_real_s")?;
    let resume_overhead_s = match mode {
        Mode::Cto => {
            let resumed = &runs[1];
            let after = world.get(&format!("/_lab/stats?since_ms={}", resumed.started_ms))?;
            after["first_request_ms"]
                .as_i64()
                .map(|first| (first - resumed.started_ms) as f64 / 1000.0)
        }
        Mode::Sequential => None,
    };
    let peak_rss_kb = runs.iter().map(|r| r.usage.peak_rss_kb).max().unwrap_or(0);
    let cpu_s: f64 = runs.iter().map(|r| r.usage.cpu_s).sum();
    let ratio = wall_s / critical_path_s;
    if ratio < 1.0 {
        eprintln!(
            "xtask bench: WARNING: wall {wall_s:.2} s is below the lab's lower bound {critical_path_s:.2} s: the critical-path model is wrong"
        );
    }
    let count = |name: &str| stats[name].as_u64().unwrap_or(0);
    let modelled_since_start = |ms: i64| round((ms - start_ms) as f64 / 1000.0 / time_scale, 1);
    // Where the time went: when each step finished, beside the step-ordered bound's time for
    // it, and when the lab saw each milestone's conditions, beside the DAG bound's.
    let mut steps = serde_json::Map::new();
    for (step, at) in runs.iter().flat_map(|r| r.finished.iter()) {
        let bound = bound["steps"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["step"] == step.as_str()))
            .map(|s| s["step_ordered_modelled_s"].clone())
            .unwrap_or(Value::Null);
        steps.insert(
            step.clone(),
            json!({"modelled_s": modelled_since_start(*at), "step_ordered_modelled_s": bound}),
        );
    }
    let conditions = world.get("/_lab/conditions")?;
    let seen = |prefix: &str, suffix: &str| {
        conditions["conditions"].as_array().and_then(|all| {
            all.iter()
                .filter(|c| {
                    c["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
                })
                .filter_map(|c| c["at_ms"].as_i64())
                .max()
        })
    };
    let mut milestones = Vec::new();
    for (name, prefix, suffix) in [
        ("all_talos_maintenance", "server/", "/talos_maintenance"),
        ("all_configs_applied", "server/", "/config_applied"),
        ("all_installed", "server/", "/installed"),
        ("bootstrapped", "cluster/", "/bootstrapped"),
        ("all_nodes_registered", "node/", "/registered"),
        ("all_nodes_ready", "node/", "/ready"),
        ("gitops_synced", "application/", "/healthy"),
        ("storage_ready", "pvc/", "/bound"),
    ] {
        let dag = bound["milestones"]
            .as_array()
            .and_then(|a| a.iter().find(|m| m["name"] == name))
            .map(|m| m["dag_modelled_s"].clone())
            .unwrap_or(Value::Null);
        milestones.push(json!({
            "name": name,
            "modelled_s": seen(prefix, suffix).map(modelled_since_start),
            "dag_modelled_s": dag,
        }));
    }
    // The lab's own CPU: when it nears the wall time, the lab, not the installer, is slow.
    let lab_cpu_s = match world.lab.kill() {
        Some(child) => wait_with_usage(child).map(|u| u.cpu_s).ok(),
        None => None,
    };
    Ok(json!({
        "wall_s": round(wall_s, 3),
        "critical_path_s": round(critical_path_s, 3),
        "ratio": round(ratio, 3),
        "step_ordered_path_s": round(step_ordered_s, 3),
        "step_ordered_ratio": round(wall_s / step_ordered_s, 3),
        "latitude_reads": count("latitude_reads"),
        "latitude_writes": count("latitude_writes"),
        "http_429": count("http_429"),
        "talos_calls": count("talos_calls"),
        "kube_requests": count("kube_requests"),
        "peak_rss_mb": round(peak_rss_kb as f64 / 1024.0, 1),
        "cpu_s": round(cpu_s, 2),
        "resume_overhead_s": resume_overhead_s.map(|s| round(s, 3)),
        "lab_cpu_s": lab_cpu_s.map(|s| round(s, 2)),
        "time_scale": time_scale,
        "modelled_wall_s": round(wall_s / time_scale, 1),
        "modelled_critical_path_s": round(critical_path_s / time_scale, 1),
        "steps": steps,
        "milestones": milestones,
    }))
}

fn number(v: &Value, field: &str) -> Result<f64, String> {
    v[field]
        .as_f64()
        .filter(|f| *f > 0.0)
        .ok_or_else(|| format!("the lab's critical path has no positive {field}: {v}"))
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// Median wall time of `cto --help` over 20 runs (after one warm-up), in milliseconds.
fn help_ms(bin: &Path) -> Result<f64, String> {
    let mut times = Vec::new();
    for i in 0..21 {
        let started = Instant::now();
        let out = Command::new(bin)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run cto --help: {e}"))?;
        if !out.success() {
            return Err(format!("cto --help exited with {out}"));
        }
        if i > 0 {
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// What the bench ran on.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned());
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu_model": model,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}

/// The baseline's time scale: the one asked for, or one that makes it take about
/// [`BASELINE_TARGET_REAL_S`] (never slower than the installer's own scale).
fn baseline_scale(options: &Options) -> f64 {
    options.baseline_time_scale.unwrap_or_else(|| {
        let modelled = f64::from(options.nodes) * SEQUENTIAL_PER_NODE_S + SEQUENTIAL_PLATFORM_S;
        (BASELINE_TARGET_REAL_S / modelled).min(options.time_scale)
    })
}

fn bench(options: &Options) -> Result<Value, String> {
    let bin = labproc::build_cto(true)?;
    let help = help_ms(&bin)?;
    let dir = std::env::temp_dir().join(format!("cto-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "xtask bench: {} nodes ({} control planes), seed {}, time scale {}",
        options.nodes, options.control_planes, options.seed, options.time_scale
    );
    let cto = measure(
        &bin,
        dir.join("cto"),
        options,
        Mode::Cto,
        options.time_scale,
    );
    let cto = match cto {
        Ok(v) => v,
        Err(e) => return Err(format!("{e}\n(state kept in {})", dir.display())),
    };
    let baseline = if options.baseline {
        let scale = baseline_scale(options);
        eprintln!("xtask bench: sequential baseline, same world, time scale {scale}");
        match measure(
            &bin,
            dir.join("sequential"),
            options,
            Mode::Sequential,
            scale,
        ) {
            Ok(v) => Some(v),
            Err(e) => return Err(format!("{e}\n(state kept in {})", dir.display())),
        }
    } else {
        None
    };
    let _ = std::fs::remove_dir_all(&dir);

    let mut report = json!({
        "nodes": options.nodes,
        "control_planes": options.control_planes,
        "seed": options.seed,
        "profile": options.profile.clone().unwrap_or_else(|| "standard".into()),
        "machine": machine(),
        "cto_help_ms": round(help, 2),
    });
    if let (Some(out), Some(fields)) = (report.as_object_mut(), cto.as_object()) {
        for (k, v) in fields {
            out.insert(k.clone(), v.clone());
        }
        if let Some(baseline) = baseline {
            out.insert("baseline_sequential".into(), baseline);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_the_documented_flags() {
        let o = parse(&args(
            "--nodes 50 --control-planes 3 --seed 9 --baseline sequential --time-scale 0.05",
        ))
        .unwrap();
        assert_eq!((o.nodes, o.control_planes, o.seed), (50, 3, 9));
        assert!(o.baseline);
        assert_eq!(o.time_scale, 0.05);
    }

    #[test]
    fn refuses_what_cannot_be_run() {
        for (bad, says) in [
            ("", "--nodes is required"),
            ("--nodes 2 --control-planes 3", "at least --control-planes"),
            ("--nodes 3 --control-planes 2", "1 or 3"),
            ("--nodes 3 --baseline parallel", "only baseline"),
            ("--nodes 3 --time-scale 0", "(0, 1]"),
            ("--nodes 3 --frobnicate", "unknown argument"),
            ("--nodes 300", "at most 250"),
        ] {
            let err = parse(&args(bad)).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_baseline_scale_shrinks_with_the_world() {
        let mut o = parse(&args("--nodes 3")).unwrap();
        assert_eq!(baseline_scale(&o), 0.02);
        o.nodes = 200;
        let s = baseline_scale(&o);
        let modelled = 200.0 * SEQUENTIAL_PER_NODE_S + SEQUENTIAL_PLATFORM_S;
        assert!((s * modelled - BASELINE_TARGET_REAL_S).abs() < 1e-6, "{s}");
        o.baseline_time_scale = Some(0.5);
        assert_eq!(baseline_scale(&o), 0.5);
    }
}
