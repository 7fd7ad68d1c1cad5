//! `ww-sched swarm-key` and `ww-sched id`: make the secrets a cluster runs on.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use ww::transport::{Identity, SwarmKey};

/// Flags of `ww-sched swarm-key`.
#[derive(Args)]
pub struct SwarmKeyArgs {
    /// Write the key to FILE (mode 0600, refusing to overwrite) instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Prints (or writes) a new random swarm key in the libp2p PSK v1 format.
pub fn swarm_key(args: SwarmKeyArgs) -> Result<()> {
    let key = SwarmKey::generate();
    let Some(path) = args.out else {
        print!("{key}");
        return Ok(());
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("{} exists; not overwriting a swarm key", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    file.write_all(key.to_string().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "wrote swarm key {} (fingerprint {})",
        path.display(),
        key.fingerprint()
    );
    Ok(())
}

/// Flags of `ww-sched id`.
#[derive(Args)]
pub struct IdArgs {
    /// The node's key file; created (mode 0600) if missing.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
}

/// Prints the peer id of a key file, creating the key if it is missing, so an
/// operator can name a node (`--allow`, `--gateway`) before it first starts.
pub fn id(args: IdArgs) -> Result<()> {
    let identity = Identity::load_or_create(&args.key)?;
    println!("{}", identity.peer_id());
    Ok(())
}
