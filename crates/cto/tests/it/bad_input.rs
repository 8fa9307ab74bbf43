//! Bad input: each case gets its exit code, a message naming the offending value, and no server
//! ordered.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{LabProcess, User, describe, run};

struct Case {
    name: &'static str,
    args: &'static [&'static str],
    /// Remove the API key from the environment.
    no_key: bool,
    /// Use this API key instead of the one the lab accepts.
    key: Option<&'static str>,
    code: i32,
    mentions: &'static [&'static str],
    /// The lab's configuration (JSON); cases sharing one share a lab.
    lab: &'static str,
    /// What is prepared before the command runs (and which state directory it gets).
    setup: Setup,
}

/// A "billion laughs" config patch: 365 bytes, nine levels of nine aliases, 9^9 scalars once
/// expanded. It must be refused while parsing, with bounded memory.
const ALIAS_BOMB: &str = "machine:\n  nodeLabels:\n    a: &a [l,l,l,l,l,l,l,l,l]\n    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";

/// The defaults of the fields most cases leave alone.
const BASE: Case = Case {
    name: "",
    args: &[],
    no_key: false,
    key: None,
    code: 2,
    mentions: &[],
    lab: "{}",
    setup: Setup::Fresh,
};

/// What a case finds in its state directory. Every setup that needs a checkpoint runs step 1
/// only (`--stop-after validating-prerequisites`), so nothing is ever ordered.
#[derive(Clone, Copy)]
enum Setup {
    /// A state directory that does not exist yet.
    Fresh,
    /// The state directory's parent is a regular file.
    UnderAFile,
    /// The state directory would be in /proc, where nobody can create directories.
    UnderProc,
    /// A directory holding someone's photos.
    Foreign,
    /// A checkpoint after step 1.
    Step1,
    /// A checkpoint after step 1, cut to a third of its length.
    Truncated,
    /// Garbage instead of JSON.
    Garbage,
    /// A checkpoint from a future format version.
    FutureVersion,
    /// A checkpoint with a field this build does not know.
    UnknownField,
    /// A checkpoint after step 1 and a lock file left by a process that died.
    StaleLock,
    /// A checkpoint whose lock is held by a live `cto install` (stuck in step 1 against a lab
    /// that answers after 30 s).
    LiveLock,
}

/// The state directory of a case and, for [`Setup::LiveLock`], the process holding the lock
/// (and the slow lab it talks to).
struct Prepared {
    state: PathBuf,
    holder: Option<Child>,
    _slow_lab: Option<LabProcess>,
}

impl Setup {
    fn prepare(self, user: &User, lab: &LabProcess, state: PathBuf) -> Prepared {
        let step1 = |state: &Path| {
            let out = run(
                user.cto(Some(lab)),
                &[
                    "install",
                    "--cluster-name",
                    "bad",
                    "--state-dir",
                    state.to_str().unwrap(),
                    "--stop-after",
                    "validating-prerequisites",
                    "--yes",
                ],
            );
            assert_eq!(out.status.code(), Some(0), "setup: {}", describe(&out));
            state.join("checkpoint.json")
        };
        let rewrite = |state: &Path, change: &dyn Fn(String) -> String| {
            let path = step1(state);
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, change(text)).unwrap();
        };
        let state = match self {
            Setup::Fresh => state,
            Setup::UnderAFile => {
                let file = user.home.path().join("not-a-dir");
                std::fs::write(&file, b"x").unwrap();
                file.join("state")
            }
            Setup::UnderProc => PathBuf::from("/proc/cto-bad-input-state"),
            Setup::Foreign => {
                let dir = user.home.path().join("photos");
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("cat.jpg"), b"meow").unwrap();
                dir
            }
            Setup::Step1 => {
                step1(&state);
                state
            }
            Setup::Truncated => {
                rewrite(&state, &|t| t[..t.len() / 3].to_owned());
                state
            }
            Setup::Garbage => {
                rewrite(&state, &|_| "{not json at all".to_owned());
                state
            }
            Setup::FutureVersion => {
                rewrite(&state, &|t| {
                    t.replacen("\"version\": 1", "\"version\": 7", 1)
                });
                state
            }
            Setup::UnknownField => {
                rewrite(&state, &|t| t.replacen('{', "{\"surprise\": 1,", 1));
                state
            }
            Setup::StaleLock => {
                step1(&state);
                std::fs::write(
                    state.join("cto.lock"),
                    "pid 999999 since 2020-01-01T00:00:00Z\n",
                )
                .unwrap();
                state
            }
            Setup::LiveLock => {
                let slow = LabProcess::start(json!({"faults": "latitude.latency=30s"}));
                let mut cmd = user.cto(Some(&slow));
                let child = cmd
                    .args(["install", "--cluster-name", "bad", "--yes", "--state-dir"])
                    .arg(&state)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let deadline = Instant::now() + Duration::from_secs(30);
                while !state.join("checkpoint.json").exists() {
                    assert!(Instant::now() < deadline, "the lock holder never started");
                    std::thread::sleep(Duration::from_millis(50));
                }
                return Prepared {
                    state,
                    holder: Some(child),
                    _slow_lab: Some(slow),
                };
            }
        };
        Prepared {
            state,
            holder: None,
            _slow_lab: None,
        }
    }
}

const CASES: &[Case] = &[
    Case {
        name: "zero nodes",
        args: &["--nodes", "0"],
        no_key: false,
        code: 2,
        mentions: &["--nodes", "'0'"],
        ..BASE
    },
    Case {
        name: "too many replicas",
        args: &["--storage-replicas", "5"],
        no_key: false,
        code: 2,
        mentions: &["--storage-replicas", "'5'"],
        ..BASE
    },
    Case {
        name: "replicas above storage nodes",
        args: &["--nodes", "2", "--storage-replicas", "2"],
        no_key: false,
        code: 2,
        mentions: &["--storage-replicas", "'2'"],
        ..BASE
    },
    Case {
        name: "three replicas on two nodes (one storage node)",
        args: &["--nodes", "2", "--storage-replicas", "3"],
        no_key: false,
        code: 2,
        mentions: &["--storage-replicas", "'3'", "storage"],
        ..BASE
    },
    Case {
        name: "two control planes",
        args: &["--control-planes", "2"],
        no_key: false,
        code: 2,
        mentions: &["--control-planes", "'2'"],
        ..BASE
    },
    Case {
        name: "invalid cluster name",
        args: &["--cluster-name", "Bad_Name"],
        no_key: false,
        code: 2,
        mentions: &["--cluster-name", "Bad_Name"],
        ..BASE
    },
    Case {
        name: "region and auto-region",
        args: &["--region", "DAL", "--auto-region"],
        no_key: false,
        code: 2,
        mentions: &["--region", "--auto-region"],
        ..BASE
    },
    Case {
        name: "unknown step",
        args: &["--stop-after", "making-coffee"],
        no_key: false,
        code: 2,
        mentions: &["making-coffee"],
        ..BASE
    },
    Case {
        name: "bad talos version",
        args: &["--talos-version", "1.11"],
        no_key: false,
        code: 2,
        mentions: &["--talos-version", "1.11"],
        ..BASE
    },
    Case {
        name: "unknown profile",
        args: &["--profile", "huge"],
        no_key: false,
        code: 2,
        mentions: &["--profile", "huge"],
        ..BASE
    },
    Case {
        name: "non-numeric nodes",
        args: &["--nodes", "three"],
        no_key: false,
        code: 2,
        mentions: &["three"],
        ..BASE
    },
    Case {
        name: "unknown plan",
        args: &["--cp-plan", "z9-imaginary-x86"],
        no_key: false,
        code: 3,
        mentions: &["z9-imaginary-x86"],
        ..BASE
    },
    Case {
        name: "site without stock",
        args: &["--region", "ASH"],
        no_key: false,
        code: 3,
        mentions: &["ASH", "c2-small-x86"],
        ..BASE
    },
    Case {
        name: "unknown site",
        args: &["--region", "XYZ"],
        no_key: false,
        code: 3,
        mentions: &["XYZ"],
        ..BASE
    },
    Case {
        name: "missing API key",
        args: &[],
        no_key: true,
        code: 3,
        mentions: &["LATITUDE_API_KEY"],
        ..BASE
    },
    // --- more flags out of range or malformed (exit 2) ---
    Case {
        name: "negative nodes",
        args: &["--nodes", "-1"],
        mentions: &["'-1'"],
        ..BASE
    },
    Case {
        name: "too many nodes",
        args: &["--nodes", "1000"],
        mentions: &["--nodes", "'1000'"],
        ..BASE
    },
    Case {
        name: "zero control planes",
        args: &["--control-planes", "0"],
        mentions: &["--control-planes", "'0'"],
        ..BASE
    },
    Case {
        name: "more control planes than nodes",
        args: &["--control-planes", "3", "--nodes", "2"],
        mentions: &["--nodes", "'2'", "--control-planes 3"],
        ..BASE
    },
    Case {
        name: "zero replicas",
        args: &["--storage-replicas", "0"],
        mentions: &["--storage-replicas", "'0'"],
        ..BASE
    },
    Case {
        name: "cluster name too long for a hostname",
        args: &["--cluster-name", "abcdefghijabcdefghijabcdefghij12345"],
        mentions: &["--cluster-name", "abcdefghijabcdefghijabcdefghij12345"],
        ..BASE
    },
    Case {
        name: "empty cluster name",
        args: &["--cluster-name", ""],
        mentions: &["--cluster-name"],
        ..BASE
    },
    Case {
        name: "unsupported talos version",
        args: &["--talos-version", "v9.0.0"],
        mentions: &["--talos-version", "v9.0.0"],
        ..BASE
    },
    Case {
        name: "zero sync timeout",
        args: &["--sync-timeout", "0"],
        mentions: &["--sync-timeout", "'0'"],
        ..BASE
    },
    Case {
        name: "non-numeric sync timeout",
        args: &["--sync-timeout", "abc"],
        mentions: &["--sync-timeout", "abc"],
        ..BASE
    },
    Case {
        name: "empty fallback region",
        args: &["--fallback-regions", "MIA2,,DAL"],
        mentions: &["--fallback-regions"],
        ..BASE
    },
    Case {
        name: "malformed fallback region",
        args: &["--fallback-regions", "Mia 2"],
        mentions: &["--fallback-regions", "Mia 2"],
        ..BASE
    },
    Case {
        name: "unknown output format",
        args: &["--output", "yaml"],
        mentions: &["--output", "yaml"],
        ..BASE
    },
    Case {
        name: "storage disk is not a device path",
        args: &["--storage-disk", "sda"],
        mentions: &["--storage-disk", "sda"],
        ..BASE
    },
    Case {
        name: "image factory URL is not http",
        args: &["--image-factory-url", "ftp://factory.example"],
        mentions: &["--image-factory-url", "ftp://factory.example"],
        ..BASE
    },
    Case {
        name: "API key over plain HTTP to a remote host",
        args: &["--api-url", "http://api.example.com"],
        mentions: &["http://api.example.com", "https://"],
        ..BASE
    },
    Case {
        name: "malformed plan slug",
        args: &["--cp-plan", "C2 Small"],
        mentions: &["--cp-plan", "C2 Small"],
        ..BASE
    },
    // --- invalid patch files (exit 2, before anything is ordered) ---
    Case {
        name: "missing patch file",
        args: &["--config-patch", "@/nonexistent/patch.yaml"],
        mentions: &["--config-patch", "/nonexistent/patch.yaml"],
        ..BASE
    },
    Case {
        name: "patch that is not YAML",
        args: &["--config-patch", "machine: [unclosed"],
        mentions: &["--config-patch", "line 1"],
        ..BASE
    },
    Case {
        name: "patch with an unknown key",
        args: &["--config-patch", "machine:\n  bogusKey: 1"],
        mentions: &["--config-patch", "machine.bogusKey"],
        ..BASE
    },
    Case {
        name: "worker patch that turns workers into control planes",
        args: &["--config-patch-worker", "machine:\n  type: controlplane"],
        mentions: &["--config-patch-worker", "machine.type"],
        ..BASE
    },
    Case {
        name: "control-plane patch that turns control planes into workers",
        args: &["--config-patch-control-plane", "machine:\n  type: worker"],
        mentions: &["--config-patch-control-plane", "machine.type"],
        ..BASE
    },
    Case {
        name: "YAML alias bomb in a patch",
        args: &["--config-patch", ALIAS_BOMB],
        mentions: &["--config-patch", "aliases expand beyond"],
        ..BASE
    },
    Case {
        name: "patch file that is a device",
        args: &["--config-patch", "@/dev/zero"],
        mentions: &["--config-patch", "/dev/zero", "not a regular file"],
        ..BASE
    },
    Case {
        name: "patch file that is a directory",
        args: &["--config-patch", "@/"],
        mentions: &["--config-patch", "not a regular file"],
        ..BASE
    },
    Case {
        name: "cluster.ca override for every machine breaks the worker config",
        args: &[
            "--config-patch",
            "cluster:\n  ca:\n    crt: Y3J0\n    key: a2V5\n",
        ],
        mentions: &["--config-patch", "cluster.ca", "worker"],
        ..BASE
    },
    // --- URLs ---
    Case {
        name: "image factory over plain HTTP to a remote host",
        args: &["--image-factory-url", "http://example.com"],
        mentions: &["--image-factory-url", "http://example.com", "https://"],
        ..BASE
    },
    Case {
        name: "API URL on a name under .localhost",
        args: &["--api-url", "http://evil.localhost:9"],
        mentions: &["--api-url", "evil.localhost", "127.0.0.1"],
        ..BASE
    },
    Case {
        name: "API URL with userinfo",
        args: &["--api-url", "https://me:tok-91c2@api.latitude.sh"],
        mentions: &["--api-url", "***@api.latitude.sh", "user name or password"],
        ..BASE
    },
    Case {
        name: "GitOps repository URL with a token inside",
        args: &[
            "--gitops-repo",
            "https://me:tok-91c2@github.com/me/platform",
        ],
        mentions: &["--gitops-repo", "***@github.com", "CTO_GITOPS_TOKEN"],
        ..BASE
    },
    Case {
        name: "image factory URL with userinfo",
        args: &[
            "--image-factory-url",
            "https://tok-91c2@factory.example.net",
        ],
        mentions: &["--image-factory-url", "***@factory.example.net"],
        ..BASE
    },
    Case {
        name: "cluster name that is a path",
        args: &["--cluster-name", "../../x"],
        mentions: &["--cluster-name", "../../x"],
        ..BASE
    },
    // --- the world refuses (exit 3) ---
    Case {
        name: "unknown worker plan",
        args: &["--worker-plan", "z9-imaginary-x86"],
        code: 3,
        mentions: &["z9-imaginary-x86"],
        ..BASE
    },
    Case {
        name: "unknown project",
        args: &["--project", "proj_nope"],
        code: 3,
        mentions: &["proj_nope"],
        ..BASE
    },
    Case {
        name: "rejected API key",
        args: &[],
        code: 3,
        mentions: &["401", "LATITUDE_API_KEY"],
        key: Some("a-key-the-lab-refuses"),
        lab: r#"{"api_keys": ["lab-key-7f3a9c2e51"]}"#,
        ..BASE
    },
    Case {
        name: "not enough stock at the pinned site",
        args: &["--region", "DAL", "--nodes", "3"],
        code: 3,
        mentions: &["DAL", "c2-small-x86"],
        lab: r#"{"capacity_per_site": 0}"#,
        ..BASE
    },
    Case {
        name: "not enough stock anywhere",
        args: &["--nodes", "3"],
        code: 3,
        mentions: &["c2-small-x86"],
        lab: r#"{"capacity_per_site": 0}"#,
        ..BASE
    },
    // --- state directory and checkpoint (exit 2 or 4) ---
    Case {
        name: "state dir under a regular file",
        setup: Setup::UnderAFile,
        mentions: &["--state-dir", "not-a-dir"],
        ..BASE
    },
    Case {
        name: "state dir where nothing can be created",
        setup: Setup::UnderProc,
        mentions: &["--state-dir", "/proc/cto-bad-input-state"],
        ..BASE
    },
    Case {
        name: "foreign state dir",
        setup: Setup::Foreign,
        mentions: &["cat.jpg"],
        ..BASE
    },
    Case {
        name: "new install over an existing checkpoint",
        setup: Setup::Step1,
        mentions: &["--resume", "checkpoint"],
        ..BASE
    },
    Case {
        name: "resume without a checkpoint",
        args: &["--resume"],
        mentions: &["nothing to resume"],
        ..BASE
    },
    Case {
        name: "resume without a state dir or cluster name",
        args: &["--resume", "--no-state-dir"],
        mentions: &["--resume", "--state-dir"],
        ..BASE
    },
    Case {
        name: "resume with a truncated checkpoint",
        args: &["--resume"],
        setup: Setup::Truncated,
        mentions: &["checkpoint.json", "corrupt"],
        ..BASE
    },
    Case {
        name: "resume with a corrupted checkpoint",
        args: &["--resume"],
        setup: Setup::Garbage,
        mentions: &["checkpoint.json", "corrupt"],
        ..BASE
    },
    Case {
        name: "resume with a future-version checkpoint",
        args: &["--resume"],
        setup: Setup::FutureVersion,
        mentions: &["checkpoint.json", "format version 7"],
        ..BASE
    },
    Case {
        name: "resume with an unknown checkpoint field",
        args: &["--resume"],
        setup: Setup::UnknownField,
        mentions: &["checkpoint.json", "surprise"],
        ..BASE
    },
    Case {
        name: "resume with a contradicting node count",
        args: &["--resume", "--nodes", "5"],
        setup: Setup::Step1,
        mentions: &["nodes", "checkpoint has 3", "5"],
        ..BASE
    },
    Case {
        name: "resume with a contradicting cluster name",
        args: &["--resume", "--cluster-name", "other"],
        setup: Setup::Step1,
        mentions: &["cluster_name", "other"],
        ..BASE
    },
    Case {
        name: "resume with a contradicting region",
        args: &["--resume", "--region", "DAL"],
        setup: Setup::Step1,
        mentions: &["region", "DAL"],
        ..BASE
    },
    Case {
        name: "resume with a contradicting plan",
        args: &["--resume", "--cp-plan", "c3-small-x86"],
        setup: Setup::Step1,
        mentions: &["c3-small-x86"],
        ..BASE
    },
    Case {
        name: "lock held by a live run",
        args: &["--resume"],
        setup: Setup::LiveLock,
        code: 4,
        mentions: &["cto.lock", "pid"],
        ..BASE
    },
    Case {
        name: "stale lock of a dead run is taken over",
        args: &["--resume", "--stop-after", "validating-prerequisites"],
        setup: Setup::StaleLock,
        code: 0,
        mentions: &[],
        ..BASE
    },
];

#[test]
fn bad_input_gets_a_one_line_reason_the_right_exit_code_and_orders_nothing() {
    assert!(CASES.len() >= 40, "the suite has {} cases", CASES.len());
    let mut labs: HashMap<&str, LabProcess> = HashMap::new();
    for (i, case) in CASES.iter().enumerate() {
        let lab = labs.entry(case.lab).or_insert_with(|| {
            // Dozens of runs against one lab: lift the per-key rate limits.
            let mut config = serde_json::from_str::<Value>(case.lab).unwrap();
            config["reads_per_minute"] = json!(100_000);
            config["writes_per_minute"] = json!(100_000);
            LabProcess::start(config)
        });
        let user = User::new();
        let prepared = case
            .setup
            .prepare(&user, lab, user.state_dir(&format!("bad{i}")));
        let state = prepared.state.to_str().unwrap().to_owned();
        let locate = !case.args.contains(&"--no-state-dir");
        let mut args = vec!["install"];
        if locate {
            args.extend(["--state-dir", state.as_str()]);
        }
        if !case.args.contains(&"--resume") {
            args.push("--yes");
        }
        if locate && !case.args.contains(&"--cluster-name") {
            args.extend(["--cluster-name", "bad"]);
        }
        args.extend(case.args.iter().filter(|a| **a != "--no-state-dir"));
        let mut cmd = user.cto(Some(lab));
        if case.no_key {
            cmd.env_remove("LATITUDE_API_KEY");
        }
        if let Some(key) = case.key {
            cmd.env("LATITUDE_API_KEY", key);
        }
        let out = run(cmd, &args);
        if let Some(mut holder) = prepared.holder {
            let _ = holder.kill();
            let _ = holder.wait();
        }
        assert_eq!(
            out.status.code(),
            Some(case.code),
            "{}: {}",
            case.name,
            describe(&out)
        );
        // A credential given inside a URL is never repeated.
        assert!(
            !describe(&out).contains("tok-91c2"),
            "{}: {}",
            case.name,
            describe(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        if case.code == 0 {
            assert!(errors.is_empty(), "{}: {stderr}", case.name);
        } else {
            assert_eq!(
                errors.len(),
                1,
                "{}: one error line expected: {stderr}",
                case.name
            );
            // The message: the error line and what follows it (a list of contradictions).
            let message = &stderr[stderr.find("error").unwrap_or(0)..];
            for m in case.mentions {
                assert!(
                    message.contains(m),
                    "{}: {m:?} not in the error {message:?}",
                    case.name
                );
            }
        }
        assert!(
            lab.hostnames().is_empty(),
            "{}: something was ordered",
            case.name
        );
    }
}

#[test]
fn a_rejected_api_key_is_a_prerequisite_failure() {
    let lab = LabProcess::start(json!({"api_keys": ["the-only-good-key"]}));
    let user = User::new();
    let state = user.state_dir("k");
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--cluster-name",
            "k",
            "--state-dir",
            state.to_str().unwrap(),
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    assert!(stderr.contains("LATITUDE_API_KEY"), "{stderr}");
}

#[test]
fn resume_without_a_checkpoint_and_a_foreign_state_dir_are_usage_errors() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let state = user.state_dir("none");
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--resume",
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to resume"));

    let foreign = user.home.path().join("photos");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("cat.jpg"), b"meow").unwrap();
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--cluster-name",
            "f",
            "--state-dir",
            foreign.to_str().unwrap(),
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cat.jpg"));
    assert!(lab.hostnames().is_empty());
}

#[test]
fn corrupt_and_future_checkpoints_are_refused_clearly() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let state = user.state_dir("cc");
    let s = state.to_str().unwrap();
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--cluster-name",
            "cc",
            "--state-dir",
            s,
            "--stop-after",
            "validating-prerequisites",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let path = state.join("checkpoint.json");
    let good = std::fs::read_to_string(&path).unwrap();

    std::fs::write(&path, &good[..good.len() / 3]).unwrap();
    let out = run(
        user.cto(Some(&lab)),
        &["install", "--resume", "--state-dir", s],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt"));

    std::fs::write(&path, good.replacen("\"version\": 1", "\"version\": 7", 1)).unwrap();
    let out = run(
        user.cto(Some(&lab)),
        &["install", "--resume", "--state-dir", s],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("format version 7"));
}

#[test]
fn a_time_scale_off_loopback_is_a_usage_error_before_anything_is_written() {
    let user = User::new();
    let state = user.state_dir("ts");
    let mut cmd = user.cto(None);
    cmd.env("CTO_TIME_SCALE", "0.01")
        .env("LATITUDE_API_KEY", "sk_not_used")
        .env("LATITUDE_PROJECT_ID", "proj_x");
    let out = run(
        cmd,
        &[
            "install",
            "--cluster-name",
            "ts",
            "--api-url",
            "https://api.example.invalid",
            "--state-dir",
            state.to_str().unwrap(),
            "--yes",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stderr.contains("CTO_TIME_SCALE") || stdout.contains("CTO_TIME_SCALE"),
        "{}",
        describe(&out)
    );
    assert!(!stdout.contains("server_ordered"), "{}", describe(&out));
    assert!(
        !state.join("checkpoint.json").exists(),
        "nothing may be written"
    );

    // An invalid value is a usage error too, even against a loopback URL.
    let mut cmd = user.cto(None);
    cmd.env("CTO_TIME_SCALE", "fast")
        .env("LATITUDE_API_KEY", "sk_not_used")
        .env("LATITUDE_PROJECT_ID", "proj_x");
    let out = run(
        cmd,
        &[
            "install",
            "--cluster-name",
            "ts",
            "--api-url",
            "http://127.0.0.1:9",
            "--state-dir",
            state.to_str().unwrap(),
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CTO_TIME_SCALE"));
    assert!(!state.join("checkpoint.json").exists());
}

/// Runs `cto args…` under a 1 GiB address-space limit (`ulimit -v`), so that a run whose memory
/// grows with its input (an alias bomb expanded, `/dev/zero` read to the end) aborts instead of
/// exiting 2; and waits at most a minute, so that a run that never returns fails the test
/// rather than hanging it (a hang guard, not a timing assertion).
fn run_bounded(user: &User, lab: &LabProcess, args: &[&str]) -> std::process::Output {
    let cmd = user.cto(Some(lab));
    let mut sh = std::process::Command::new("sh");
    sh.arg("-c")
        .arg("ulimit -v 1048576 && exec \"$0\" \"$@\"")
        .arg(crate::harness::cto_bin())
        .args(args)
        .env_clear()
        .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = sh.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cto {args:?} did not return");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn an_alias_bomb_file_and_dev_zero_exit_2_with_bounded_memory() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let bomb = user.home.path().join("bomb.yaml");
    std::fs::write(&bomb, ALIAS_BOMB).unwrap();
    let big = user.home.path().join("big.yaml");
    std::fs::write(
        &big,
        format!(
            "machine:\n  nodeLabels:\n    x: \"{}\"\n",
            "a".repeat(2 << 20)
        ),
    )
    .unwrap();
    for (patch, says) in [
        (format!("@{}", bomb.display()), "aliases expand beyond"),
        ("@/dev/zero".to_owned(), "not a regular file"),
        (format!("@{}", big.display()), "1 MiB"),
    ] {
        let state = user.state_dir("bomb");
        let out = run_bounded(
            &user,
            &lab,
            &[
                "install",
                "--cluster-name",
                "bomb",
                "--state-dir",
                state.to_str().unwrap(),
                "--yes",
                "--config-patch",
                &patch,
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{patch}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{patch}: {stderr}");
        assert!(!state.exists(), "{patch}: the state directory was created");
    }
    // The limit leaves room for a real install's validation: a small patch still passes it.
    let ok = user.home.path().join("ok.yaml");
    std::fs::write(
        &ok,
        "machine:\n  nodeLabels:\n    tier: &t gold\n    copy: *t\n",
    )
    .unwrap();
    let state = user.state_dir("ok");
    let out = run_bounded(
        &user,
        &lab,
        &[
            "install",
            "--cluster-name",
            "ok",
            "--state-dir",
            state.to_str().unwrap(),
            "--yes",
            "--dry-run",
            "--config-patch",
            &format!("@{}", ok.display()),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(lab.hostnames().is_empty());
}

#[test]
fn kubeconfig_out_inside_the_state_dir_or_unwritable_exits_2_with_nothing_ordered() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let state = user.state_dir("kc");
    let s = state.to_str().unwrap();
    let a_file = user.home.path().join("a-file");
    std::fs::write(&a_file, b"x").unwrap();
    let inside = state.join("secrets.yaml");
    let inside_new = state.join("sub").join("kubeconfig");
    let under_a_file = a_file.join("kubeconfig");
    let cases: [(&Path, &str); 4] = [
        (&inside, "inside the state directory"),
        (&inside_new, "inside the state directory"),
        (
            Path::new("/proc/cto-kc/kubeconfig"),
            "nothing can be written",
        ),
        (&under_a_file, "not a directory"),
    ];
    for (out_path, says) in cases {
        let out = run(
            user.cto(Some(&lab)),
            &[
                "install",
                "--cluster-name",
                "kc",
                "--state-dir",
                s,
                "--yes",
                "--kubeconfig-out",
                out_path.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--kubeconfig-out"), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(lab.hostnames().is_empty(), "something was ordered");
        assert!(!state.exists(), "the state directory was created");
    }

    // On --resume too, before anything runs.
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--cluster-name",
            "kc",
            "--state-dir",
            s,
            "--yes",
            "--stop-after",
            "validating-prerequisites",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let before = std::fs::read(state.join("checkpoint.json")).unwrap();
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--resume",
            "--state-dir",
            s,
            "--yes",
            "--kubeconfig-out",
            inside.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(lab.hostnames().is_empty(), "something was ordered");
    assert_eq!(
        std::fs::read(state.join("checkpoint.json")).unwrap(),
        before
    );
}

#[test]
fn http_to_a_localhost_name_is_refused_even_where_it_would_reach_the_lab() {
    let lab = LabProcess::start(json!({}));
    let port = lab.url.rsplit(':').next().unwrap().trim_end_matches('/');
    let user = User::new();
    let state = user.state_dir("ev");
    for host in ["evil.localhost", "localhost"] {
        let url = format!("http://{host}:{port}");
        for args in [
            vec![
                "install",
                "--cluster-name",
                "ev",
                "--state-dir",
                state.to_str().unwrap(),
                "--yes",
                "--api-url",
                url.as_str(),
            ],
            vec![
                "regions",
                "--plan",
                "c2-small-x86",
                "--api-url",
                url.as_str(),
            ],
            vec![
                "destroy",
                "--cluster-name",
                "ev",
                "--yes",
                "--api-url",
                url.as_str(),
            ],
        ] {
            let out = run(user.cto(Some(&lab)), &args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(host), "{args:?}: {stderr}");
            assert!(stderr.contains("https://"), "{args:?}: {stderr}");
        }
    }
    assert!(lab.hostnames().is_empty(), "something was ordered");
    assert!(!state.exists(), "the state directory was created");
}

#[test]
fn a_cluster_name_that_is_a_path_exits_2_in_every_command_and_writes_nothing() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let home = user.home.path();
    for args in [
        vec!["destroy", "--cluster-name", "../../x", "--yes"],
        vec!["status", "--cluster-name", "../../x"],
        vec!["health", "--cluster-name", "../../x"],
        vec!["install", "--cluster-name", "../../x", "--yes"],
        vec!["install", "--resume", "--cluster-name", "../../x"],
        vec![
            "destroy",
            "--cluster-name",
            "../../x",
            "--yes",
            "--state-dir",
            "/tmp/cto-no-such-dir",
        ],
    ] {
        let out = run(user.cto(Some(&lab)), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--cluster-name"), "{args:?}: {stderr}");
        assert!(stderr.contains("../../x"), "{args:?}: {stderr}");
        let written = crate::harness::files_under(home);
        assert!(written.is_empty(), "{args:?} wrote {written:?}");
        assert!(!home.join("x").exists());
    }
    assert!(lab.hostnames().is_empty());
}

#[test]
fn a_url_with_userinfo_exits_2_in_every_command_without_repeating_it() {
    let lab = LabProcess::start(json!({}));
    let port = lab.url.rsplit(':').next().unwrap().trim_end_matches('/');
    let user = User::new();
    let url = format!("http://me:tok-91c2@127.0.0.1:{port}");
    for args in [
        vec![
            "regions",
            "--plan",
            "c2-small-x86",
            "--api-url",
            url.as_str(),
        ],
        vec![
            "destroy",
            "--cluster-name",
            "ui",
            "--yes",
            "--api-url",
            url.as_str(),
        ],
        vec![
            "install",
            "--cluster-name",
            "ui",
            "--yes",
            "--api-url",
            url.as_str(),
        ],
    ] {
        let mut cmd = user.cto(Some(&lab));
        cmd.env("CTO_TIME_SCALE", "0.5");
        let out = run(cmd, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert!(
            !describe(&out).contains("tok-91c2"),
            "{args:?}: {}",
            describe(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("***@127.0.0.1"),
            "{args:?}: {}",
            describe(&out)
        );
    }
    // From the environment too.
    let mut cmd = user.cto(Some(&lab));
    cmd.env("LATITUDE_API_URL", &url);
    let out = run(cmd, &["regions", "--plan", "c2-small-x86"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(!describe(&out).contains("tok-91c2"), "{}", describe(&out));
    assert!(lab.hostnames().is_empty());
    assert!(crate::harness::files_under(user.home.path()).is_empty());
}

#[test]
fn kubeconfig_and_talosconfig_merge_targets_that_cannot_be_written_exit_2_before_ordering() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let state = user.state_dir("mt");
    let a_file = user.home.path().join("a-file");
    std::fs::write(&a_file, b"x").unwrap();
    // $KUBECONFIG under a regular file: step 21 could never merge into it.
    let mut cmd = user.cto(Some(&lab));
    cmd.env("KUBECONFIG", a_file.join("config"));
    let args = [
        "install",
        "--cluster-name",
        "mt",
        "--state-dir",
        state.to_str().unwrap(),
        "--yes",
    ];
    let out = run(cmd, &args);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kubeconfig") && stderr.contains("--kubeconfig-out"),
        "{stderr}"
    );
    // A HOME under a regular file: neither ~/.kube/config nor ~/.talos/config can be written.
    let mut cmd = user.cto(Some(&lab));
    cmd.env("HOME", a_file.join("home"));
    let out = run(cmd, &args);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(lab.hostnames().is_empty(), "something was ordered");
    assert!(!state.exists(), "the state directory was created");
    // --kubeconfig-out replaces the kubeconfig merge; the talosconfig is still checked.
    let mut cmd = user.cto(Some(&lab));
    cmd.env("KUBECONFIG", a_file.join("config"));
    let out_path = user.home.path().join("kc");
    let mut with_out = args.to_vec();
    with_out.extend(["--kubeconfig-out", out_path.to_str().unwrap(), "--dry-run"]);
    let out = run(cmd, &with_out);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}
