//! Embeds this repository's `gitops/` tree (every `.yaml`/`.yml` file) into the lab, so that
//! the simulated Argo CD can sync Applications whose `repoURL` is this repository without a
//! network or a checkout: generates `$OUT_DIR/gitops_files.rs`, a table of
//! `(path relative to the repository root, contents)`.

use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    let gitops = root.join("gitops");
    println!("cargo:rerun-if-changed={}", gitops.display());
    println!("cargo:rerun-if-changed=build.rs");
    let mut files = Vec::new();
    walk(&gitops, &mut files);
    let mut code = String::from(
        "/// This repository's `gitops/` YAML files: (path from the repository root, contents).\n\
         pub(crate) static FILES: &[(&str, &str)] = &[\n",
    );
    for file in &files {
        let relative = file
            .strip_prefix(&root)
            .expect("under the root")
            .to_string_lossy()
            .replace('\\', "/");
        let absolute = file.canonicalize().expect("canonical path");
        code.push_str(&format!(
            "    ({relative:?}, include_str!({:?})),\n",
            absolute.to_string_lossy()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("gitops_files.rs");
    std::fs::write(out, code).expect("write gitops_files.rs");
}
