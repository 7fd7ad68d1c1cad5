//! A small blocking HTTP client for the gateway's REST API (CLI only).

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into()
}

fn answer(
    url: &str,
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Value> {
    let mut response =
        response.with_context(|| format!("cannot reach {url} (is `ww-sched gateway` running?)"))?;
    let status = response.status();
    let body: Value = response
        .body_mut()
        .read_json()
        .with_context(|| format!("{url} answered {status} without JSON"))?;
    if !status.is_success() {
        let kind = body["error"].as_str().unwrap_or("error");
        let detail = body["detail"].as_str().unwrap_or("");
        bail!("{url}: {status} {kind}: {detail}");
    }
    Ok(body)
}

/// `GET url` as JSON.
pub fn get_json(url: &str) -> Result<Value> {
    answer(url, agent().get(url).call())
}

/// `POST url` with a JSON body.
pub fn post_json(url: &str, body: &Value) -> Result<Value> {
    answer(url, agent().post(url).send_json(body))
}

/// `POST url` with raw bytes.
pub fn post_bytes(url: &str, content_type: &str, bytes: &[u8]) -> Result<Value> {
    answer(
        url,
        agent()
            .post(url)
            .header("Content-Type", content_type)
            .send(bytes),
    )
}

/// `DELETE url`.
pub fn delete(url: &str) -> Result<Value> {
    answer(url, agent().delete(url).call())
}

/// Uploads a module and returns its hex hash.
pub fn upload_module(gateway: &str, wasm: &[u8]) -> Result<String> {
    let answer = post_bytes(&format!("{gateway}/modules"), "application/wasm", wasm)?;
    answer["hash"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the gateway returned no module hash"))
}

/// Whether a task status is final.
pub fn is_final(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}
