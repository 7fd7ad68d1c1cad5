//! A throwaway PostgreSQL server for the tests of one test binary, and a
//! fresh database per test on it.
//!
//! The server is started on first use: its own data directory under the temp
//! dir, a port the OS picked (bound to 127.0.0.1, then handed over), a Unix
//! socket in the data directory; it is stopped and its directory removed when
//! the test binary exits. Its binaries come from Debian's `postgresql` package
//! (`bash scripts/test` installs it); without them a test fails saying so.
//! As root, the server runs as the package's `postgres` user (PostgreSQL
//! refuses to run as root).

// libc calls (signals to the test's own server, and stopping it at exit): the crate denies unsafe code, this file allows it.
#![allow(unsafe_code)]
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once, OnceLock};

/// A running server: the test binary's shared one, or a test's own.
pub struct PgServer {
    /// Its data directory (holds the socket and the log too).
    pub dir: PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
    /// The server options it was started with.
    options: String,
    /// A test's own server is stopped when dropped; the shared one at exit.
    owned: bool,
}

static SERVER: OnceLock<PgServer> = OnceLock::new();
/// Data directories of servers to stop at exit (if a test did not).
static TO_STOP: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());
static SERVERS: AtomicU32 = AtomicU32::new(0);
static AT_EXIT: Once = Once::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

const INSTALL: &str = "PostgreSQL's server binaries (initdb, pg_ctl) were not found: \
     install Debian's `postgresql` package (apt-get install postgresql), or run \
     `bash scripts/test`, which installs it; WW_SCHED_PG_BIN may name their directory";

/// The directory holding `initdb` and `pg_ctl`.
fn binaries() -> PathBuf {
    if let Ok(dir) = std::env::var("WW_SCHED_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(|d| d.ok())
                .map(|d| d.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    // The newest version: directories are named by major version.
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(bin) = found.pop() {
        return bin;
    }
    let which = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .expect("sh");
    let path = String::from_utf8_lossy(&which.stdout).trim().to_string();
    assert!(!path.is_empty(), "{INSTALL}");
    Path::new(&path)
        .parent()
        .expect("a directory")
        .to_path_buf()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `program args...` run as the server's user; panics with its output on failure.
fn run_as_server(program: &Path, args: &[&str]) -> Result<(), String> {
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = command
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {args:?}: {}\n{}\n{}",
            program.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn stop_and_remove(bin: &Path, dir: &Path) {
    let _ = run_as_server(
        &bin.join("pg_ctl"),
        &[
            "-D",
            &dir.display().to_string(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ],
    );
    let _ = std::fs::remove_dir_all(dir);
}

extern "C" fn stop_at_exit() {
    let servers = TO_STOP.lock().map(|mut s| std::mem::take(&mut *s));
    for (bin, dir) in servers.unwrap_or_default() {
        stop_and_remove(&bin, &dir);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.owned {
            stop_and_remove(&self.bin, &self.dir);
            if let Ok(mut servers) = TO_STOP.lock() {
                servers.retain(|(_, dir)| *dir != self.dir);
            }
        }
    }
}

impl PgServer {
    /// The server of this test binary, started on first call.
    pub fn get() -> &'static PgServer {
        SERVER.get_or_init(|| PgServer::start(false))
    }

    /// A server of the caller's own (to stop and start again), stopped when dropped.
    pub fn private() -> PgServer {
        PgServer::start(true)
    }

    /// Stops the server (`pg_ctl stop -m fast`); its data stays.
    pub fn pause(&self) {
        run_as_server(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                &self.dir.display().to_string(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        )
        .unwrap_or_else(|e| panic!("pg_ctl stop: {e}"));
    }

    /// Stops every process of the server in its tracks (SIGSTOP): connections
    /// stay open and nothing answers, as when the network to it is cut.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid_file = std::fs::read_to_string(self.dir.join("postmaster.pid"))
            .expect("postmaster.pid: is the server running?");
        let pid: libc::pid_t = pid_file
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("a pid in postmaster.pid");
        // Children first (from /proc: no procps needed), so none is left to
        // notice its parent stopped.
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(child) = entry.file_name().to_string_lossy().parse::<libc::pid_t>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // The parent's pid is the second field after the command's ")".
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<libc::pid_t>().ok());
            if parent == Some(pid) {
                // SAFETY: signals a process of the test's own server.
                unsafe { libc::kill(child, signal) };
            }
        }
        // SAFETY: signals the test's own server.
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "signal {signal} to {pid}"
        );
    }

    /// Starts the server again on the same port and data.
    pub fn resume(&self) {
        let data = self.dir.display().to_string();
        let log = self.dir.join("server.log").display().to_string();
        run_as_server(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                &data,
                "-l",
                &log,
                "-o",
                &self.options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .unwrap_or_else(|e| panic!("pg_ctl start: {e}"));
    }

    fn start(owned: bool) -> PgServer {
        let bin = binaries();
        assert!(bin.join("initdb").exists(), "{INSTALL}");
        let n = SERVERS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ww-sched-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("pg dir");
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres", &dir.display().to_string()])
                .status()
                .expect("chown");
            assert!(
                status.success(),
                "chown postgres {}: is Debian's postgresql package installed (it makes the user)?",
                dir.display()
            );
        }
        let data = dir.display().to_string();
        run_as_server(
            &bin.join("initdb"),
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )
        .unwrap_or_else(|e| panic!("initdb failed: {e}"));
        AT_EXIT.call_once(|| {
            // SAFETY: registers a plain function with no arguments, run once at exit.
            unsafe { libc::atexit(stop_at_exit) };
        });
        TO_STOP.lock().unwrap().push((bin.clone(), dir.clone()));
        let mut last = String::new();
        for _ in 0..5 {
            // A port the OS picked, free when it is handed over (rarely taken
            // in between: then another one).
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let options = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -k {data} -c max_connections=200 \
                 -c shared_buffers=32MB"
            );
            let log = dir.join("server.log").display().to_string();
            match run_as_server(
                &bin.join("pg_ctl"),
                &[
                    "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
                ],
            ) {
                Ok(()) => {
                    return PgServer {
                        dir,
                        port,
                        bin,
                        options,
                        owned,
                    }
                }
                Err(e) => {
                    last = format!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default())
                }
            }
        }
        panic!("PostgreSQL did not start: {last}");
    }

    /// URL of database `db` as the superuser.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .expect("connect to the test server")
    }
}

/// A database of its own for one test, dropped with this value.
pub struct PgDatabase {
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// The server's maintenance database, to drop this one from.
    admin: String,
}

impl PgDatabase {
    /// A new empty database on the binary's server.
    pub fn new(label: &str) -> PgDatabase {
        PgDatabase::on(PgServer::get(), label)
    }

    /// A new empty database on `server`.
    pub fn on(server: &PgServer, label: &str) -> PgDatabase {
        let n = DATABASES.fetch_add(1, Ordering::Relaxed);
        let clean: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let name = format!("ww_{clean}_{n}");
        server
            .admin()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        PgDatabase {
            url: server.url(&name),
            name,
            admin: server.url("postgres"),
        }
    }

    /// Runs SQL as the superuser in this database (to look behind the store's back).
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect")
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Some(server) = SERVER.get() {
            let _ = server.admin().batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
