//! The task workload's requests as operations of a client history
//! (`ww_sched::history`), stamped with simulated time.

use std::time::Duration;

use ww_sched::history::{task_view_from_json, Observed, OpKind, Operation, Outcome};

use crate::cluster::now;
use crate::http::{HttpError, HttpResponse};

/// The history operation a request and its answer make, if it is one the
/// history checker judges (a submission, a cancel, a read of one task).
pub fn operation(
    method: &str,
    path: &str,
    idempotency_key: Option<&str>,
    sent: Duration,
    result: &Result<HttpResponse, HttpError>,
) -> Option<Operation> {
    let id = path.strip_prefix("/tasks/").map(str::to_string);
    let kind = match (method, id) {
        ("POST", None) if path == "/tasks" => OpKind::Submit {
            id: idempotency_key.map(str::to_string),
            idempotency_key: idempotency_key.unwrap_or_default().to_string(),
        },
        ("DELETE", Some(id)) => OpKind::Cancel { id },
        ("GET", Some(id)) if !id.contains('/') => OpKind::Read { id },
        _ => return None,
    };
    let outcome = match (result, &kind) {
        (Err(_), _) => Outcome::Unknown,
        // 409: the id asked for exists, made by an earlier attempt whose
        // answer was lost.
        (Ok(r), OpKind::Submit { id, .. }) if matches!(r.status, 200 | 201 | 409) => {
            let shown = r.json()["id"].as_str().map(str::to_string);
            Outcome::Ok(Observed::Submitted {
                id: shown.or_else(|| id.clone()).unwrap_or_default(),
            })
        }
        (Ok(r), OpKind::Cancel { .. }) if r.status == 200 => Outcome::Ok(Observed::Cancelled {
            status: r.json()["status"].as_str().unwrap_or_default().to_string(),
        }),
        (Ok(r), OpKind::Read { .. }) if r.status == 404 => Outcome::Ok(Observed::NotFound),
        (Ok(r), OpKind::Read { .. }) if r.status == 200 => match task_view_from_json(&r.json()) {
            Some(view) => Outcome::Ok(Observed::Task(view)),
            None => Outcome::Failed("unreadable task".into()),
        },
        (Ok(r), _) => Outcome::Failed(format!("{}", r.status)),
    };
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Some(Operation {
        client: 0,
        completed_ms: (!matches!(outcome, Outcome::Unknown)).then(|| ms(now())),
        kind,
        invoked_ms: ms(sent),
        outcome,
    })
}
