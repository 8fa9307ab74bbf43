//! Git repositories served over HTTP on loopback by git's own `git http-backend` (the smart
//! HTTP protocol, as a forge serves it), behind a small CGI bridge: each request runs
//! `git http-backend` with the CGI variables of RFC 3875 and git's (`GIT_PROJECT_ROOT`,
//! `GIT_HTTP_EXPORT_ALL`, `GIT_PROTOCOL` from the `Git-Protocol` header). With a token, a
//! request without `Authorization: Basic` carrying it is answered 401, as a private
//! repository is.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;

/// A `git http-backend` server over the bare repositories in `root`.
pub struct GitServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Where the bare repositories are.
    pub root: PathBuf,
    _dir: tempfile::TempDir,
}

/// `git` with a fixed identity and no user configuration.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.test")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.test")
        .output()
        .expect("git is installed");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl GitServer {
    /// Serves on a free loopback port; `token`, when given, is required as the Basic password.
    pub fn start(token: Option<&str>) -> GitServer {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repos");
        std::fs::create_dir_all(&root).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let serve_root = root.clone();
        let token = token.map(str::to_string);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let root = serve_root.clone();
                let token = token.clone();
                std::thread::spawn(move || {
                    let _ = handle(stream, &root, token.as_deref());
                });
            }
        });
        GitServer {
            base,
            root,
            _dir: dir,
        }
    }

    /// A bare repository `name` (`<name>.git`), optionally with one commit on `main` holding
    /// `files` (path, contents); returns its URL.
    pub fn repository(&self, name: &str, files: &[(String, Vec<u8>)]) -> String {
        let bare = self.root.join(format!("{name}.git"));
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "--bare", "--initial-branch=main", "."]);
        git(&bare, &["config", "http.receivepack", "true"]);
        if !files.is_empty() {
            let work = tempfile::tempdir().unwrap();
            git(work.path(), &["init", "--initial-branch=main", "."]);
            for (path, contents) in files {
                let to = work.path().join(path);
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::write(to, contents).unwrap();
            }
            git(work.path(), &["add", "-A"]);
            git(work.path(), &["commit", "-q", "-m", "initial"]);
            git(
                work.path(),
                &["push", "-q", bare.to_str().unwrap(), "main:main"],
            );
        }
        format!("{}/{name}.git", self.base)
    }
}

/// Every file under `dir`, as (path relative to `prefix`'s parent naming, contents).
pub fn files_of(dir: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                out.push((format!("{prefix}/{rel}"), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn handle(stream: TcpStream, root: &Path, token: Option<&str>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if n == 0 {
                let mut end = String::new();
                reader.read_line(&mut end)?;
                break;
            }
            let mut chunk = vec![0; n];
            reader.read_exact(&mut chunk)?;
            body.extend(chunk);
            let mut crlf = [0; 2];
            reader.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = header("content-length").and_then(|n| n.parse::<usize>().ok()) {
        body = vec![0; n];
        reader.read_exact(&mut body)?;
    }
    let mut out = stream;
    if let Some(token) = token {
        let expected = base64::engine::general_purpose::STANDARD.encode(format!("git:{token}"));
        if header("authorization") != Some(format!("Basic {expected}")) {
            let text = "authentication required\n";
            write!(
                out,
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            )?;
            return Ok(());
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if token.is_some() {
        cgi.env("REMOTE_USER", "git");
    }
    if let Some(t) = header("content-type") {
        cgi.env("CONTENT_TYPE", t);
    }
    if let Some(p) = header("git-protocol") {
        cgi.env("GIT_PROTOCOL", p);
    }
    if let Some(e) = header("content-encoding") {
        cgi.env("HTTP_CONTENT_ENCODING", e);
    }
    let mut child = cgi.spawn()?;
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut response = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut response)?;
    let _ = writer.join();
    let _ = child.wait();
    // CGI response: headers, a blank line, the body.
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| {
            response
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, 2))
        });
    let (head, payload) = match split {
        Some((i, n)) => (
            String::from_utf8_lossy(&response[..i]).to_string(),
            &response[i + n..],
        ),
        None => (String::new(), &response[..]),
    };
    let mut status = "200 OK".to_string();
    let mut lines = Vec::new();
    for h in head.lines() {
        match h.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => lines.push(h.to_string()),
            None => {}
        }
    }
    write!(out, "HTTP/1.1 {status}\r\n")?;
    for h in lines {
        write!(out, "{h}\r\n")?;
    }
    write!(
        out,
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    )?;
    out.write_all(payload)?;
    out.flush()
}
