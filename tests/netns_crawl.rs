//! Forming the pool by CIDR crawl where multicast is off: a gateway and two
//! workers, real `ww-sched` processes on three "hosts" (network namespaces
//! on a bridge, a /24), each told only the block to crawl
//! (`--discover /ip4/<net>/udp/<port>/cidr/24`) and a swarm key. The pool
//! must form within [`JOIN_BOUND`] of the last node's start, whichever order
//! they start in: the node that starts first crawls an empty block, so it is
//! the later nodes' crawls (and the answers they draw) that must join them.
//!
//! Needs root and iproute2 (`ip netns`); fails, saying so, without them.
//! `WW_NETNS_LOG` sets the nodes' `RUST_LOG`; `WW_NETNS_KEEP=1` keeps their
//! logs after a pass.

mod netns_support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netns_support::client::Client;
use netns_support::{clean_leftovers, preflight, Lan, NsProc, PREFIX};
use serde_json::Value;

/// The bound issue 25 sets on a /24 join.
const JOIN_BOUND: Duration = Duration::from_secs(5);
/// The UDP port every node crawls and answers on (inside the namespaces only).
const CRAWL_PORT: u16 = 8823;

/// Starts `ww-sched args` on `host`, waiting for its line `ready`.
fn start(host: &netns_support::Host, args: &[&str], log: &Path, ready: &str) -> (NsProc, String) {
    let mut proc = NsProc::start(host, args, log);
    let rest = proc
        .wait_for(ready, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{} did not start: {e}", args[0]));
    (proc, rest)
}

/// Workers the gateway's pool holds, or why none could be read.
fn pool_size(client: &Client) -> Result<usize, String> {
    match client.send("GET", "/workers", None, None)? {
        (200, Value::Array(rows)) => Ok(rows.len()),
        other => Err(format!("GET /workers: {other:?}")),
    }
}

/// One order of starts; returns the time from the last start to a full pool.
fn join_time(lan: &Lan, dir: &Path, key: &str, gateway_position: usize) -> Duration {
    let third = lan.hosts[0].ip.rsplit_once('.').expect("an IPv4 address").0;
    let discover = format!("/ip4/{third}.0/udp/{CRAWL_PORT}/cidr/24");
    let ns = format!("crawl-{}-{gateway_position}", std::process::id());
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    let mut procs = Vec::new();
    let mut http = None;
    let mut last_start = Instant::now();
    let mut worker = 0;
    for (position, host) in lan.hosts.iter().enumerate() {
        let log = dir.join(format!("order{gateway_position}-node{position}.log"));
        last_start = Instant::now();
        if position == gateway_position {
            let data = path(&dir.join(format!("gateway{gateway_position}")));
            let listen = format!("{}:0", host.ip);
            let args = [
                "gateway",
                "--swarm-key",
                key,
                "--http",
                &listen,
                "--data",
                &data,
                "--discover",
                &discover,
                "--ns",
                &ns,
            ];
            let (proc, url) = start(host, &args, &log, "http on http://");
            http = Some((url, data));
            procs.push(proc);
        } else {
            worker += 1;
            let key_file = path(&dir.join(format!("order{gateway_position}-worker{worker}.key")));
            let args = [
                "worker",
                "--swarm-key",
                key,
                "--key",
                &key_file,
                "--discover",
                &discover,
                "--ns",
                &ns,
            ];
            procs.push(start(host, &args, &log, "peer id: ").0);
        }
    }
    let (url, data) = http.expect("one host runs the gateway");
    let token = std::fs::read_to_string(Path::new(&data).join("api-token"))
        .expect("the gateway's api token")
        .trim()
        .to_string();
    let client = Client {
        base: format!("http://{url}"),
        token,
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into(),
        history: Arc::default(),
    };
    loop {
        let size = pool_size(&client);
        if size == Ok(2) {
            let took = last_start.elapsed();
            drop(procs);
            return took;
        }
        assert!(
            last_start.elapsed() < Duration::from_secs(90),
            "the pool did not form within 90 s by CIDR crawl (gateway started {} of 3): \
             {size:?}; logs in {}",
            gateway_position + 1,
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn three_hosts_on_a_24_form_the_pool_by_cidr_crawl_within_5_s() {
    if let Err(e) = preflight() {
        panic!("{e}");
    }
    for removed in clean_leftovers() {
        eprintln!("netns_crawl: removed the leftover {removed}");
    }
    let dir = std::env::temp_dir().join(format!("{PREFIX}-{}-crawl", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the test's directory");
    let key = path_of(&dir.join("swarm.key"));
    let out = std::process::Command::new(netns_support::binary())
        .args(["swarm-key", "--out", &key])
        .output()
        .expect("run ww-sched swarm-key");
    assert!(out.status.success(), "swarm-key: {out:?}");
    // Addresses handed out in sequence (a bridge, DHCP, a container runtime),
    // which the crawl's outward order reaches first, and addresses spread over
    // the block, which it reaches only after most of a pass.
    let mut times = Vec::new();
    for (layout, numbers) in [("adjacent", [1u8, 2, 3]), ("spread", [9, 97, 201])] {
        let lan = Lan::create_at(&numbers).unwrap_or_else(|e| panic!("cannot build the LAN: {e}"));
        let layout_dir = dir.join(layout);
        std::fs::create_dir_all(&layout_dir).expect("the layout's directory");
        // The gateway first (workers find it), in the middle, and last (it
        // finds workers whose own first passes found nothing).
        for gateway_position in 0..3 {
            let took = join_time(&lan, &layout_dir, &key, gateway_position);
            eprintln!(
                "netns_crawl: {layout} hosts {numbers:?}, gateway started {} of 3: the pool \
                 formed {} ms after the last start",
                gateway_position + 1,
                took.as_millis()
            );
            times.push((layout, gateway_position + 1, took));
        }
    }
    for (layout, position, took) in &times {
        assert!(
            *took <= JOIN_BOUND,
            "{layout} hosts, the gateway started {position} of 3: the pool formed after \
             {took:?}, over {JOIN_BOUND:?} (all: {times:?}; logs in {})",
            dir.display()
        );
    }
    if std::env::var_os("WW_NETNS_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn path_of(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}
