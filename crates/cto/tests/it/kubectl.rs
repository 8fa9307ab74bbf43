//! The real `kubectl`, pointed at a lab cluster: the tests check what a user would see.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::harness::describe;

/// Runs `kubectl --kubeconfig <kubeconfig> <args>`.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl is required by this test: `cargo xtask ci` installs it")
}

/// `kubectl <args> -o json`, which must succeed.
pub fn kubectl_json(kubeconfig: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = kubectl(kubeconfig, &all);
    assert!(out.status.success(), "kubectl {args:?}: {}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits (bounded) until the cluster's API server answers `/readyz`, as it does moments after a
/// lab's world is served again.
pub fn wait_for_kube_api(kubeconfig: &Path) {
    for _ in 0..200 {
        if kubectl(kubeconfig, &["get", "--raw", "/readyz"])
            .status
            .success()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the lab's Kubernetes API did not come back");
}

/// The `items` of a list.
pub fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}
