//! Bad input: each case gets its exit code, a message naming the offending value, and no server
//! ordered.

use serde_json::json;

use crate::harness::{LabProcess, User, describe, run};

struct Case {
    name: &'static str,
    args: &'static [&'static str],
    /// Remove the API key from the environment.
    no_key: bool,
    code: i32,
    mentions: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "zero nodes",
        args: &["--nodes", "0"],
        no_key: false,
        code: 2,
        mentions: &["--nodes", "'0'"],
    },
    Case {
        name: "too many replicas",
        args: &["--storage-replicas", "5"],
        no_key: false,
        code: 2,
        mentions: &["--storage-replicas", "'5'"],
    },
    Case {
        name: "replicas above storage nodes",
        args: &["--nodes", "2", "--storage-replicas", "2"],
        no_key: false,
        code: 2,
        mentions: &["--storage-replicas", "'2'"],
    },
    Case {
        name: "two control planes",
        args: &["--control-planes", "2"],
        no_key: false,
        code: 2,
        mentions: &["--control-planes", "'2'"],
    },
    Case {
        name: "invalid cluster name",
        args: &["--cluster-name", "Bad_Name"],
        no_key: false,
        code: 2,
        mentions: &["--cluster-name", "Bad_Name"],
    },
    Case {
        name: "region and auto-region",
        args: &["--region", "DAL", "--auto-region"],
        no_key: false,
        code: 2,
        mentions: &["--region", "--auto-region"],
    },
    Case {
        name: "unknown step",
        args: &["--stop-after", "making-coffee"],
        no_key: false,
        code: 2,
        mentions: &["making-coffee"],
    },
    Case {
        name: "bad talos version",
        args: &["--talos-version", "1.11"],
        no_key: false,
        code: 2,
        mentions: &["--talos-version", "1.11"],
    },
    Case {
        name: "unknown profile",
        args: &["--profile", "huge"],
        no_key: false,
        code: 2,
        mentions: &["--profile", "huge"],
    },
    Case {
        name: "non-numeric nodes",
        args: &["--nodes", "three"],
        no_key: false,
        code: 2,
        mentions: &["three"],
    },
    Case {
        name: "unknown plan",
        args: &["--cp-plan", "z9-imaginary-x86"],
        no_key: false,
        code: 3,
        mentions: &["z9-imaginary-x86"],
    },
    Case {
        name: "site without stock",
        args: &["--region", "ASH"],
        no_key: false,
        code: 3,
        mentions: &["ASH", "c2-small-x86"],
    },
    Case {
        name: "unknown site",
        args: &["--region", "XYZ"],
        no_key: false,
        code: 3,
        mentions: &["XYZ"],
    },
    Case {
        name: "missing API key",
        args: &[],
        no_key: true,
        code: 3,
        mentions: &["LATITUDE_API_KEY"],
    },
];

#[test]
fn bad_input_gets_a_one_line_reason_the_right_exit_code_and_orders_nothing() {
    let lab = LabProcess::start(json!({}));
    for (i, case) in CASES.iter().enumerate() {
        let user = User::new();
        let state = user.state_dir(&format!("bad{i}"));
        let mut args = vec!["install", "--state-dir", state.to_str().unwrap(), "--yes"];
        if !case.args.contains(&"--cluster-name") {
            args.extend(["--cluster-name", "bad"]);
        }
        args.extend_from_slice(case.args);
        let mut cmd = user.cto(Some(&lab));
        if case.no_key {
            cmd.env_remove("LATITUDE_API_KEY");
        }
        let out = run(cmd, &args);
        assert_eq!(
            out.status.code(),
            Some(case.code),
            "{}: {}",
            case.name,
            describe(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(
            errors.len(),
            1,
            "{}: one error line expected: {stderr}",
            case.name
        );
        for m in case.mentions {
            assert!(
                errors[0].contains(m),
                "{}: {m:?} not in the error line {:?}",
                case.name,
                errors[0]
            );
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
