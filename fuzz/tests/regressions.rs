//! Replays every checked-in input of every fuzz target: the seed corpora
//! (`fuzz/corpus/<target>/`) and the inputs of crashes found and fixed
//! (`fuzz/regressions/<target>/`), through the same checks as `cargo fuzz`.
//! A crash the fuzzer finds is fixed, and its input goes under
//! `regressions/` so that this test keeps it fixed.

use std::path::Path;

#[test]
fn every_checked_in_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0;
    for (target, check) in ww_sched_fuzz::TARGETS {
        let mut inputs = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
                continue;
            };
            let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
            paths.sort();
            for path in paths {
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| check(&data));
                assert!(outcome.is_ok(), "{target}: {} fails", path.display());
                inputs += 1;
            }
        }
        assert!(
            inputs > 0,
            "{target} has no checked-in input (fuzz/corpus/{target}/)"
        );
        replayed += inputs;
    }
    ww_sched_fuzz::remove_http_data();
    assert!(replayed >= ww_sched_fuzz::TARGETS.len());
}
