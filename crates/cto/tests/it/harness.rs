//! Test harness: the real `cto` binary, run out of process against a `cto lab serve` process,
//! with an isolated HOME and state directory per test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The API key tests use; distinctive so a leak into a file is easy to find.
pub const KEY: &str = "lab-key-7f3a9c2e51";

/// The `cto` binary under test.
pub fn cto_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cto")
}

/// A lab running as its own process.
pub struct LabProcess {
    child: Child,
    /// Its API URL.
    pub url: String,
    /// Its state directory (the world).
    pub world: PathBuf,
    _dir: tempfile::TempDir,
}

impl LabProcess {
    /// Starts `cto lab serve` with `config` merged over fast test defaults.
    pub fn start(config: Value) -> LabProcess {
        let dir = tempfile::tempdir().unwrap();
        // No address block: the lab claims a free one, so parallel labs never share one.
        let mut merged = json!({
            "time_scale": 0.002,
        });
        if let (Some(m), Some(c)) = (merged.as_object_mut(), config.as_object()) {
            for (k, v) in c {
                m.insert(k.clone(), v.clone());
            }
        }
        let config_path = dir.path().join("lab.json");
        std::fs::write(&config_path, merged.to_string()).unwrap();
        let state = dir.path().join("world");
        Self::serve(&state, Some(&config_path), dir)
    }

    /// Serves an existing world (such as `<state-dir>/lab` of an in-process `--lab` install),
    /// so its nodes and Kubernetes API can be reached after `cto` exited.
    pub fn reopen(world: &Path) -> LabProcess {
        Self::serve(world, None, tempfile::tempdir().unwrap())
    }

    /// Runs `cto lab serve` over `world` and waits for the URL it prints when ready.
    fn serve(world: &Path, config: Option<&Path>, dir: tempfile::TempDir) -> LabProcess {
        let mut command = Command::new(cto_bin());
        command
            .args(["lab", "serve", "--listen", "127.0.0.1:0", "--state"])
            .arg(world);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().expect("lab printed nothing").unwrap();
        let url = first
            .strip_prefix("LATITUDE_API_URL=")
            .unwrap_or_else(|| panic!("unexpected first line from the lab: {first}"))
            .to_owned();
        // Keep draining stdout so the lab never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        LabProcess {
            child,
            url,
            world: world.to_owned(),
            _dir: dir,
        }
    }

    /// GET `path` on the lab with the test key; returns the JSON body.
    pub fn get(&self, path: &str) -> Value {
        http_get(&self.url, path, Some(KEY))
    }

    /// Every live server in the lab, as `(hostname, id)`.
    pub fn servers(&self) -> Vec<(String, String)> {
        let body = self.get("/servers?page%5Bsize%5D=100");
        body["data"]
            .as_array()
            .unwrap_or_else(|| panic!("no data in {body}"))
            .iter()
            .map(|s| {
                (
                    s["attributes"]["hostname"].as_str().unwrap().to_owned(),
                    s["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Sorted hostnames of every live server.
    pub fn hostnames(&self) -> Vec<String> {
        let mut names: Vec<String> = self.servers().into_iter().map(|(h, _)| h).collect();
        names.sort();
        names
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET (the tests need nothing more, and no client dependency).
pub fn http_get(base: &str, path: &str, key: Option<&str>) -> Value {
    let hostport = base.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(hostport).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\n{auth}Accept: application/vnd.api+json\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "GET {path}: {head}\n{body}"
    );
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// An isolated user: HOME, XDG_STATE_HOME and a state directory of its own.
pub struct User {
    /// The fake HOME.
    pub home: tempfile::TempDir,
}

impl User {
    /// A new user.
    pub fn new() -> User {
        User {
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// A state directory path (not created).
    pub fn state_dir(&self, name: &str) -> PathBuf {
        self.home.path().join("state").join(name)
    }

    /// `cto` with this user's environment and, when `lab` is given, that lab's URL and key.
    pub fn cto(&self, lab: Option<&LabProcess>) -> Command {
        let mut cmd = Command::new(cto_bin());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("XDG_STATE_HOME", self.home.path().join("xdg-state"))
            .env("CI", "true")
            .stdin(Stdio::null());
        if let Some(lab) = lab {
            cmd.env("LATITUDE_API_KEY", KEY)
                .env("LATITUDE_PROJECT_ID", "proj_lab")
                .env("LATITUDE_API_URL", &lab.url);
        }
        cmd
    }
}

/// Runs `cmd` with `args` to completion.
pub fn run(mut cmd: Command, args: &[&str]) -> Output {
    cmd.args(args).output().unwrap()
}

/// Exit code, stdout and stderr of an output, for assertions.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Spawns `cmd` with JSON output and kills it (SIGKILL) as soon as an event matching `when`
/// is printed. Returns the events seen.
pub fn kill_when(mut cmd: Command, args: &[&str], when: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut child = cmd
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let hit = when(&event);
        seen.push(event);
        if hit || Instant::now() > deadline {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    seen
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Asserts that everything under `dir` (itself included) is private: directories 0700, files
/// 0600 (issue 13: state directories hold keys and tokens).
#[cfg(unix)]
pub fn assert_private_tree(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(dir), 0o700, "{} is a private directory", dir.display());
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                assert_eq!(
                    mode(&path),
                    0o700,
                    "{} is a private directory",
                    path.display()
                );
                stack.push(path);
            } else {
                assert_eq!(mode(&path), 0o600, "{} is a private file", path.display());
            }
        }
    }
}

/// The JSON events in an output's stdout.
pub fn events(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Orders a server by hand in the lab's project through Latitude's API (`POST /servers`), the
/// way a user does outside any install (c2-small-x86 in MIA2). Returns its id.
pub fn hand_make(url: &str, hostname: &str, os: &str) -> String {
    use metal::latitude::{ClientConfig, CreateServer, LatitudeClient};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = LatitudeClient::new(ClientConfig::new(
            url,
            metal::secret::ApiKey::new(KEY),
            "proj_lab",
        ))
        .unwrap();
        let order = CreateServer {
            hostname: hostname.to_owned(),
            plan: "c2-small-x86".into(),
            site: "MIA2".into(),
            operating_system: os.to_owned(),
            ipxe: (os == "ipxe").then(|| "https://example.invalid/boot.ipxe".to_owned()),
            ssh_keys: Vec::new(),
            persistent_netboot: None,
        };
        client.create_server(&order).await.unwrap().id
    })
}

/// `(status, operating system slug)` of a live server.
pub fn server_state(lab: &LabProcess, id: &str) -> (String, String) {
    let body = lab.get(&format!("/servers/{id}"));
    let a = &body["data"]["attributes"];
    (
        a["status"].as_str().unwrap_or_default().to_owned(),
        a["operating_system"]["slug"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Waits (up to a minute) until the server reports `status`.
pub fn wait_status(lab: &LabProcess, id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while server_state(lab, id).0 != status {
        assert!(Instant::now() < deadline, "{id} never reported {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
