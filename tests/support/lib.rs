//! Support for Outpost's end-to-end tests: paths of the guest components
//! built by `build.rs`, a handle on a real `outpost` process listening on
//! `127.0.0.1:0`, and a small real HTTP client.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub use tempfile::TempDir;

pub mod jose;
pub mod mmdb;
pub mod origin;
pub mod raw;

/// Paths of the guest components, one constant per guest crate.
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
}

/// How long a server may take to print its `listening on` line. Generous:
/// the first start compiles the component, in a debug build, on a shared
/// machine.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// A running `outpost` process. Killed when dropped.
pub struct Outpost {
    child: Child,
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Outpost {
    /// Starts `outpost` with `args` (plus `--listen 127.0.0.1:0` unless the
    /// args already listen somewhere) and waits for its `listening on` line.
    pub fn start(binary: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut command = Command::new(binary);
        command.args(args);
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        Self::spawn(command)
    }

    /// Runs a prepared `outpost` command (serve or dev) and waits for its
    /// `listening on` line (noting the `admin API on` line before it).
    pub fn spawn(mut command: Command) -> anyhow::Result<Self> {
        let mut child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (stderr, _) = collect(child.stderr.take().expect("stderr is piped"), |_| {});
        let (tx, rx) = mpsc::channel();
        let (stdout, _) = collect(child.stdout.take().expect("stdout is piped"), move |line| {
            if let Some(addr) = line.strip_prefix("listening on http://") {
                let _ = tx.send(("listen", addr.parse::<SocketAddr>()));
            } else if let Some(addr) = line.strip_prefix("admin API on http://") {
                let _ = tx.send(("admin", addr.parse::<SocketAddr>()));
            }
        });

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        // `admin API on` comes first when there is one, `listening on` last.
        let mut admin = None;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(("admin", addr)) => admin = Some(addr?),
                Ok((_, addr)) => {
                    return Ok(Self {
                        child,
                        addr: addr?,
                        admin,
                        stdout,
                        stderr,
                    });
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Some(status) = child.try_wait()? {
                        anyhow::bail!(
                            "outpost exited with {status} before listening:\n{}",
                            stderr.lock().unwrap()
                        );
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    anyhow::bail!(
                        "outpost did not print `listening on` within {STARTUP_TIMEOUT:?}:\n{}",
                        stderr.lock().unwrap()
                    );
                }
            }
        }
    }

    /// `http://ADMIN{path}`: the admin API, if the node has one.
    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.admin.expect("the node has an admin API")
        )
    }

    /// `METHOD path` with `headers` and no body, over HTTP/1.1.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(method, path, headers, Bytes::new())
    }

    /// `METHOD path` with `headers` and `body`, over HTTP/1.1.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.try_send(method, path, headers, body)
            .expect("an HTTP answer")
    }

    /// As [`send`](Self::send), an error instead of a panic when no answer
    /// comes (the server was killed, say).
    pub fn try_send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Reply> {
        let mut builder = http::Request::builder().method(method).uri(self.url(path));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(body.into()))
            .expect("a valid request");
        block_on(HttpClient::http1().send(request))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `METHOD path` on the admin API with bearer `token` and `body`.
    pub fn admin(&self, method: &str, path: &str, token: &str, body: impl Into<Bytes>) -> Reply {
        self.admin_with(method, path, token, &[], body)
    }

    /// As [`admin`](Self::admin), with `headers` too.
    pub fn admin_with(
        &self,
        method: &str,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(self.admin_url(path))
            .header("authorization", format!("Bearer {token}"));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(body.into()))
            .expect("a valid request");
        block_on(HttpClient::http1().send(request)).expect("an admin answer")
    }

    /// Uploads `component` with `manifest` as a new version of `app`
    /// through the admin API (bearer `token`, with the deploy scope) and
    /// activates it.
    pub fn deploy(&self, token: &str, app: &str, manifest: &str, component: &Path) {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(manifest);
        let upload = self.admin_with(
            "POST",
            &format!("/v1/apps/{app}/versions"),
            token,
            &[("outpost-manifest", &encoded)],
            std::fs::read(component).expect("the component is readable"),
        );
        assert_eq!(upload.status, 201, "{}", upload.text());
        let version: serde_json::Value =
            serde_json::from_slice(&upload.body).expect("the upload answer is JSON");
        let version = version["version"].as_u64().expect("a version number");
        let activate = self.admin(
            "POST",
            &format!("/v1/apps/{app}/versions/{version}/activate"),
            token,
            Bytes::new(),
        );
        assert_eq!(activate.status, 200, "{}", activate.text());
    }

    /// The admin API's `/v1/stats`, read with bearer `token`.
    pub fn admin_stats(&self, token: &str) -> serde_json::Value {
        let request = http::Request::get(self.admin_url("/v1/stats"))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .expect("a valid request");
        let reply = block_on(HttpClient::http1().send(request)).expect("a stats answer");
        assert_eq!(reply.status, 200, "{}", reply.text());
        serde_json::from_slice(&reply.body).expect("stats are JSON")
    }

    /// Everything the process printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for stdout to contain `needle` `count` times.
    pub fn wait_for_stdout(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        wait_for(&self.stdout, needle, count, timeout)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the admin API, if the node has one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The server's resident memory, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The server's log as it grows, readable after the server is gone.
    pub fn stderr_handle(&self) -> Arc<Mutex<String>> {
        self.stderr.clone()
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits up to 10 s for the log to contain `needle` (log lines are
    /// written by another process, a little after the response).
    pub fn wait_for_log(&self, needle: &str) -> bool {
        self.wait_for_logs(needle, 1)
    }

    /// Waits up to 10 s for the log to contain `needle` `count` times.
    pub fn wait_for_logs(&self, needle: &str, count: usize) -> bool {
        wait_for(&self.stderr, needle, count, Duration::from_secs(10))
    }

    /// Waits up to `timeout` for the log to contain `needle` (for what
    /// follows a build, say).
    pub fn wait_for_log_within(&self, needle: &str, timeout: Duration) -> bool {
        wait_for(&self.stderr, needle, 1, timeout)
    }

    /// Kills the server (SIGKILL) and waits, so its files are closed before
    /// the next start.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (with the `kill` command: std cannot send signals) and
    /// waits up to 60 s for the server to exit on its own.
    pub fn terminate(mut self) -> anyhow::Result<ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "outpost did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Outpost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `outpost` with `args` to completion (for startup errors) and returns
/// its exit status and stderr.
pub fn run_to_exit(binary: &Path, args: &[&str]) -> anyhow::Result<(ExitStatus, String)> {
    let mut command = Command::new(binary);
    command.args(args);
    let finished = run(command)?;
    Ok((finished.status, finished.stderr))
}

/// A long-running command (`outpost tail`) whose output is read as it
/// comes. Killed when dropped.
pub struct Streaming {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Streaming {
    /// Starts the command with piped output.
    pub fn spawn(command: &mut Command) -> anyhow::Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (stdout, _) = collect(child.stdout.take().expect("stdout is piped"), |_| {});
        let (stderr, _) = collect(child.stderr.take().expect("stderr is piped"), |_| {});
        Ok(Self {
            child,
            stdout,
            stderr,
        })
    }

    /// Waits up to 10 s for stdout to contain `needle`.
    pub fn wait_for_stdout(&self, needle: &str) -> bool {
        wait_for(&self.stdout, needle, 1, Duration::from_secs(10))
    }

    /// Waits up to 10 s for stderr to contain `needle`.
    pub fn wait_for_stderr(&self, needle: &str) -> bool {
        wait_for(&self.stderr, needle, 1, Duration::from_secs(10))
    }

    /// (stdout, stderr) so far.
    pub fn output(&self) -> (String, String) {
        (
            self.stdout.lock().unwrap().clone(),
            self.stderr.lock().unwrap().clone(),
        )
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to `timeout` for `text` to contain `needle` `count` times.
fn wait_for(text: &Mutex<String>, needle: &str, count: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if text.lock().unwrap().matches(needle).count() >= count {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Finished {
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// How long a command may run: builds of a fresh handler project included.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs a command to completion, reading its output as it comes (a build
/// prints more than a pipe holds). Gives up after 10 minutes.
pub fn run(mut command: Command) -> anyhow::Result<Finished> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (stdout, stdout_done) = collect(child.stdout.take().expect("stdout is piped"), |_| {});
    let (stderr, stderr_done) = collect(child.stderr.take().expect("stderr is piped"), |_| {});
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            anyhow::bail!("{command:?} did not exit within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The readers stop at end of file, once the child (and anything it
    // started that shares its pipes) is gone.
    let _ = stdout_done.join();
    let _ = stderr_done.join();
    let stdout = stdout.lock().unwrap().clone();
    let stderr = stderr.lock().unwrap().clone();
    Ok(Finished {
        status,
        stdout,
        stderr,
    })
}

/// Appends every line of `pipe` to a shared string, in a thread of its
/// own, calling `each` with the line first.
fn collect(
    pipe: impl Read + Send + 'static,
    mut each: impl FnMut(&str) + Send + 'static,
) -> (Arc<Mutex<String>>, std::thread::JoinHandle<()>) {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    let reader = std::thread::spawn(move || {
        let mut pipe = BufReader::new(pipe);
        let mut line = String::new();
        while pipe.read_line(&mut line).is_ok_and(|n| n > 0) {
            each(line.trim_end());
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    (text, reader)
}

/// Compiles a component written in the WebAssembly text format (for
/// components no Rust toolchain would make, such as one with many memories).
pub fn wat_component(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("the test's WAT is valid")
}

/// A fresh directory for precompiled artifacts or config files.
pub fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("a temp dir can be created")
}

/// Writes a node config into `dir` and returns its path.
pub fn write_config(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("node.toml");
    std::fs::write(&path, toml).expect("config is written");
    path
}

/// Runs `future` to completion on a fresh current-thread runtime: the
/// tests' synchronous way to use the async clients.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
        .block_on(future)
}

/// Runs `binary serve` on one worker with `toml` as its node config, on
/// a free port, with its precompiled cache in the returned directory.
pub fn serve_config(binary: &Path, toml: &str) -> (Outpost, TempDir) {
    let dir = temp_dir();
    write_config(dir.path(), toml);
    (serve_dir(binary, dir.path()), dir)
}

/// Starts `outpost serve` (one worker) on `dir/node.toml`, with its
/// precompiled cache in `dir/cache`: what [`serve_config`] starts, and
/// starts again after a restart.
pub fn serve_dir(binary: &Path, dir: &Path) -> Outpost {
    let mut command = Command::new(binary);
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--config",
        ])
        .arg(dir.join("node.toml"))
        .arg("--cache-dir")
        .arg(dir.join("cache"));
    Outpost::spawn(command).expect("the node starts")
}

/// A response with its body read.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: http::StatusCode,
    /// Headers.
    pub headers: http::HeaderMap,
    /// HTTP version the server answered with.
    pub version: http::Version,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value of `name`, which must be present and valid text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("response has no {name} header: {:?}", self.headers))
            .to_str()
            .expect("header is text")
    }
}

/// An HTTP client: HTTP/1.1 by default, HTTP/2 with prior knowledge when
/// asked.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    /// An HTTP/1.1 client with keep-alive.
    pub fn http1() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// An HTTP/2 client with prior knowledge (h2c), as load balancers use.
    pub fn http2() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    /// GET `url`.
    pub async fn get(&self, url: &str) -> anyhow::Result<Reply> {
        self.send(http::Request::get(url).body(Full::default())?)
            .await
    }

    /// POST `body` to `url`.
    pub async fn post(&self, url: &str, body: impl Into<Bytes>) -> anyhow::Result<Reply> {
        self.send(http::Request::post(url).body(Full::new(body.into()))?)
            .await
    }

    /// Sends any request and reads the whole response. Bounded by a 60 s
    /// timeout so a hung server fails the test instead of hanging it.
    pub async fn send(&self, request: http::Request<Full<Bytes>>) -> anyhow::Result<Reply> {
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            anyhow::Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                version: parts.version,
                body,
            })
        };
        tokio::time::timeout(Duration::from_secs(60), exchange).await?
    }
}
