//! A small blocking HTTP client for the gateway's REST API (CLI only).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use serde_json::Value;
use ww_sched::gateway::API_TOKEN_FILE;

/// Where `submit`, `tasks` and `logs` find the gateway's API token.
#[derive(Args)]
pub struct AuthArgs {
    /// The gateway's data directory: its api-token is sent when readable and
    /// WW_SCHED_TOKEN is not set (a gateway on loopback needs none).
    #[arg(long, default_value = "ww-sched-data")]
    data: PathBuf,
}

impl AuthArgs {
    /// A client carrying the token these flags find.
    pub fn client(&self) -> Client {
        Client::new(find_token(&self.data))
    }
}

/// The environment variable a client's API token is read from first.
pub const TOKEN_ENV: &str = "WW_SCHED_TOKEN";

/// The API token to send: `WW_SCHED_TOKEN` if set, else `DATA/api-token` if
/// readable, else none (enough for a gateway on loopback).
pub fn find_token(data: &Path) -> Option<String> {
    if let Ok(token) = std::env::var(TOKEN_ENV) {
        let token = token.trim();
        if !token.is_empty() {
            return Some(token.to_string());
        }
    }
    let path = data.join(API_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text.trim().to_string()).filter(|t| !t.is_empty()),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "no API token file");
            None
        }
    }
}

/// Calls to one gateway, with its token when there is one.
#[derive(Clone, Debug, Default)]
pub struct Client {
    token: Option<String>,
}

impl Client {
    /// A client sending `Authorization: Bearer <token>` when `token` is some.
    pub fn new(token: Option<String>) -> Client {
        Client { token }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .into()
    }

    fn authorize<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    /// `GET url` as JSON.
    pub fn get_json(&self, url: &str) -> Result<Value> {
        answer(url, self.authorize(Self::agent().get(url)).call())
    }

    /// `GET url` as text (a run's stdout); an error answer is still JSON.
    pub fn get_text(&self, url: &str) -> Result<String> {
        let mut response = reach(url, self.authorize(Self::agent().get(url)).call())?;
        if !response.status().is_success() {
            return Err(refusal(url, &mut response));
        }
        response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("{url}: cannot read the answer"))
    }

    /// `GET url` as JSON, retried while the gateway is unreachable or
    /// answers 503 (a restart, a burst of load): a follower outlives a blip.
    pub fn get_json_patiently(&self, url: &str) -> Result<Value> {
        patiently(|| self.get_json(url))
    }

    /// `GET url` as text, retried like [`Client::get_json_patiently`].
    pub fn get_text_patiently(&self, url: &str) -> Result<String> {
        patiently(|| self.get_text(url))
    }

    /// `POST url` with a JSON body.
    pub fn post_json(&self, url: &str, body: &Value) -> Result<Value> {
        answer(url, self.authorize(Self::agent().post(url)).send_json(body))
    }

    /// `POST url` with raw bytes.
    pub fn post_bytes(&self, url: &str, content_type: &str, bytes: &[u8]) -> Result<Value> {
        let request = self
            .authorize(Self::agent().post(url))
            .header("Content-Type", content_type);
        answer(url, request.send(bytes))
    }

    /// `DELETE url`.
    pub fn delete(&self, url: &str) -> Result<Value> {
        answer(url, self.authorize(Self::agent().delete(url)).call())
    }

    /// Uploads a module and returns its hex hash.
    pub fn upload_module(&self, gateway: &str, wasm: &[u8]) -> Result<String> {
        let answer = self.post_bytes(&format!("{gateway}/modules"), "application/wasm", wasm)?;
        answer["hash"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("the gateway returned no module hash"))
    }
}

/// The gateway could not be reached, or answered 503: worth trying again.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(String);

/// Attempts before a transient failure is given up on (about 30 s in all).
const ATTEMPTS: u32 = 12;

/// Calls `call` until it succeeds, fails for good, or [`ATTEMPTS`] transient
/// failures in a row, waiting longer after each (250 ms doubling to 4 s).
fn patiently<T>(mut call: impl FnMut() -> Result<T>) -> Result<T> {
    let mut wait = Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        match call() {
            Err(e) if e.downcast_ref::<Unavailable>().is_some() && attempt < ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "gateway unavailable; retrying");
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(4));
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The response, or [`Unavailable`] when the gateway could not be reached.
fn reach(
    url: &str,
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<ureq::http::Response<ureq::Body>> {
    response.map_err(|e| {
        anyhow::Error::new(Unavailable(format!(
            "cannot reach {url} (is `ww-sched gateway` running?): {e}"
        )))
    })
}

/// The error a non-success answer stands for (its JSON `error` and `detail`).
fn refusal(url: &str, response: &mut ureq::http::Response<ureq::Body>) -> anyhow::Error {
    let status = response.status();
    let body: Value = match response.body_mut().read_json() {
        Ok(body) => body,
        Err(_) => return anyhow!("{url} answered {status} without JSON"),
    };
    let kind = body["error"].as_str().unwrap_or("error");
    let detail = body["detail"].as_str().unwrap_or("");
    if status == ureq::http::StatusCode::UNAUTHORIZED {
        return anyhow!(
            "{url}: {status} {kind}: set {TOKEN_ENV}, or --data to the gateway's data \
             directory, so that its api-token is sent"
        );
    }
    let message = format!("{url}: {status} {kind}: {detail}");
    if status == ureq::http::StatusCode::SERVICE_UNAVAILABLE {
        return anyhow::Error::new(Unavailable(message));
    }
    anyhow!(message)
}

fn answer(
    url: &str,
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Value> {
    let mut response = reach(url, response)?;
    let status = response.status();
    if !status.is_success() {
        return Err(refusal(url, &mut response));
    }
    response
        .body_mut()
        .read_json()
        .with_context(|| format!("{url} answered {status} without JSON"))
}

/// `GET url` as JSON, without a token (a gateway on loopback).
pub fn get_json(url: &str) -> Result<Value> {
    Client::default().get_json(url)
}

/// `POST url` with a JSON body, without a token (a gateway on loopback).
pub fn post_json(url: &str, body: &Value) -> Result<Value> {
    Client::default().post_json(url, body)
}

/// Uploads a module without a token (a gateway on loopback); its hex hash.
pub fn upload_module(gateway: &str, wasm: &[u8]) -> Result<String> {
    Client::default().upload_module(gateway, wasm)
}

/// Whether a task status is final.
pub fn is_final(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}
