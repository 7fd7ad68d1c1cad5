//! Running `ww-sched` processes from integration tests: start one, read its
//! output lines as they come, wait for a line, kill it (always, even when an
//! assertion fails first).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// A running `ww-sched` process; killed (SIGKILL) when dropped.
pub struct Proc {
    child: Child,
    lines: Receiver<String>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Proc {
    /// Starts `ww-sched <args>` with stdout piped and stderr discarded (shown
    /// when `WW_TEST_STDERR` is set, to see a process's logs while debugging).
    pub fn start(args: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ww-sched"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("WW_TEST_STDERR").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("start ww-sched");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line, or `None` at the deadline or when the process ended.
    pub fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = self.lines.recv_timeout(left).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Reads until a line starts with `prefix` and returns the rest of it.
    pub fn wait_for(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_line(deadline) {
                Some(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_string();
                    }
                }
                None => panic!(
                    "no line starting with {prefix:?} within {timeout:?}; output so far: {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A started gateway process and where it is.
pub struct StartedGateway {
    /// The process.
    pub proc: Proc,
    /// Its peer id.
    pub peer: String,
    /// The address workers dial, ending in /p2p/<peer id>.
    pub dial: String,
    /// Its REST API, `http://host:port`.
    pub http: String,
}

/// Starts `ww-sched gateway` on `data`, listening for workers on `listen`, its
/// API on a port the OS chooses, no discovery, plus `extra` flags; waits until
/// it printed where it is.
pub fn start_gateway(data: &str, listen: &str, extra: &[&str]) -> StartedGateway {
    start_gateway_discovering(data, listen, "none", extra)
}

/// [`start_gateway`] with discovery `discover` instead of none.
pub fn start_gateway_discovering(
    data: &str,
    listen: &str,
    discover: &str,
    extra: &[&str],
) -> StartedGateway {
    let mut args = vec![
        "gateway",
        "--http",
        "127.0.0.1:0",
        "--data",
        data,
        "--listen",
        listen,
        "--discover",
        discover,
    ];
    args.extend_from_slice(extra);
    let mut proc = Proc::start(&args);
    let peer = proc.wait_for("gateway peer id: ", Duration::from_secs(30));
    let dial = proc.wait_for("listening on ", Duration::from_secs(10));
    let http = proc.wait_for("http on ", Duration::from_secs(10));
    StartedGateway {
        proc,
        peer,
        dial,
        http,
    }
}

/// An HTTP client that hands back every status (errors are answers too).
pub fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// A started worker process and where it is.
pub struct StartedWorker {
    /// The process.
    pub proc: Proc,
    /// Its peer id.
    pub peer: String,
    /// Its first listen address, ending in /p2p/<peer id>.
    pub address: String,
}

/// Starts `ww-sched worker` on loopback with one slot (unless `extra` says
/// `--slots`), discovery `discover` and `extra` flags, and waits until it
/// printed its id and address.
pub fn start_worker(discover: &str, extra: &[&str]) -> StartedWorker {
    let mut args = vec![
        "worker",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--discover",
        discover,
    ];
    if !extra.contains(&"--slots") {
        args.extend_from_slice(&["--slots", "1"]);
    }
    args.extend_from_slice(extra);
    let mut proc = Proc::start(&args);
    let peer = proc.wait_for("peer id: ", Duration::from_secs(30));
    let address = proc.wait_for("listening on ", Duration::from_secs(10));
    StartedWorker {
        proc,
        peer,
        address,
    }
}

/// A free TCP port on loopback, chosen by the OS.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind loopback")
        .local_addr()
        .expect("local address")
        .port()
}

/// A fresh directory under the system's temp dir, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A new, empty directory whose name includes `label`.
    pub fn new(label: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("ww-{label}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// The path as text.
    pub fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free UDP port on loopback, chosen by the OS: a multicast group port of a
/// test's own, so tests running at once never hear each other.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("bind loopback")
        .local_addr()
        .expect("local address")
        .port()
}

/// Runs a one-shot `ww-sched <args> --discover <discover> --wait-ms 6000`
/// (an observer of the cluster) to its end.
pub fn run_observer(args: &[&str], discover: &str) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--discover", discover, "--wait-ms", "6000"]);
    Command::new(env!("CARGO_BIN_EXE_ww-sched"))
        .args(&all)
        .output()
        .expect("run ww-sched")
}

/// The stdout of a command that must have succeeded (else its stderr, in the panic).
pub fn stdout_of_success(output: &std::process::Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

/// A client for the API with a 30 s timeout.
pub fn agent() -> ureq::Agent {
    http_agent(Duration::from_secs(30))
}

/// GET `url` as JSON.
pub fn get(url: &str) -> serde_json::Value {
    agent()
        .get(url)
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap()
}

/// Submits the original's multipart form with `wasm`; the created task.
pub fn submit_form(http: &str, fields: &[(&str, &str)], wasm: &[u8]) -> serde_json::Value {
    let boundary = "ww-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"task.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(wasm);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut response = agent()
        .post(&format!("{http}/tasks"))
        .header(
            "Content-Type",
            &format!("multipart/form-data; boundary={boundary}"),
        )
        .send(&body[..])
        .unwrap();
    assert_eq!(response.status(), 201, "submission refused");
    response.body_mut().read_json().unwrap()
}

/// Waits until the gateway at `http` lists `count` workers.
pub fn wait_for_workers(http: &str, count: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let workers = get(&format!("{http}/workers"));
        if workers.as_array().map_or(0, Vec::len) == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pool never had {count} workers: {workers}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until task `id` is final; its view.
pub fn wait_final(http: &str, id: &str, timeout: Duration) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let task = get(&format!("{http}/tasks/{id}"));
        if matches!(
            task["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} not finished in {timeout:?}: {task}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
