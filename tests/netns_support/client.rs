//! The chaos test's HTTP client: every operation it makes is recorded in a
//! shared history for `ww_sched::history::check`.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use ww_sched::history::{
    task_view_from_json, History, Listed, Observed, OpKind, Operation, Outcome,
};

/// The client's clock: ms since the epoch (the host clock the gateway's
/// clock also starts from).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The test's HTTP client: the gateway's LAN address, from the bridge.
#[derive(Clone)]
pub struct Client {
    /// `http://<gateway LAN address>:<port>`.
    pub base: String,
    /// The API token (required off loopback).
    pub token: String,
    /// The HTTP agent (statuses are answers, not errors).
    pub agent: ureq::Agent,
    /// Every operation recorded so far.
    pub history: Arc<Mutex<History>>,
}

/// An answer: status and JSON body, or why none came.
pub type Answer = Result<(u16, Value), String>;

impl Client {
    pub fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let result = match (method, body) {
            ("POST", Some(body)) => {
                let mut req = self.agent.post(&url).header("Authorization", &auth);
                if let Some(key) = key {
                    req = req.header("Idempotency-Key", key);
                }
                req.header("Content-Type", "application/json")
                    .send(body.to_string().as_bytes())
            }
            ("POST", None) => unreachable!("a POST has a body"),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            _ => self.agent.get(&url).header("Authorization", &auth).call(),
        };
        let mut response = result.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    pub fn record(&self, client: u32, kind: OpKind, invoked_ms: u64, outcome: Outcome) -> usize {
        let completed_ms = (!matches!(outcome, Outcome::Unknown)).then(now_ms);
        self.history.lock().unwrap().record(Operation {
            client,
            kind,
            invoked_ms,
            completed_ms,
            outcome,
        })
    }

    /// One submission attempt; the id acknowledged, if any.
    pub fn submit(&self, key: &str, body: &Value) -> Option<String> {
        let at = now_ms();
        let answer = self.send("POST", "/tasks", Some(key), Some(body));
        let (outcome, id) = match answer {
            Ok((200 | 201, v)) => {
                let id = v["id"].as_str().unwrap_or_default().to_string();
                (
                    Outcome::Ok(Observed::Submitted { id: id.clone() }),
                    Some(id),
                )
            }
            Ok((status, v)) => (Outcome::Failed(format!("{status} {v}")), None),
            Err(_) => (Outcome::Unknown, None),
        };
        let kind = OpKind::Submit {
            id: None,
            idempotency_key: key.to_string(),
        };
        self.record(0, kind, at, outcome);
        id
    }

    /// One cancel attempt; whether it was answered.
    pub fn cancel(&self, id: &str) -> bool {
        let at = now_ms();
        let outcome = match self.send("DELETE", &format!("/tasks/{id}"), None, None) {
            Ok((200, v)) => Outcome::Ok(Observed::Cancelled {
                status: v["status"].as_str().unwrap_or_default().to_string(),
            }),
            Ok((status, v)) => Outcome::Failed(format!("{status} {v}")),
            Err(_) => Outcome::Unknown,
        };
        let answered = !matches!(outcome, Outcome::Unknown);
        self.record(0, OpKind::Cancel { id: id.into() }, at, outcome);
        answered
    }

    /// A read of one task, not recorded.
    pub fn read_op(&self, client: u32, id: &str) -> Operation {
        let at = now_ms();
        let outcome = match self.send("GET", &format!("/tasks/{id}"), None, None) {
            Ok((200, v)) => match task_view_from_json(&v) {
                Some(view) => Outcome::Ok(Observed::Task(view)),
                None => Outcome::Failed(format!("unreadable task {v}")),
            },
            Ok((404, _)) => Outcome::Ok(Observed::NotFound),
            Ok((status, v)) => Outcome::Failed(format!("{status} {v}")),
            Err(_) => Outcome::Unknown,
        };
        Operation {
            client,
            kind: OpKind::Read { id: id.into() },
            invoked_ms: at,
            completed_ms: (!matches!(outcome, Outcome::Unknown)).then(now_ms),
            outcome,
        }
    }

    /// Every task, page by page, as one operation, not recorded.
    pub fn list_op(&self, client: u32) -> Operation {
        let at = now_ms();
        let mut items = Vec::new();
        let mut after = String::new();
        let outcome = loop {
            let path = format!("/tasks?limit=1000&after={after}");
            match self.send("GET", &path, None, None) {
                Ok((200, Value::Array(rows))) => {
                    for row in &rows {
                        let id = row["id"].as_str().unwrap_or_default().to_string();
                        let key = row["description"]
                            .as_str()
                            .and_then(|d| d.strip_prefix("netns "))
                            .map(str::to_string);
                        items.push(Listed { id, key });
                    }
                    match rows.last() {
                        Some(last) if rows.len() == 1000 => {
                            after = last["id"].as_str().unwrap_or_default().to_string();
                        }
                        _ => break Outcome::Ok(Observed::Listing(items)),
                    }
                }
                Ok((status, v)) => break Outcome::Failed(format!("{status} {v}")),
                Err(_) => break Outcome::Unknown,
            }
        };
        Operation {
            client,
            kind: OpKind::List,
            invoked_ms: at,
            completed_ms: (!matches!(outcome, Outcome::Unknown)).then(now_ms),
            outcome,
        }
    }
}
