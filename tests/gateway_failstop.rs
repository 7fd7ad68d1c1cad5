//! Fail-stop on a real disk: a `ww-sched gateway` process whose data directory
//! is a small tmpfs is sent submissions until the filesystem is full. It must
//! then refuse with 503 `storage` (never acknowledge what is not on disk),
//! report the cause on `/healthz`, and exit non-zero within seconds. Restarted
//! on the same directory with room again, it holds every task it acknowledged
//! and takes new ones.
//!
//! Mounting needs root (CI runs as root); without it the test fails and says so.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{http_agent, Proc, TempDir};
use ww_sched::tasks::HASH_PUZZLE_WASM;

/// The small filesystem the gateway fills.
const SMALL: &str = "3m";
/// Room enough for the restart.
const LARGE: &str = "64m";
/// How soon after its first refusal the gateway must have exited.
const EXIT_WITHIN: Duration = Duration::from_secs(10);
/// Submissions at most before the disk must have filled.
const SUBMISSIONS_MAX: usize = 20_000;

/// A tmpfs mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
    _parent: TempDir,
}

fn mount(args: &[&str]) -> Result<(), String> {
    let output = Command::new("mount")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let parent = TempDir::new("failstop");
        let dir = parent.0.join("disk");
        std::fs::create_dir_all(&dir).expect("mount point");
        let target = dir.to_str().expect("utf-8 path");
        if let Err(e) = mount(&[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            target,
        ]) {
            panic!(
                "this test fills a small tmpfs and needs root to mount one (CI runs as root; \
                 run `cargo test --test gateway_failstop` as root): mount said: {e}"
            );
        }
        Tmpfs {
            dir,
            _parent: parent,
        }
    }

    fn resize(&self, size: &str) {
        let target = self.dir.to_str().expect("utf-8 path");
        mount(&["-o", &format!("remount,size={size}"), target]).expect("remount the tmpfs");
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn agent() -> ureq::Agent {
    http_agent(Duration::from_secs(10))
}

/// Status and JSON body, or `None` when the gateway did not answer.
fn send(request: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Option<(u16, Value)> {
    let mut response = request.ok()?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_json().unwrap_or(Value::Null);
    Some((status, body))
}

fn start_gateway(data: &Path) -> (Proc, String) {
    let data = data.join("data");
    let started = support::start_gateway(
        data.to_str().expect("utf-8 path"),
        "/ip4/127.0.0.1/tcp/0",
        &[],
    );
    (started.proc, started.http)
}

#[test]
fn a_full_disk_stops_the_gateway_and_a_restart_finds_every_acknowledged_task() {
    let disk = Tmpfs::new(SMALL);
    let (mut gateway, http) = start_gateway(disk.path());
    let (status, body) = send(
        agent()
            .post(&format!("{http}/modules"))
            .header("Content-Type", "application/wasm")
            .send(HASH_PUZZLE_WASM),
    )
    .expect("upload answered");
    assert_eq!(status, 201, "{body}");
    let module = body["hash"].as_str().expect("hash").to_string();

    // Submissions with long descriptions, each far in the future (they stay
    // pending and on disk), until one is refused.
    let description = "x".repeat(4000);
    let mut acked = Vec::new();
    let mut refusal = None;
    for i in 0..SUBMISSIONS_MAX {
        let id = format!("fill-{i:05}");
        let task = json!({
            "id": id, "module": module, "description": description,
            "args": [1, 1], "start_ms": 86_400_000,
        });
        match send(agent().post(&format!("{http}/tasks")).send_json(&task)) {
            Some((201, _)) => acked.push(id),
            Some((status, body)) => {
                refusal = Some((Instant::now(), status, body));
                break;
            }
            None => {
                refusal = Some((Instant::now(), 0, Value::Null));
                break;
            }
        }
    }
    let (refused_at, status, body) =
        refusal.unwrap_or_else(|| panic!("{SUBMISSIONS_MAX} submissions fit on {SMALL}"));
    assert!(!acked.is_empty(), "nothing fitted at all");
    assert_eq!(status, 503, "the refusal: {body}");
    assert_eq!(body["error"], "storage", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("os error 28"),
        "the cause names ENOSPC: {body}"
    );
    // Until it exits, it refuses everything and says why.
    if let Some((status, health)) = send(agent().get(&format!("{http}/healthz")).call()) {
        assert_eq!(status, 503, "{health}");
        assert_eq!(health["error"], "storage", "{health}");
    }
    if let Some((status, read)) = send(agent().get(&format!("{http}/tasks/{}", acked[0])).call()) {
        assert_eq!(status, 503, "no read after a fail-stop: {read}");
    }
    let exit = gateway
        .wait_exit(EXIT_WITHIN)
        .unwrap_or_else(|| panic!("the gateway did not exit within {EXIT_WITHIN:?}"));
    assert!(!exit.success(), "a fail-stop exits non-zero: {exit}");
    eprintln!(
        "{} tasks acknowledged on {SMALL}; refused, then exited ({exit}) {:.2} s later",
        acked.len(),
        refused_at.elapsed().as_secs_f64()
    );

    // With room again, a restart on the same directory has every acknowledged task.
    disk.resize(LARGE);
    let (mut gateway, http) = start_gateway(disk.path());
    for id in &acked {
        let (status, task) =
            send(agent().get(&format!("{http}/tasks/{id}")).call()).expect("answered");
        assert_eq!(status, 200, "acknowledged task {id} lost: {task}");
        assert_eq!(task["status"], "pending", "{task}");
    }
    let task = json!({ "id": "after", "module": module, "args": [1, 1], "start_ms": 86_400_000 });
    let (status, body) =
        send(agent().post(&format!("{http}/tasks")).send_json(&task)).expect("answered");
    assert_eq!(status, 201, "{body}");
    let (status, health) = send(agent().get(&format!("{http}/healthz")).call()).expect("health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["open_tasks"], acked.len() + 1, "{health}");
    gateway.kill();
}
