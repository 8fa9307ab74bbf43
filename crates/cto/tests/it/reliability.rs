//! Reliability end to end: the real `cto` against a lab that injects faults (`cto lab serve
//! --faults`). Transient faults are survived unaided; permanent ones stop the install with exit
//! 1 naming the server or node, and `--resume` completes once the fault is lifted (the lab is
//! restarted over the same world without it). Nothing is ever billed twice. Plus the secret
//! hygiene scan of a full run.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{KEY, User, cto_bin, describe, events, files_under, http_get, run};

/// A lab process over a world directory that outlives it, so the lab can be restarted with
/// other faults (or none) and find the same servers.
struct Lab {
    child: Child,
    url: String,
    world: PathBuf,
}

impl Lab {
    fn start(world: &Path, faults: &str) -> Lab {
        Lab::listen(world, faults, "127.0.0.1:0")
    }

    /// The lab claims a free address block itself; a restarted one keeps its world's.
    fn listen(world: &Path, faults: &str, listen: &str) -> Lab {
        let config = world.with_extension("json");
        std::fs::write(
            &config,
            serde_json::json!({"time_scale": 0.002}).to_string(),
        )
        .unwrap();
        let mut cmd = Command::new(cto_bin());
        cmd.args(["lab", "serve", "--listen", listen, "--state"])
            .arg(world)
            .arg("--config")
            .arg(&config);
        if !faults.is_empty() {
            cmd.args(["--faults", faults]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("the lab printed nothing").unwrap();
        let url = first
            .strip_prefix("LATITUDE_API_URL=")
            .unwrap_or_else(|| panic!("unexpected first line from the lab: {first}"))
            .to_owned();
        std::thread::spawn(move || for _ in lines {});
        Lab {
            child,
            url,
            world: world.to_owned(),
        }
    }

    /// Stops this lab and starts another over the same world and address with `faults` (the
    /// checkpoint remembers the API URL, so it must not change).
    fn restart(mut self, faults: &str) -> Lab {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let listen = self.url.trim_start_matches("http://").to_owned();
        Lab::listen(&self.world.clone(), faults, &listen)
    }

    /// `cto` for `user`, pointed at this lab.
    fn cto(&self, user: &User) -> Command {
        let mut cmd = user.cto(None);
        cmd.env("LATITUDE_API_KEY", KEY)
            .env("LATITUDE_PROJECT_ID", "proj_lab")
            .env("LATITUDE_API_URL", &self.url);
        cmd
    }

    /// Every live server's hostname, sorted (duplicates kept).
    fn hostnames(&self) -> Vec<String> {
        let body = http_get(&self.url, "/servers?page%5Bsize%5D=100", Some(KEY));
        let mut names: Vec<String> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["attributes"]["hostname"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }

    /// Watches the number of live servers (`/_lab/stats`, unauthenticated and unmetered) in the
    /// background; the guard's `max` is the most ever seen at once.
    fn watch_servers(&self) -> Watch {
        let url = self.url.clone();
        let max = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (max.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(n) = std::panic::catch_unwind(|| http_get(&url, "/_lab/stats", None))
                    .ok()
                    .and_then(|v| v["servers"].as_u64())
                {
                    m.fetch_max(n, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Watch { max, stop }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Watch {
    max: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Watch {
    fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A world directory for a test's lab (its address block is kept across its restarts).
fn world(user: &User) -> PathBuf {
    user.home.path().join("world")
}

/// The install ran all 22 steps to `Complete`.
fn assert_went_all_the_way(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", describe(out));
}

/// What a failed run told the user: stderr, and in JSON mode the `failed` event's message and
/// next command.
fn failure(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    for e in events(out).iter().filter(|e| e["event"] == "failed") {
        text.push_str(e["message"].as_str().unwrap_or(""));
        text.push('\n');
        text.push_str(e["next"].as_str().unwrap_or(""));
    }
    text
}

fn install_args<'a>(cluster: &'a str, state: &'a str, nodes: &'a str) -> Vec<&'a str> {
    vec![
        "install",
        "--cluster-name",
        cluster,
        "--nodes",
        nodes,
        "--state-dir",
        state,
        "--yes",
        "--output",
        "json",
    ]
}

fn resume(lab: &Lab, user: &User, state: &str) -> Output {
    run(
        lab.cto(user),
        &[
            "install",
            "--resume",
            "--state-dir",
            state,
            "--output",
            "json",
        ],
    )
}

fn assert_exactly(lab: &Lab, expected: &[&str]) {
    let names = lab.hostnames();
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "duplicate hostnames: {names:?}");
    assert_eq!(names, expected, "servers in the lab");
}

fn ordered(events: &[Value], hostname: &str) -> usize {
    events
        .iter()
        .filter(|e| e["event"] == "server_ordered" && e["hostname"] == hostname)
        .count()
}

#[test]
fn ten_percent_errors_on_every_api_are_survived_unaided() {
    let user = User::new();
    let world = world(&user);
    let lab = Lab::start(
        &world,
        "latitude.5xx=0.1,latitude.429=0.1,talos.5xx=0.1,kube.5xx=0.1,kube.429=0.1,faults.seed=1",
    );
    let state = user.state_dir("t");
    let s = state.to_str().unwrap();
    let out = run(lab.cto(&user), &install_args("t", s, "3"));
    assert_went_all_the_way(&out);
    let stats = http_get(&lab.url, "/_lab/stats", None);
    eprintln!("lab counters under faults: {stats}");
    // The test's own look at the servers must not draw an injected 429 itself.
    let lab = lab.restart("");
    assert_exactly(&lab, &["t-cp-1", "t-worker-1", "t-worker-2"]);
}

#[test]
fn a_failed_deployment_is_replaced_once_after_it_is_gone_and_the_install_completes() {
    let user = User::new();
    let world = world(&user);
    let lab = Lab::start(&world, "server.fail=r-worker-1");
    let watch = lab.watch_servers();
    let state = user.state_dir("r");
    let s = state.to_str().unwrap();
    let out = run(lab.cto(&user), &install_args("r", s, "2"));
    assert_went_all_the_way(&out);
    let events = events(&out);
    assert_eq!(ordered(&events, "r-worker-1"), 2, "{}", describe(&out));
    assert_eq!(ordered(&events, "r-cp-1"), 1);
    assert!(
        events.iter().any(|e| e["event"] == "warning"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("r-worker-1") && m.contains("failed_deployment"))),
        "the replacement is announced: {}",
        describe(&out)
    );
    assert!(
        watch.max() <= 2,
        "never more servers than nodes at once (seen {})",
        watch.max()
    );
    assert_exactly(&lab, &["r-cp-1", "r-worker-1"]);
    let checkpoint: Value =
        serde_json::from_slice(&std::fs::read(state.join("checkpoint.json")).unwrap()).unwrap();
    let worker = checkpoint["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["hostname"] == "r-worker-1")
        .unwrap();
    assert_eq!(worker["replaced"].as_array().unwrap().len(), 1, "{worker}");
    assert_eq!(worker["replaced"][0]["gone"], true);
    assert_eq!(worker["replaced"][0]["status"], "failed_deployment");
}

#[test]
fn a_server_that_keeps_failing_stops_naming_it_and_resumes_order_no_more_replacements() {
    let user = User::new();
    let world = world(&user);
    let lab = Lab::start(&world, "server.fail=p-worker-1:always");
    let watch = lab.watch_servers();
    let state = user.state_dir("p");
    let s = state.to_str().unwrap();
    let out = run(lab.cto(&user), &install_args("p", s, "2"));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = failure(&out);
    assert!(
        stderr.contains("p-worker-1") && stderr.contains("failed_deployment"),
        "{stderr}"
    );
    assert!(stderr.contains("cto install --resume"), "{stderr}");
    // The first server and two replacements, one after the other.
    assert_eq!(
        ordered(&events(&out), "p-worker-1"),
        3,
        "{}",
        describe(&out)
    );
    assert!(watch.max() <= 2, "seen {} servers at once", watch.max());
    assert_exactly(&lab, &["p-cp-1", "p-worker-1"]);
    drop(watch);

    // The cap is over the install's life: resuming, even with the fault lifted, orders no
    // fourth server for the node (the third is still failed) and says so again.
    let lab = lab.restart("");
    for _ in 0..2 {
        let out = resume(&lab, &user, s);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        assert_eq!(
            ordered(&events(&out), "p-worker-1"),
            0,
            "{}",
            describe(&out)
        );
        let stderr = failure(&out);
        assert!(
            stderr.contains("p-worker-1") && stderr.contains("over its life"),
            "{stderr}"
        );
        assert_exactly(&lab, &["p-cp-1", "p-worker-1"]);
    }
}

#[test]
fn a_node_that_never_boots_stops_naming_it_and_resume_completes_once_it_boots() {
    let user = User::new();
    let world = world(&user);
    let lab = Lab::start(&world, "node.noboot=n-worker-1");
    let state = user.state_dir("n");
    let s = state.to_str().unwrap();
    let mut cmd = lab.cto(&user);
    // 45 minutes of maintenance-mode wait become about 5 seconds.
    cmd.env("CTO_TIMEOUT_SCALE", "0.002");
    let out = run(cmd, &install_args("n", s, "2"));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = failure(&out);
    assert!(
        stderr.contains("WaitingTalosMaintenance") && stderr.contains("n-worker-1"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("n-cp-1 at"),
        "only the node that did not boot is named: {stderr}"
    );
    assert!(stderr.contains("cto install --resume"), "{stderr}");

    let lab = lab.restart("");
    let out = resume(&lab, &user, s);
    assert_went_all_the_way(&out);
    assert_exactly(&lab, &["n-cp-1", "n-worker-1"]);
}

#[test]
fn stock_that_vanishes_before_the_order_stops_naming_site_and_plan_and_bills_nothing() {
    let user = User::new();
    let world = world(&user);
    let lab = Lab::start(&world, "stock.vanish=DAL");
    let state = user.state_dir("v");
    let s = state.to_str().unwrap();
    let mut args = install_args("v", s, "2");
    args.extend(["--region", "DAL"]);
    let out = run(lab.cto(&user), &args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = failure(&out);
    for needle in ["DAL", "c2-small-x86", "cto regions", "--region"] {
        assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    }
    assert_exactly(&lab, &[]);

    let lab = lab.restart("");
    let out = resume(&lab, &user, s);
    assert_went_all_the_way(&out);
    assert_exactly(&lab, &["v-cp-1", "v-worker-1"]);
    let servers: Vec<String> = events(&out)
        .iter()
        .filter(|e| e["event"] == "server_ordered")
        .map(|e| e["site"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(servers, ["DAL", "DAL"], "the approved site is kept");
}

#[test]
fn secrets_never_reach_files_logs_or_output_and_secret_files_are_private() {
    const API_KEY: &str = "cto-hygiene-key-5c0ffee9d1b7a3";
    const TOKEN: &str = "cto-hygiene-token-8e4f2a6b0d97";
    let user = User::new();
    let world = world(&user);
    let lab = Lab::start(&world, "");
    let state = user.state_dir("h");
    let s = state.to_str().unwrap();
    let help = run(user.cto(None), &["install", "--help"]);
    let has_token = String::from_utf8_lossy(&help.stdout).contains("--gitops-token");
    let cmd = |lab: &Lab| {
        let mut cmd = lab.cto(&user);
        cmd.env("LATITUDE_API_KEY", API_KEY);
        if has_token {
            cmd.env("CTO_GITOPS_TOKEN", TOKEN);
        }
        cmd
    };
    let mut outputs = vec![run(cmd(&lab), &install_args("h", s, "2"))];
    assert_went_all_the_way(&outputs[0]);
    outputs.push(run(cmd(&lab), &["status", "--state-dir", s]));
    outputs.push(run(
        cmd(&lab),
        &["status", "--state-dir", s, "--output", "json"],
    ));

    let secrets: Vec<&str> = if has_token {
        vec![API_KEY, TOKEN]
    } else {
        vec![API_KEY]
    };
    let scan = |what: &str, bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        for secret in &secrets {
            assert!(!text.contains(secret), "{secret} leaked into {what}");
        }
    };
    for out in &outputs {
        scan("stdout", &out.stdout);
        scan("stderr", &out.stderr);
    }
    let files = files_under(&state);
    assert!(files.iter().any(|f| f.ends_with("cto.log")), "{files:?}");
    for file in &files {
        scan(&file.display().to_string(), &std::fs::read(file).unwrap());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700, "the state directory is private");
        for file in &files {
            assert_eq!(mode(file), 0o600, "{} is private", file.display());
        }
    }

    // Destroying prints and writes nothing secret either.
    let out = run(cmd(&lab), &["destroy", "--state-dir", s, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    scan("destroy stdout", &out.stdout);
    scan("destroy stderr", &out.stderr);
    for file in files_under(&state) {
        scan(&file.display().to_string(), &std::fs::read(&file).unwrap());
    }
    assert_exactly(&lab, &[]);

    // Debug of the configuration types never shows the key.
    let key = metal::secret::ApiKey::new(API_KEY);
    let config = metal::latitude::ClientConfig::new("https://api.latitude.sh", key.clone(), "p");
    for debug in [format!("{key:?}"), format!("{config:?}")] {
        assert!(!debug.contains(API_KEY), "{debug}");
    }
}

#[test]
fn lab_faults_are_refused_when_malformed() {
    let dir = tempfile::tempdir().unwrap();
    for (spec, named) in [
        ("latitude.5xx=2", "latitude.5xx=2"),
        ("frobnicate=1", "frobnicate"),
        ("server.fail=Bad_Host", "Bad_Host"),
    ] {
        let out = Command::new(cto_bin())
            .args(["lab", "serve", "--listen", "127.0.0.1:0", "--state"])
            .arg(dir.path())
            .args(["--faults", spec])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{spec}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{spec}: {stderr}");
    }
    // The same grammar in a config file.
    let config = dir.path().join("lab.json");
    std::fs::write(&config, r#"{"faults": "talos.latency=soon"}"#).unwrap();
    let out = Command::new(cto_bin())
        .args(["lab", "serve", "--listen", "127.0.0.1:0", "--state"])
        .arg(dir.path().join("w"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("soon"));
}
