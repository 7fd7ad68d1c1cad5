//! The checked-in Rust generated from `schema/*.capnp` must match what
//! `capnp compile` produces now. Set `WW_REGEN_SCHEMA=1` to rewrite it.

use std::path::{Path, PathBuf};

const SCHEMAS: &[&str] = &["anchor", "boot", "channel", "executor", "records", "worker"];

fn capnp_available() -> bool {
    std::process::Command::new("capnp")
        .arg("--version")
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false)
}

fn generate(out_dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = capnpc::CompilerCommand::new();
    cmd.src_prefix(root.join("schema"))
        .output_path(out_dir)
        .default_parent_module(vec!["schema".into()]);
    for name in SCHEMAS {
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
            "the `capnp` compiler is missing, so src/schema/ cannot be checked against \
             schema/*.capnp: install it with `apt-get install capnproto` \
             (or set WW_SKIP_SCHEMA_CHECK=1 outside CI to skip this one check)"
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let checked_in = root.join("src").join("schema");
    let tmp: PathBuf = std::env::temp_dir().join(format!("ww-schema-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    generate(&tmp);
    let regen = std::env::var_os("WW_REGEN_SCHEMA").is_some();
    for name in SCHEMAS {
        let file = format!("{name}_capnp.rs");
        let fresh = std::fs::read_to_string(tmp.join(&file)).unwrap();
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
    std::fs::remove_dir_all(&tmp).ok();
}
