//! `ww-sched gateway`: the REST API and scheduler, with workers registering
//! through its `lb` channel.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{bail, Context, Result};
use clap::Args;
use ww::cluster::Membership;
use ww::transport::{Identity, Libp2pTransport, Transport};
use ww_sched::gateway::{
    clock::host_clock, lock, serve, ApiAccess, ApiToken, Gateway, GatewayConfig, HttpLimits,
    Retention, API_TOKEN_FILE,
};
use ww_sched::sched::{PgOptions, Store, OPEN_TASKS_MAX_DEFAULT};

use super::ClusterArgs;

/// Flags of `ww-sched gateway`.
#[derive(Args)]
pub struct GatewayArgs {
    /// Address of the REST API. On a loopback address (the default) no token
    /// is needed; on any other, every request but /healthz needs
    /// `Authorization: Bearer <token>` with the token in DATA/api-token
    /// (generated, mode 0600, on first start) or --api-token-file. On every
    /// address a request for another Host (see --api-host) or from another
    /// Origin is refused (403).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Directory of the task database (and of the key file); created if missing.
    #[arg(long, default_value = "ww-sched-data")]
    data: PathBuf,
    /// Multiaddr workers reach the gateway on (repeatable). Defaults to every
    /// interface with --swarm-key, loopback without one.
    #[arg(long = "listen")]
    listen: Vec<String>,
    /// Key file of the gateway's identity; defaults to DATA/gateway.key, so a
    /// restarted gateway keeps its peer id and workers find it again.
    #[arg(long)]
    key: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    limits: GatewayLimits,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Where a gateway keeps its tasks (`ww-sched gateway`).
#[derive(Args, Clone, Debug, Default)]
pub struct StoreArgs {
    /// Keep tasks in PostgreSQL instead of the embedded database in DATA:
    /// postgres://USER[:PASSWORD]@HOST:PORT/DB (or a libpq key=value string).
    /// Several gateways may share one database. The schema is created or
    /// migrated at start. Prefer the environment variable to the flag when
    /// the URL holds a password (flags show in `ps`).
    #[arg(
        long,
        value_name = "URL",
        env = "WW_SCHED_STORE",
        hide_env_values = true
    )]
    pub store: Option<String>,
    /// Connections to PostgreSQL kept open (with --store).
    #[arg(long, default_value_t = PgOptions::default().connections)]
    pub store_connections: usize,
}

impl StoreArgs {
    /// The store these flags name, opened (embedded: in `data`).
    fn open(&self, data: &Path) -> Result<Option<Store>> {
        let Some(url) = &self.store else {
            return Ok(None);
        };
        if !(url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.contains('='))
        {
            bail!("--store: expected postgres://USER@HOST:PORT/DB (or a libpq key=value string)");
        }
        let options = PgOptions {
            connections: self.store_connections.clamp(1, 64),
            ..PgOptions::default()
        };
        let store = Store::postgres(url, options).with_context(|| {
            format!(
                "cannot open the task store on PostgreSQL (data directory {} still holds the key and token)",
                data.display()
            )
        })?;
        Ok(Some(store))
    }
}

/// Who may use the REST API (`ww-sched gateway`).
#[derive(Args, Clone, Debug, Default)]
pub struct ApiArgs {
    /// Read the API token from FILE (mode 0600 or stricter, at least 32
    /// characters) instead of generating DATA/api-token.
    #[arg(long, value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Also accept requests whose Host (or Origin) is NAME, e.g. the DNS name
    /// clients or a reverse proxy use; NAME:PORT accepts that port only
    /// (repeatable). Other names are refused with 403 (DNS rebinding).
    #[arg(long = "api-host", value_name = "NAME")]
    pub api_hosts: Vec<String>,
}

/// How long a gateway that fail-stopped keeps answering 503 before it exits.
pub const FAIL_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// What a gateway holds and for how long.
#[derive(Args, Clone, Debug)]
pub struct GatewayLimits {
    /// Most unfinished tasks at once; a submission beyond them is answered
    /// 503 `busy` with Retry-After. Finished tasks do not count.
    #[arg(long, default_value_t = OPEN_TASKS_MAX_DEFAULT)]
    pub open_tasks_max: usize,
    /// How long a finished task (and its runs) stays readable after it
    /// finished: a number with s, m, h or d (e.g. 90m, 7d); 0 keeps them until
    /// --finished-max pushes them out.
    #[arg(long, default_value = "7d", value_parser = parse_duration_ms)]
    pub retain: u64,
    /// Most finished tasks kept; beyond it the oldest are deleted first.
    #[arg(long, default_value_t = Retention::default().finished_max)]
    pub finished_max: u64,
    /// How long a module no task refers to is kept (s, m, h or d).
    #[arg(long, default_value = "1h", value_parser = parse_duration_ms)]
    pub module_grace: u64,
    /// Largest request body (and module upload), in bytes.
    #[arg(long, default_value_t = BODY_BYTES_MAX_DEFAULT)]
    pub body_bytes_max: usize,
}

/// The default of --body-bytes-max: 16 MiB.
pub const BODY_BYTES_MAX_DEFAULT: usize = 16 * 1024 * 1024;

impl Default for GatewayLimits {
    fn default() -> Self {
        let retention = Retention::default();
        GatewayLimits {
            open_tasks_max: OPEN_TASKS_MAX_DEFAULT,
            retain: retention.retain_ms.unwrap_or(0),
            finished_max: retention.finished_max,
            module_grace: retention.module_grace_ms,
            body_bytes_max: BODY_BYTES_MAX_DEFAULT,
        }
    }
}

/// Parses `0`, or a whole number followed by `ms`, `s`, `m`, `h` or `d`, into ms.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(0);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit: add ms, s, m, h or d"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a whole number then ms, s, m, h or d"))?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (ms, s, m, h or d)"
            ))
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// A gateway serving HTTP on `http` (port 0: any free port).
pub struct RunningGateway {
    /// The gateway; dropping it stops the core.
    pub gateway: Gateway,
    /// Where its REST API listens.
    pub http: SocketAddr,
    /// The file the API token was read from (or written to).
    pub token_file: PathBuf,
    /// Whether requests need the token (the API is not on loopback).
    pub token_required: bool,
    /// The HTTP server task.
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts a gateway over `transport` and serves its API, its token in DATA.
pub async fn start(
    transport: &Libp2pTransport,
    membership: Option<Rc<Membership>>,
    data: &Path,
    http: SocketAddr,
    limits: &GatewayLimits,
) -> Result<RunningGateway> {
    start_with(
        transport,
        membership,
        data,
        http,
        limits,
        &ApiArgs::default(),
        &StoreArgs::default(),
    )
    .await
}

/// [`start`], with who may use the API said by `api`.
pub async fn start_with(
    transport: &Libp2pTransport,
    membership: Option<Rc<Membership>>,
    data: &Path,
    http: SocketAddr,
    limits: &GatewayLimits,
    api: &ApiArgs,
    store: &StoreArgs,
) -> Result<RunningGateway> {
    let mut config = GatewayConfig::new(data.to_path_buf());
    config.body_bytes_max = limits.body_bytes_max;
    config.sched.seed = rand::random();
    config.sched.open_tasks_max = limits.open_tasks_max;
    config.retention = Retention {
        retain_ms: (limits.retain > 0).then_some(limits.retain),
        finished_max: limits.finished_max,
        module_grace_ms: limits.module_grace,
        ..Retention::default()
    };
    let gateway = match store.open(data)? {
        Some(store) => {
            std::fs::create_dir_all(data)
                .with_context(|| format!("cannot create data directory {}", data.display()))?;
            Gateway::start_with_store(transport, membership, host_clock(), config, store).await?
        }
        None => Gateway::start(transport, membership, host_clock(), config).await?,
    };
    let listener = tokio::net::TcpListener::bind(http)
        .await
        .with_context(|| format!("cannot serve HTTP on {http}"))?;
    let http = listener.local_addr()?;
    // After the store is open: its lock keeps a second gateway on this
    // directory from generating a token at the same time.
    let token_file = match &api.api_token_file {
        Some(file) => file.clone(),
        None => data.join(API_TOKEN_FILE),
    };
    let token = match &api.api_token_file {
        Some(file) => ApiToken::read(file)?,
        None => ApiToken::load_or_create(data)?,
    };
    let mut access = ApiAccess::new(http, token).with_metrics(gateway.metrics());
    for name in &api.api_hosts {
        access = access
            .allow_host(name)
            .map_err(|e| anyhow::anyhow!("--api-host: {e}"))?;
    }
    let token_required = access.token_required();
    let limits = HttpLimits::default();
    let router = lock(gateway.router(), access, limits);
    let server = tokio::spawn(serve(listener, router, limits));
    Ok(RunningGateway {
        gateway,
        http,
        token_file,
        token_required,
        server,
    })
}

/// Runs the gateway until Ctrl-C; fails (exit code 1) when the gateway
/// fail-stops, so a supervisor restarts it on the same data directory.
pub async fn run(args: GatewayArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create data directory {}", args.data.display()))?;
    let key = args
        .key
        .clone()
        .unwrap_or_else(|| args.data.join("gateway.key"));
    let identity = Identity::load_or_create(&key)?;
    let network = &args.cluster.network;
    let listen = network.listen_addresses(&args.listen)?;
    let transport = Libp2pTransport::new(network.libp2p_config(identity.clone())?)?;
    // Served before listening, so no caller finds a protocol missing.
    let mut host_services = super::HostServices::serve(&transport)?;
    for address in listen {
        transport.listen(address).await?;
    }
    let membership = Rc::new(
        super::join_cluster(
            &transport,
            identity.clone(),
            &args.cluster,
            true,
            &[("role", "gateway")],
        )
        .await?,
    );
    host_services.join_dht(&transport, identity, membership.clone());
    let mut running = start_with(
        &transport,
        Some(membership),
        &args.data,
        args.http,
        &args.limits,
        &args.api,
        &args.store,
    )
    .await?;
    // Wildcard listeners report one address per interface just after binding.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let peer = transport.local_peer_id();
    println!("gateway peer id: {peer}");
    for address in transport.listen_addresses() {
        println!("listening on {}", address.with_peer(&peer));
    }
    println!("http on http://{}", running.http);
    if running.token_required {
        println!(
            "api token in {} (required: the API is not on loopback)",
            running.token_file.display()
        );
    } else {
        println!(
            "api token in {} (not required on loopback)",
            running.token_file.display()
        );
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            // Among several gateways: hand the tasks over now, not in 11 s.
            if let Err(e) = running.gateway.resign().await {
                tracing::warn!(error = %e, "lease not ended; other gateways take over when it runs out");
            }
            Ok(())
        }
        cause = running.gateway.stopped() => {
            // Requests in flight get their 503 and /healthz shows the cause
            // for a moment; then the process goes, for a supervisor to restart.
            tokio::time::sleep(FAIL_STOP_GRACE).await;
            bail!("gateway stopped, exiting so that it restarts on {}: {cause}", args.data.display())
        }
        served = &mut running.server => match served {
            Ok(Ok(())) => bail!("the HTTP server ended"),
            Ok(Err(e)) => Err(anyhow::Error::from(e).context("the HTTP server failed")),
            Err(e) => Err(anyhow::Error::from(e).context("the HTTP server task ended")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn durations_take_a_unit_and_zero_means_for_ever() {
        assert_eq!(parse_duration_ms("0"), Ok(0));
        assert_eq!(parse_duration_ms("7d"), Ok(7 * 86_400_000));
        assert_eq!(parse_duration_ms("90m"), Ok(90 * 60_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert!(parse_duration_ms("7").unwrap_err().contains("no unit"));
        assert!(parse_duration_ms("7w")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration_ms("d").is_err());
        assert!(parse_duration_ms("99999999999999999d").is_err());
    }
}
