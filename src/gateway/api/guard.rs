//! Who may use the REST API, and how much of the server one client may hold.
//!
//! [`lock`] wraps the router in three checks, outermost first:
//!
//! 1. **Host and Origin** (every address, every path): a `Host` that is not
//!    the listen address, `localhost`, an IP literal of the right kind, or a
//!    configured name is 403, so a page whose DNS name was rebound to this
//!    machine cannot read or drive the API; an `Origin` that is not
//!    `http://<an accepted host>`, or `Sec-Fetch-Site: cross-site/same-site`,
//!    is 403, so another site's page cannot post a task (CSRF). A request
//!    without any `Host` is 400 (RFC 9112 requires one).
//! 2. **Bearer token** (every path but `/healthz` and the dashboard's page
//!    shell, `/` and `/ui/...`, and only when the API
//!    listens on a non-loopback address): `Authorization: Bearer <token>`,
//!    compared in constant time, else 401 with `WWW-Authenticate: Bearer`.
//! 3. **Load**: at most [`HttpLimits::in_flight_max`] requests in the
//!    handlers at once (the next is 503 `overloaded` with `Retry-After`, not
//!    queued), each bounded by a deadline covering its body and its answer
//!    (503 `timeout` with `Retry-After`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use tokio::sync::Semaphore;

pub use super::token::{
    constant_time_eq, ApiToken, TokenError, API_TOKEN_BYTES, API_TOKEN_FILE, API_TOKEN_MIN_CHARS,
};
use crate::gateway::{ApiErrorKind, ErrorBody, GatewayMetrics, RETRY_AFTER_S};

/// Deadline of a request without a body to upload (reads, cancels).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of a submission or module upload: a 16 MiB body takes about
/// 130 s at 1 Mbit/s, and the answer waits for a commit on top.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(180);
/// Requests served at once; the next one is answered 503 at once.
pub const IN_FLIGHT_MAX: usize = 256;
/// Longest a client may take to send a request's head, or to start the
/// next request on a kept-alive connection, before it is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Open HTTP connections at once; more wait in the kernel's backlog. Well
/// under the usual 1,024 file descriptors, which libp2p and the store share.
pub const CONNECTIONS_MAX: usize = 512;

/// A name the API may be reached by besides its listen address (`--api-host`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostName {
    name: String,
    /// `None`: any port (a reverse proxy in front may use its own).
    port: Option<u16>,
}

/// What [`lock`] lets through: the listen address, extra host names, the token.
#[derive(Clone, Debug)]
pub struct ApiAccess {
    listen: SocketAddr,
    names: Vec<HostName>,
    token: ApiToken,
    token_required: bool,
    /// Where refusals are counted, if anywhere.
    metrics: Option<Arc<GatewayMetrics>>,
}

impl ApiAccess {
    /// Access to an API listening on `listen` (its real port, not 0): the
    /// token is required unless `listen` is a loopback address.
    pub fn new(listen: SocketAddr, token: ApiToken) -> ApiAccess {
        ApiAccess {
            listen,
            names: Vec::new(),
            token,
            token_required: !listen.ip().is_loopback(),
            metrics: None,
        }
    }

    /// The same access, counting every refusal in `metrics`
    /// (`ww_sched_http_refused_total{reason}`).
    pub fn with_metrics(mut self, metrics: Arc<GatewayMetrics>) -> ApiAccess {
        self.metrics = Some(metrics);
        self
    }

    /// Also accepts `name` (`NAME`: any port; `NAME:PORT`: that port) as the
    /// request's host, e.g. the DNS name clients or a reverse proxy use.
    pub fn allow_host(mut self, name: &str) -> Result<ApiAccess, String> {
        let (host, port) =
            split_host(name).ok_or_else(|| format!("{name:?} is not a host name or host:port"))?;
        let valid = host.parse::<IpAddr>().is_ok()
            || (!host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
        if !valid {
            return Err(format!("{name:?} is not a host name or host:port"));
        }
        self.names.push(HostName { name: host, port });
        Ok(self)
    }

    /// Whether requests (but `/healthz`) must carry the token.
    pub fn token_required(&self) -> bool {
        self.token_required
    }

    /// Whether a request's `Host` (or an `Origin`'s authority) names this API.
    fn host_allowed(&self, authority: &str) -> bool {
        let Some((host, port)) = split_host(authority) else {
            return false;
        };
        if self
            .names
            .iter()
            .any(|n| n.name == host && (n.port.is_none() || n.port == Some(port.unwrap_or(80))))
        {
            return true;
        }
        if port.unwrap_or(80) != self.listen.port() {
            return false;
        }
        if host == "localhost" {
            // Browsers resolve `localhost` to loopback themselves, so no
            // attacker's DNS can stand behind it.
            return true;
        }
        match host.parse::<IpAddr>() {
            // An IP literal cannot be rebound by DNS, so on a wildcard
            // listener any of the machine's addresses is fine.
            Ok(ip) => {
                ip == self.listen.ip()
                    || self.listen.ip().is_unspecified()
                    || (self.listen.ip().is_loopback() && ip.is_loopback())
            }
            Err(_) => false,
        }
    }

    /// Whether `origin` (`scheme://host[:port]`) is this API's own.
    fn origin_allowed(&self, origin: &str) -> bool {
        let (scheme, authority) = match origin.split_once("://") {
            Some(parts) => parts,
            None => return false,
        };
        match scheme.to_ascii_lowercase().as_str() {
            "http" => self.host_allowed(authority),
            // A TLS-terminating proxy in front serves the API as
            // https://<configured name>.
            "https" => split_host(authority).is_some_and(|(host, port)| {
                self.names.iter().any(|n| {
                    n.name == host && (n.port.is_none() || n.port == Some(port.unwrap_or(443)))
                })
            }),
            _ => false,
        }
    }

    /// `Ok` or the refusal for a request with `headers` to `path`.
    fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
        let mut hosts = headers.get_all(header::HOST).iter();
        let host = match (hosts.next(), hosts.next()) {
            (Some(host), None) => Some(host.to_str().map_err(|_| Refusal::BadHost)?),
            (None, _) => None,
            (Some(_), Some(_)) => return Err(Refusal::BadHost),
        };
        // HTTP/2 carries the host in the URI (`:authority`), and an HTTP/1.1
        // absolute-form target names one too: each one given must be ours.
        let authority = uri.authority().map(|a| a.as_str());
        if host.is_none() && authority.is_none() {
            return Err(Refusal::NoHost);
        }
        for host in host.into_iter().chain(authority) {
            if !self.host_allowed(host) {
                return Err(Refusal::ForeignHost(host.to_string()));
            }
        }
        for origin in headers.get_all(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !self.origin_allowed(origin) {
                return Err(Refusal::ForeignOrigin(origin.to_string()));
            }
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            let site = site.to_str().unwrap_or("");
            // `same-site` is still another origin (another port, a sibling
            // subdomain); only the API's own pages and typed URLs pass.
            if !matches!(site, "same-origin" | "none") {
                return Err(Refusal::CrossSite(site.to_string()));
            }
        }
        // The dashboard's shell holds no data (`api/ui.rs`): a browser loads
        // it first, then asks for the token.
        if !self.token_required || uri.path() == "/healthz" || super::ui::is_page_shell(uri.path())
        {
            return Ok(());
        }
        match headers.get(header::AUTHORIZATION).map(bearer) {
            None => Err(Refusal::NoToken),
            Some(Some(token)) if self.token.matches(token) => Ok(()),
            Some(_) => Err(Refusal::WrongToken),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value, if that is its form.
fn bearer(value: &HeaderValue) -> Option<&[u8]> {
    let value = value.as_bytes();
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = value[7..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Splits `host[:port]` (`[v6]` bracketed) into a lower-case host and port.
fn split_host(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        ip.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (ip, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() || host.contains(['/', '@', ':', '[', ']']) {
            return None;
        }
        (host, port)
    };
    let port = match port {
        Some(port) => Some(port.parse::<u16>().ok()?),
        None => None,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// Why [`ApiAccess::check`] turned a request away.
#[derive(Debug)]
enum Refusal {
    NoHost,
    BadHost,
    ForeignHost(String),
    ForeignOrigin(String),
    CrossSite(String),
    NoToken,
    WrongToken,
}

impl Refusal {
    /// The refusal's name as a metrics label.
    fn reason(&self) -> &'static str {
        match self {
            Refusal::NoHost => "no_host",
            Refusal::BadHost => "bad_host",
            Refusal::ForeignHost(_) => "foreign_host",
            Refusal::ForeignOrigin(_) => "foreign_origin",
            Refusal::CrossSite(_) => "cross_site",
            Refusal::NoToken => "no_token",
            Refusal::WrongToken => "wrong_token",
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, kind, detail) = match &self {
            Refusal::NoHost => (
                StatusCode::BAD_REQUEST,
                ApiErrorKind::BadRequest,
                "the request has no Host header".to_string(),
            ),
            Refusal::BadHost => (
                StatusCode::BAD_REQUEST,
                ApiErrorKind::BadRequest,
                "the request's Host header is malformed or repeated".to_string(),
            ),
            Refusal::ForeignHost(host) => (
                StatusCode::FORBIDDEN,
                ApiErrorKind::Forbidden,
                format!(
                    "Host {host:?} is not this API's address; \
                     a gateway reached by a DNS name must be started with --api-host NAME"
                ),
            ),
            Refusal::ForeignOrigin(origin) => (
                StatusCode::FORBIDDEN,
                ApiErrorKind::Forbidden,
                format!("cross-origin request from {origin:?} refused"),
            ),
            Refusal::CrossSite(site) => (
                StatusCode::FORBIDDEN,
                ApiErrorKind::Forbidden,
                format!("cross-origin request (Sec-Fetch-Site: {site}) refused"),
            ),
            Refusal::NoToken | Refusal::WrongToken => (
                StatusCode::UNAUTHORIZED,
                ApiErrorKind::Unauthorized,
                "this API needs `Authorization: Bearer <token>`; the token is in the \
                 gateway's DATA/api-token (or its --api-token-file)"
                    .to_string(),
            ),
        };
        let mut response = json_error(status, kind, detail);
        let challenge = match self {
            Refusal::NoToken => Some("Bearer realm=\"ww-sched\""),
            Refusal::WrongToken => Some("Bearer realm=\"ww-sched\", error=\"invalid_token\""),
            _ => None,
        };
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// The API's error shape, `{"error": kind, "detail": text}`.
fn json_error(status: StatusCode, kind: ApiErrorKind, detail: String) -> Response {
    (
        status,
        Json(ErrorBody {
            error: kind,
            detail,
        }),
    )
        .into_response()
}

/// A 503 that tells the client to come back in [`RETRY_AFTER_S`].
fn retry_later(kind: ApiErrorKind, detail: String) -> Response {
    let mut response = json_error(StatusCode::SERVICE_UNAVAILABLE, kind, detail);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
    response
}

/// How much of the server requests may hold.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Deadline of a request without an upload, body and answer included.
    pub request_timeout: Duration,
    /// Deadline of `POST /tasks` and `POST /modules`.
    pub upload_timeout: Duration,
    /// Requests in the handlers at once.
    pub in_flight_max: usize,
    /// Longest wait for a request's head (and between kept-alive requests).
    pub header_read_timeout: Duration,
    /// Open connections at once (see [`serve`](super::serve::serve)).
    pub connections_max: usize,
}

impl Default for HttpLimits {
    /// [`REQUEST_TIMEOUT`], [`UPLOAD_TIMEOUT`], [`IN_FLIGHT_MAX`],
    /// [`HEADER_READ_TIMEOUT`], [`CONNECTIONS_MAX`].
    fn default() -> Self {
        HttpLimits {
            request_timeout: REQUEST_TIMEOUT,
            upload_timeout: UPLOAD_TIMEOUT,
            in_flight_max: IN_FLIGHT_MAX,
            header_read_timeout: HEADER_READ_TIMEOUT,
            connections_max: CONNECTIONS_MAX,
        }
    }
}

/// `router` behind the Host/Origin check, the token check (if `access`
/// requires it) and `limits`: what a real HTTP server serves.
pub fn lock(router: Router, access: ApiAccess, limits: HttpLimits) -> Router {
    let slots = Arc::new(Semaphore::new(limits.in_flight_max));
    // The last layer added runs first: the cheap checks turn strangers away
    // before they take a slot.
    router
        .layer(middleware::from_fn_with_state(limits, time_limit))
        .layer(middleware::from_fn_with_state(slots, in_flight_limit))
        .layer(middleware::from_fn_with_state(Arc::new(access), guard))
}

async fn guard(State(access): State<Arc<ApiAccess>>, request: Request, next: Next) -> Response {
    match access.check(request.uri(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::debug!(?refusal, path = request.uri().path(), "API request refused");
            if let Some(metrics) = &access.metrics {
                metrics.request_refused(refusal.reason());
            }
            refusal.into_response()
        }
    }
}

async fn in_flight_limit(
    State(slots): State<Arc<Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    // Refused rather than queued: a queue would grow without bound under a
    // flood and every waiter would time out anyway.
    let Ok(_slot) = slots.try_acquire_owned() else {
        return retry_later(
            ApiErrorKind::Overloaded,
            "too many requests in flight; retry shortly".into(),
        );
    };
    next.run(request).await
}

async fn time_limit(State(limits): State<HttpLimits>, request: Request, next: Next) -> Response {
    let upload =
        request.method() == Method::POST && matches!(request.uri().path(), "/tasks" | "/modules");
    let deadline = if upload {
        limits.upload_timeout
    } else {
        limits.request_timeout
    };
    // The deadline covers the answer's head: a streamed body (`/events`)
    // outlives it, holding its connection, not an in-flight slot.
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        // A submission cut off here may still commit: retrying it with the
        // same Idempotency-Key is safe.
        Err(_) => retry_later(
            ApiErrorKind::Timeout,
            format!("the request took longer than {} s", deadline.as_secs()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(listen: &str) -> ApiAccess {
        ApiAccess::new(
            listen.parse().unwrap(),
            ApiToken::new(&"t".repeat(40)).unwrap(),
        )
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"xbc"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn hosts_of_a_loopback_listener() {
        let a = access("127.0.0.1:8080");
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
        ] {
            assert!(a.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "127.0.0.1:8081",
            "127.0.0.1",
            "10.0.0.1:8080",
            "localhost",
            "",
            "127.0.0.1:8080:1",
            "user@127.0.0.1:8080",
        ] {
            assert!(!a.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn hosts_of_a_wildcard_listener_and_names() {
        let a = access("0.0.0.0:8080")
            .allow_host("api.example")
            .unwrap()
            .allow_host("other.example:9000")
            .unwrap();
        for ok in [
            "10.1.2.3:8080",
            "[fe80::1]:8080",
            "api.example",
            "api.example:443",
            "other.example:9000",
        ] {
            assert!(a.host_allowed(ok), "{ok}");
        }
        for bad in ["10.1.2.3:80", "other.example", "evil.example:8080"] {
            assert!(!a.host_allowed(bad), "{bad}");
        }
        assert!(a.origin_allowed("http://10.1.2.3:8080"));
        assert!(a.origin_allowed("https://api.example"));
        assert!(!a.origin_allowed("https://10.1.2.3:8080"));
        assert!(!a.origin_allowed("null"));
        assert!(a.allow_host("bad host").is_err());
    }

    #[test]
    fn bearer_values() {
        assert_eq!(
            bearer(&HeaderValue::from_static("Bearer abc")),
            Some(&b"abc"[..])
        );
        assert_eq!(
            bearer(&HeaderValue::from_static("bearer  abc ")),
            Some(&b"abc"[..])
        );
        assert_eq!(bearer(&HeaderValue::from_static("Basic abc")), None);
        assert_eq!(bearer(&HeaderValue::from_static("Bearer ")), None);
    }
}
