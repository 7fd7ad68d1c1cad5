//! A fixed set of connections, each owned by one thread that runs the jobs
//! handed to it.
//!
//! The `postgres` client blocks on a runtime of its own, which panics inside
//! another runtime's async context, and the gateway reads from its core's
//! thread. So no caller touches a connection: it sends a job down a bounded
//! queue and waits for the answer, from any thread. A connection that breaks is
//! dropped and made again by the next job; its prepared statements go with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls, Statement};

use super::queries::ALL;
use super::{pg_err, schema};
use crate::sched::store::StoreError;

/// Jobs waiting for a connection per connection; callers block beyond it.
const QUEUE_PER_CONNECTION: usize = 16;

/// One connection and the statements prepared on it.
pub(super) struct Conn {
    config: postgres::Config,
    client: Option<Client>,
    prepared: HashMap<&'static str, Statement>,
}

impl Conn {
    /// The open client and its statements, connecting first if there is none
    /// or it broke: a new connection checks (or migrates) the schema, then
    /// prepares every statement.
    pub(super) fn open(
        &mut self,
    ) -> Result<(&mut Client, &HashMap<&'static str, Statement>), StoreError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            self.prepared.clear();
            let what = "connecting to PostgreSQL";
            let mut client = self.config.connect(NoTls).map_err(pg_err(what))?;
            schema::migrate(&mut client)?;
            for sql in ALL {
                let statement = client.prepare(sql).map_err(pg_err(what))?;
                self.prepared.insert(sql, statement);
            }
            self.client = Some(client);
        }
        let Conn {
            client, prepared, ..
        } = self;
        let client = client.as_mut().expect("connected above");
        Ok((client, prepared))
    }
}

impl Conn {
    /// Forgets the connection (and its statements); the next job connects.
    fn drop_client(&mut self) {
        self.client = None;
        self.prepared.clear();
    }
}

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// The connection threads and the queue that feeds them.
pub(super) struct Pool {
    jobs: SyncSender<Job>,
    wait: Duration,
    connections: usize,
}

impl Pool {
    /// Starts `connections` threads (at least one) that connect with `config`
    /// on their first job; a caller waits at most `wait` for an answer.
    pub(super) fn start(
        config: postgres::Config,
        connections: usize,
        wait: Duration,
    ) -> Result<Self, StoreError> {
        let connections = connections.max(1);
        let (jobs, queue) = mpsc::sync_channel::<Job>(connections * QUEUE_PER_CONNECTION);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..connections {
            let queue = queue.clone();
            let mut conn = Conn {
                config: config.clone(),
                client: None,
                prepared: HashMap::new(),
            };
            std::thread::Builder::new()
                .name(format!("ww-pg-{n}"))
                .spawn(move || serve(&queue, &mut conn))
                .map_err(|e| StoreError::Unavailable {
                    what: format!("starting PostgreSQL connection thread: {e}"),
                    waited_ms: 0,
                })?;
        }
        Ok(Pool {
            jobs,
            wait,
            connections,
        })
    }

    /// How many connections the pool keeps.
    pub(super) fn connections(&self) -> usize {
        self.connections
    }

    /// Runs `job` (a read: safe to repeat) on a connection and returns its answer.
    pub(super) fn call<T: Send + 'static>(
        &self,
        what: &str,
        job: impl FnOnce(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run(what, false, job)
    }

    /// Runs `job`, a write, on a connection: if its answer does not come in
    /// time after it started, whether it committed is unknown
    /// (`CommitUnknown`, which is never retried).
    pub(super) fn call_write<T: Send + 'static>(
        &self,
        what: &str,
        job: impl FnOnce(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run(what, true, job)
    }

    fn run<T: Send + 'static>(
        &self,
        what: &str,
        write: bool,
        job: impl FnOnce(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let deadline = Instant::now() + self.wait;
        let started = Arc::new(AtomicBool::new(false));
        let (answer, answered) = mpsc::sync_channel(1);
        let flag = started.clone();
        let job: Job = Box::new(move |conn| {
            // The caller has given up: running it now would do what nobody
            // waits for (a commit already counted as failed, a renewal).
            if Instant::now() >= deadline {
                return;
            }
            flag.store(true, Ordering::Release);
            let result = job(conn);
            // A connection error (I/O, a closed socket, a timeout, or the
            // server ending the session) leaves the connection in doubt: the
            // next job makes a new one. Other errors leave it usable.
            let broken = match &result {
                Err(StoreError::Postgres { source, .. }) => {
                    source.code().is_none_or(super::sqlstate::connection_broken)
                }
                Err(StoreError::CommitUnknown { .. }) => true,
                _ => false,
            };
            if broken {
                conn.drop_client();
            }
            // The caller may have given up waiting; nothing to tell it then.
            let _ = answer.send(result);
        });
        let waited_ms = u64::try_from(self.wait.as_millis()).unwrap_or(u64::MAX);
        let unavailable = || StoreError::Unavailable {
            what: what.to_string(),
            waited_ms,
        };
        // The queue is bounded: wait for room, but not past the deadline.
        let mut job = job;
        loop {
            match self.jobs.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return Err(unavailable()),
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return Err(unavailable());
                    }
                    job = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match answered.recv_timeout(left) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                if write && started.load(Ordering::Acquire) {
                    Err(StoreError::CommitUnknown {
                        what: what.to_string(),
                        detail: format!("no answer within {waited_ms} ms"),
                    })
                } else {
                    Err(unavailable())
                }
            }
        }
    }
}

/// One connection's thread: takes jobs until the pool is dropped.
fn serve(queue: &Mutex<Receiver<Job>>, conn: &mut Conn) {
    loop {
        let job = {
            let Ok(queue) = queue.lock() else {
                return;
            };
            match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        job(conn);
    }
}
