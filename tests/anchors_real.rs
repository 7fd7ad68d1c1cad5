//! Anchors through real processes on loopback: `ls /` lists every host of the
//! cluster (a gateway and two workers), and bytes set at a path on one host are
//! read back, listed and removed from another process.

mod support;

use std::collections::BTreeSet;

use support::{
    free_udp_port, run_observer, start_gateway_discovering, start_worker, stdout_of_success,
    TempDir,
};

#[test]
fn ls_lists_every_host_and_anchors_hold_bytes() {
    let discover = format!("/ip4/228.8.8.8/udp/{}/multicast/lo", free_udp_port());
    let data = TempDir::new("anchors-real");
    let gateway = start_gateway_discovering(data.path(), "/ip4/127.0.0.1/tcp/0", &discover, &[]);
    let gateway_peer = gateway.peer.clone();
    let workers = [start_worker(&discover, &[]), start_worker(&discover, &[])];
    let hosts: BTreeSet<String> = workers
        .iter()
        .map(|w| format!("/{}", w.peer))
        .chain([format!("/{gateway_peer}")])
        .collect();

    // The root is the view: every host, however it joined. A node heartbeats
    // every TTL/7, so 6 s hears each of them.
    let listed: BTreeSet<String> =
        stdout_of_success(&run_observer(&["ls", "/"], &discover), "ls /")
            .lines()
            .map(str::to_string)
            .collect();
    assert_eq!(listed, hosts);

    let host = format!("/{}", workers[0].peer);
    let anchor = format!("{host}/jobs/greeting");
    stdout_of_success(
        &run_observer(&["anchor", "set", &anchor, "hello"], &discover),
        "anchor set",
    );
    assert_eq!(
        stdout_of_success(
            &run_observer(&["anchor", "get", &anchor], &discover),
            "anchor get"
        ),
        "hello"
    );
    let under_host = stdout_of_success(&run_observer(&["ls", &host], &discover), "ls host");
    assert_eq!(under_host.trim(), format!("{host}/jobs\t-\t1 children"));
    let under_jobs = stdout_of_success(
        &run_observer(&["ls", &format!("{host}/jobs")], &discover),
        "ls jobs",
    );
    assert_eq!(under_jobs.trim(), format!("{anchor}\tvalue\t0 children"));
    // Anchors are the host's own: the other worker holds nothing there.
    let other = format!("/{}/jobs/greeting", workers[1].peer);
    assert!(!run_observer(&["anchor", "get", &other], &discover)
        .status
        .success());

    assert_eq!(
        stdout_of_success(
            &run_observer(&["anchor", "rm", &format!("{host}/jobs")], &discover),
            "anchor rm"
        )
        .trim(),
        "removed 2 anchors"
    );
    let gone = run_observer(&["anchor", "get", &anchor], &discover);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no anchor at"));
    // A path that is not below a host is refused before any network.
    let refused = run_observer(&["anchor", "set", "/", "x"], &discover);
    assert!(!refused.status.success());
}
