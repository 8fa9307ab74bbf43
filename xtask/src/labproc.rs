//! What the xtask drivers (`chaos`, `bench`) share: building the `cto` binary, running
//! `cto lab serve` as a child process, and reading the lab's JSON over plain HTTP/1.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Builds `cto` (`--release` when asked) and returns the binary's path.
pub fn build_cto(release: bool) -> Result<PathBuf, String> {
    let root = workspace_root();
    let mut cmd = crate::cargo();
    cmd.args(["build", "-p", "cto"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .current_dir(&root)
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build -p cto failed ({status})"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let target = if target.is_absolute() {
        target
    } else {
        root.join(target)
    };
    Ok(target
        .join(if release { "release" } else { "debug" })
        .join("cto"))
}

/// A `cto lab serve` child process, killed when dropped.
pub struct Lab {
    child: Option<Child>,
    /// Its Latitude API URL.
    pub url: String,
}

impl Lab {
    /// Starts `bin lab serve` over `dir/world` with the lab configuration `config_json`
    /// (written to `dir/lab.json`) and optional `--faults`, and waits for its URL.
    pub fn start(
        bin: &Path,
        dir: &Path,
        config_json: &str,
        faults: Option<&str>,
    ) -> Result<Lab, String> {
        let config = dir.join("lab.json");
        std::fs::write(&config, config_json)
            .map_err(|e| format!("writing {}: {e}", config.display()))?;
        let mut cmd = Command::new(bin);
        cmd.args(["lab", "serve", "--listen", "127.0.0.1:0", "--state"])
            .arg(dir.join("world"))
            .arg("--config")
            .arg(&config);
        if let Some(faults) = faults {
            cmd.args(["--faults", faults]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the lab: {e}"))?;
        let stdout = child.stdout.take().ok_or("the lab has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = match lines.next() {
            Some(Ok(line)) => line,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the lab did not start (bad configuration or --faults?)".into());
            }
        };
        let url = first
            .strip_prefix("LATITUDE_API_URL=")
            .ok_or_else(|| format!("unexpected first line from the lab: {first}"))?
            .to_owned();
        // Keep draining stdout so the lab never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Lab {
            child: Some(child),
            url,
        })
    }

    /// Stops the lab (SIGKILL) and hands back its process, unreaped, for the caller to wait
    /// on (the bench reads its CPU time with `wait4`).
    pub fn kill(mut self) -> Option<Child> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        Some(child)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// GET `path` on the lab (HTTP/1.1, `Connection: close`, bearer `key`), as JSON.
pub fn get(url: &str, path: &str, key: &str) -> Result<Value, String> {
    let hostport = url.trim_start_matches("http://");
    let mut stream =
        TcpStream::connect(hostport).map_err(|e| format!("connecting to the lab: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("GET {path}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("GET {path}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no HTTP answer"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "GET {path}: {} {}",
            head.lines().next().unwrap_or(head),
            body.trim()
        ));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e}"))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest.get(n + 2..).unwrap_or("");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n"), "{\"a\":1}");
    }
}
