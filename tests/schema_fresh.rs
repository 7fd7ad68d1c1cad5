//! The checked-in Rust generated from the workspace's `.capnp` files (the
//! stack's in `ww/schema/`, the scheduler's in `schema/`) must match what
//! `capnp compile` produces now. Set `WW_REGEN_SCHEMA=1` to rewrite it.

use std::path::{Path, PathBuf};

/// Each crate's directory (under the workspace root) and its schemas, whose
/// Rust is checked in at `<dir>/src/schema/<name>_capnp.rs`.
const CRATES: &[(&str, &[&str])] = &[
    ("ww", &["anchor", "boot", "channel", "executor", "records"]),
    (".", &["worker"]),
];

fn capnp_available() -> bool {
    std::process::Command::new("capnp")
        .arg("--version")
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false)
}

fn generate(root: &Path, schemas: &[&str], out_dir: &Path) {
    let mut cmd = capnpc::CompilerCommand::new();
    cmd.src_prefix(root.join("schema"))
        .output_path(out_dir)
        .default_parent_module(vec!["schema".into()]);
    for name in schemas {
        cmd.file(root.join("schema").join(format!("{name}.capnp")));
    }
    cmd.run().expect("capnp compile failed");
}

#[test]
fn generated_schema_code_is_fresh() {
    if !capnp_available() {
        // Skipping must be asked for by name, so a missing compiler never passes unseen.
        let opted_out = std::env::var_os("WW_SKIP_SCHEMA_CHECK").is_some();
        let in_ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
        assert!(
            opted_out && !in_ci,
            "the `capnp` compiler is missing, so the generated src/schema/ code cannot be checked against \
             the .capnp files: install it with `apt-get install capnproto` \
             (or set WW_SKIP_SCHEMA_CHECK=1 outside CI to skip this one check)"
        );
        return;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp: PathBuf = std::env::temp_dir().join(format!("ww-schema-{}", std::process::id()));
    let regen = std::env::var_os("WW_REGEN_SCHEMA").is_some();
    for (dir, schemas) in CRATES {
        let root = workspace.join(dir);
        let out = tmp.join(dir.replace('.', "ww-sched"));
        std::fs::create_dir_all(&out).unwrap();
        generate(&root, schemas, &out);
        check(&out, &root.join("src").join("schema"), schemas, regen);
    }
    std::fs::remove_dir_all(&tmp).ok();
}

/// Compares (or, with `regen`, rewrites) each schema's checked-in Rust in
/// `checked_in` against the fresh copy in `fresh_dir`.
fn check(fresh_dir: &Path, checked_in: &Path, schemas: &[&str], regen: bool) {
    for name in schemas {
        let file = format!("{name}_capnp.rs");
        let fresh = std::fs::read_to_string(fresh_dir.join(&file)).unwrap();
        let path = checked_in.join(&file);
        if regen {
            std::fs::write(&path, &fresh).unwrap();
            continue;
        }
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            old == fresh,
            "{} is stale: run `WW_REGEN_SCHEMA=1 cargo test --test schema_fresh` and commit it",
            path.display()
        );
    }
}
