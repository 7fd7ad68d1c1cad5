//! A LAN of network namespaces for `tests/netns.rs`: a bridge in the root
//! namespace (with an address, for the test's own HTTP client), one namespace
//! per host joined to it by a veth pair, `ww-sched` processes started inside
//! them with `ip netns exec`, and the faults the chaos test injects. Every
//! name carries the prefix `wwc` and the test's pid, so leftovers of a run
//! that crashed are found and removed by the next; everything is removed on
//! drop, also after a panic.

#![allow(dead_code)]

pub mod client;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// The prefix of every namespace, link and directory this harness makes.
pub const PREFIX: &str = "wwc";

/// Runs `program args`, returning its stdout, or a message with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program} {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `ip args`.
pub fn ip(args: &[&str]) -> Result<String, String> {
    run("ip", args)
}

/// What the harness needs, or why it cannot run: root (or CAP_NET_ADMIN) and
/// iproute2 with network namespaces, veth and bridges.
pub fn preflight() -> Result<(), String> {
    let uid = run("id", &["-u"]).map_err(|e| format!("cannot tell the user id: {e}"))?;
    if uid.trim() != "0" {
        return Err(format!(
            "the network-namespace test needs root (it creates namespaces, a bridge, veth \
             pairs and addresses); running as uid {}. Run `cargo test --test netns` as root \
             (CI runs as root).",
            uid.trim()
        ));
    }
    ip(&["netns", "list"]).map_err(|e| {
        format!(
            "`ip netns` does not work ({e}); install iproute2 (Debian: apt-get install iproute2)"
        )
    })?;
    run("tc", &["-V"]).map_err(|e| format!("`tc` is missing ({e}); install iproute2"))?;
    Ok(())
}

/// Whether a pid names a live process.
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid inside a name made by this harness (`wwc<pid>...`, `wwc-<pid>-...`).
fn pid_in(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?.trim_start_matches('-');
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Removes namespaces and links of earlier runs whose test process is gone.
/// Returns what it removed.
pub fn clean_leftovers() -> Vec<String> {
    let mut removed = Vec::new();
    let stale = |name: &str| pid_in(name).is_some_and(|pid| !alive(pid));
    for line in ip(&["netns", "list"]).unwrap_or_default().lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if stale(name) && ip(&["netns", "del", name]).is_ok() {
            removed.push(format!("netns {name}"));
        }
    }
    for line in ip(&["-o", "link", "show"]).unwrap_or_default().lines() {
        // "7: wwc123h1@if6: <...>"
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or_default();
        if stale(name) && ip(&["link", "del", name]).is_ok() {
            removed.push(format!("link {name}"));
        }
    }
    removed
}

/// One host of the LAN.
#[derive(Clone, Debug)]
pub struct Host {
    /// The namespace.
    pub netns: String,
    /// The root-side end of its veth pair (on the bridge).
    pub veth: String,
    /// Its address on the LAN.
    pub ip: String,
}

/// The LAN: a bridge, its address, the hosts. Removed on drop.
pub struct Lan {
    /// The bridge (root namespace).
    pub bridge: String,
    /// The bridge's address: where the test's client talks from.
    pub client_ip: String,
    /// The hosts, host 1 first.
    pub hosts: Vec<Host>,
    /// Whether the kernel has `sch_netem` (else a `tbf` rate limit stands in).
    pub netem: bool,
}

impl Lan {
    /// Builds a LAN of `n` hosts on a /24 of 10.77.0.0/16 no interface uses,
    /// at host addresses 1 to `n`.
    pub fn create(n: usize) -> Result<Lan, String> {
        let numbers: Vec<u8> = (1..=n)
            .map(|k| u8::try_from(k).expect("at most 253 hosts"))
            .collect();
        Lan::create_at(&numbers)
    }

    /// Builds a LAN with one host at each host address in `numbers` (each
    /// 1..=253) on a /24 of 10.77.0.0/16 no interface uses.
    pub fn create_at(numbers: &[u8]) -> Result<Lan, String> {
        let pid = std::process::id();
        let used = ip(&["-4", "-o", "addr", "show"])?;
        let third = (0..250u32)
            .map(|i| (pid + i) % 250 + 1)
            .find(|x| !used.contains(&format!("10.77.{x}.")))
            .ok_or("no free 10.77.x.0/24 subnet")?;
        let mut lan = Lan {
            bridge: format!("{PREFIX}{pid}br"),
            client_ip: format!("10.77.{third}.254"),
            hosts: Vec::new(),
            netem: false,
        };
        ip(&["link", "add", &lan.bridge, "type", "bridge"])?;
        // Flood multicast to every port: no querier on this LAN to make
        // snooping learn the group.
        ip(&[
            "link",
            "set",
            &lan.bridge,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", lan.client_ip),
            "dev",
            &lan.bridge,
        ])?;
        ip(&["link", "set", &lan.bridge, "up"])?;
        for (index, number) in numbers.iter().enumerate() {
            let k = index + 1;
            let host = Host {
                netns: format!("{PREFIX}-{pid}-host{k}"),
                veth: format!("{PREFIX}{pid}h{k}"),
                ip: format!("10.77.{third}.{number}"),
            };
            ip(&["netns", "add", &host.netns])?;
            lan.hosts.push(host.clone());
            ip(&[
                "link",
                "add",
                &host.veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &host.netns,
            ])?;
            ip(&["link", "set", &host.veth, "master", &lan.bridge])?;
            ip(&["link", "set", &host.veth, "up"])?;
            let ns = host.netns.as_str();
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", host.ip),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
        }
        let probe = &lan.hosts[0];
        lan.netem = tc_in(
            probe,
            &[
                "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "1ms",
            ],
        )
        .is_ok();
        if lan.netem {
            tc_in(probe, &["qdisc", "del", "dev", "eth0", "root"])?;
        }
        Ok(lan)
    }

    /// Cuts host `k` (0-based) off: its bridge port goes down.
    pub fn cut(&self, k: usize) -> Result<(), String> {
        ip(&["link", "set", &self.hosts[k].veth, "down"]).map(drop)
    }

    /// Joins host `k` again.
    pub fn heal_cut(&self, k: usize) -> Result<(), String> {
        ip(&["link", "set", &self.hosts[k].veth, "up"]).map(drop)
    }

    /// Degrades host `k`'s link both ways: netem loss 20% and 50 ms delay, or
    /// without netem a tbf rate limit of 256 kbit/s with a 100 ms queue
    /// (queueing delay and tail drops). Returns what it applied.
    pub fn degrade(&self, k: usize) -> Result<&'static str, String> {
        let host = &self.hosts[k];
        let (spec, what): (&[&str], _) = if self.netem {
            (
                &["netem", "loss", "20%", "delay", "50ms"],
                "netem loss 20% delay 50ms",
            )
        } else {
            (
                &[
                    "tbf", "rate", "256kbit", "burst", "16kb", "latency", "100ms",
                ],
                "tbf 256kbit/100ms (no sch_netem)",
            )
        };
        let mut inside = vec!["qdisc", "add", "dev", "eth0", "root"];
        inside.extend_from_slice(spec);
        tc_in(host, &inside)?;
        let mut outside = vec!["qdisc", "add", "dev", host.veth.as_str(), "root"];
        outside.extend_from_slice(spec);
        run("tc", &outside)?;
        Ok(what)
    }

    /// Removes host `k`'s degradation (quietly if there is none).
    pub fn heal_degrade(&self, k: usize) {
        let host = &self.hosts[k];
        let _ = tc_in(host, &["qdisc", "del", "dev", "eth0", "root"]);
        let _ = run("tc", &["qdisc", "del", "dev", &host.veth, "root"]);
    }
}

fn tc_in(host: &Host, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["netns", "exec", host.netns.as_str(), "tc"];
    all.extend_from_slice(args);
    ip(&all)
}

impl Drop for Lan {
    fn drop(&mut self) {
        for host in &self.hosts {
            let _ = ip(&["netns", "del", &host.netns]);
            let _ = ip(&["link", "del", &host.veth]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// The `ww-sched` binary the nodes run: `WW_NETNS_BIN` if set (a copy, so a
/// long run is not disturbed by rebuilds), else the one cargo built.
pub fn binary() -> String {
    std::env::var("WW_NETNS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ww-sched").to_string())
}

/// A `ww-sched` process in a namespace; SIGKILLed when dropped.
pub struct NsProc {
    child: Child,
    lines: Receiver<String>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl NsProc {
    /// Starts `ww-sched args` in `host`'s namespace, stderr appended to `log`
    /// (at `RUST_LOG=info`, or what `WW_NETNS_LOG` says).
    pub fn start(host: &Host, args: &[&str], log: &Path) -> NsProc {
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the process log");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &host.netns, &binary()])
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("WW_NETNS_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start ww-sched in a namespace");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        NsProc {
            child,
            lines,
            seen: Vec::new(),
            log: log.to_path_buf(),
        }
    }

    /// Reads until a line starts with `prefix`; the rest of it.
    pub fn wait_for(&mut self, prefix: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.to_string());
                    }
                }
                Err(_) => {
                    return Err(format!(
                        "no line starting with {prefix:?} within {timeout:?}; stdout {:?}; \
                         stderr in {}",
                        self.seen,
                        self.log.display()
                    ))
                }
            }
        }
    }

    /// The process id (`ip netns exec` execs the program, so it is ww-sched's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`STOP`, `CONT`, ...).
    pub fn signal(&self, signal: &str) {
        let _ = run("kill", &["-s", signal, &self.pid().to_string()]);
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGKILL (after SIGCONT, so a stopped process dies too), then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        self.signal("CONT");
        let _ = self.child.wait();
    }
}

impl Drop for NsProc {
    fn drop(&mut self) {
        self.kill();
    }
}
