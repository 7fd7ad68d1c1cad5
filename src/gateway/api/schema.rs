//! The schemas of what the API takes in (parameters and submissions), built
//! from the same constants the handlers check, so that the OpenAPI document
//! states exactly what is enforced: a client generated from it sends nothing
//! the server refuses for its shape, and refuses nothing the server accepts.
//!
//! Where JSON Schema cannot say what the handler checks, the schema says
//! what it can and the description says the rest (a module that is not
//! WebAssembly is refused with 422, an unknown one too; a body over the
//! limit with 413): those are refusals of content or state, documented as
//! such, not of shape.

use serde_json::{json, Value};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;

use super::{OFFSET_MAX, PAGE_MAX, RUNS_OFFSET_MAX};
use crate::sched::types::{
    ARGS_MAX, DESCRIPTION_CHARS_MAX, DURATION_MS_MAX, EXPORT_CHARS_MAX, REPEATS_MAX,
    SCHEDULE_MS_MAX,
};
use crate::sched::{IDEMPOTENCY_KEY_BYTES_MAX, TASK_ID_PATTERN};

/// A task id or nothing: what a cursor (`after`) and a submission's
/// optional `id` accept (empty means none).
pub const TASK_ID_OR_EMPTY_PATTERN: &str = "^[A-Za-z0-9._-]{0,128}$";
/// A module's SHA-256 as hex (either case).
pub const MODULE_HASH_PATTERN: &str = "^[0-9A-Fa-f]{64}$";
/// Standard base64 with padding, and no bits set past the data (what the
/// `base64` crate's standard engine decodes; nothing else is).
pub const BASE64_PATTERN: &str =
    "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$";
/// An `Idempotency-Key`: visible ASCII, 1 to 256 characters, not starting or
/// ending with a space or tab (HTTP strips those, leaving another key).
pub const IDEMPOTENCY_KEY_PATTERN: &str =
    "^[\\x21-\\x7e](?:[\\t\\x20-\\x7e]{0,254}[\\x21-\\x7e])?$";

/// The seconds a multipart `duration` may give.
const DURATION_S_MAX: u64 = DURATION_MS_MAX / 1000;
/// The seconds a multipart `start` or `delay` may give.
const SCHEDULE_S_MAX: u64 = SCHEDULE_MS_MAX / 1000;

/// A schema written as JSON, in utoipa's model. utoipa drops a keyword its
/// model lacks without a word, so a debug build checks that nothing was
/// dropped (the unit test below builds every schema).
fn schema(value: Value) -> RefOr<Schema> {
    let built: RefOr<Schema> =
        serde_json::from_value(value.clone()).expect("a schema utoipa models");
    debug_assert_eq!(
        serde_json::to_value(&built).ok(),
        Some(value),
        "utoipa's model dropped part of a schema"
    );
    built
}

/// A whole number from `min` to `max`.
fn whole(min: u64, max: u64) -> Value {
    json!({ "type": "integer", "minimum": min, "maximum": max })
}

/// `offset` of `GET /tasks`.
pub(super) fn offset() -> RefOr<Schema> {
    let mut value = whole(0, OFFSET_MAX as u64);
    value["default"] = json!(0);
    value["description"] = json!(format!(
        "Tasks to skip (after the cursor), at most {OFFSET_MAX}: page further with `after`"
    ));
    schema(value)
}

/// `limit` of `GET /tasks`, `runs_limit` of `GET /tasks/{id}`.
pub(super) fn limit() -> RefOr<Schema> {
    let mut value = whole(1, PAGE_MAX as u64);
    value["default"] = json!(super::PAGE_DEFAULT);
    value["description"] = json!(format!(
        "Items in the page, 1 to {PAGE_MAX} (default {})",
        super::PAGE_DEFAULT
    ));
    schema(value)
}

/// `runs_offset` of `GET /tasks/{id}`.
pub(super) fn runs_offset() -> RefOr<Schema> {
    let mut value = whole(0, u64::from(RUNS_OFFSET_MAX));
    value["default"] = json!(0);
    value["description"] = json!(format!(
        "Index of the first run in the page, 0 to {RUNS_OFFSET_MAX} (the most runs a task \
         has: from there the page is empty)"
    ));
    schema(value)
}

/// `{index}` of a run's path: no run has an index past the most runs a
/// task may ask for.
pub(super) fn run_index() -> RefOr<Schema> {
    let mut value = whole(0, u64::from(REPEATS_MAX) - 1);
    value["description"] = json!("The run's index, 0 to repeats - 1");
    schema(value)
}

/// `{id}` of a task's path.
pub(super) fn task_id() -> RefOr<Schema> {
    schema(json!({
        "$ref": "#/components/schemas/TaskId",
        "description": "The task's id (text that breaks the id rules names no task: 404)",
    }))
}

/// `after` of `GET /tasks`: a task id, or empty for none.
pub(super) fn after() -> RefOr<Schema> {
    schema(json!({
        "type": "string",
        "pattern": TASK_ID_OR_EMPTY_PATTERN,
        "maxLength": 128,
        "description": "Only tasks whose id sorts after this one (a cursor: the last id of \
            the previous page; empty: from the first)",
    }))
}

/// `status` of `GET /tasks`: a task status, or empty for all.
pub(super) fn status() -> RefOr<Schema> {
    schema(json!({
        "anyOf": [
            { "$ref": "#/components/schemas/TaskStatus" },
            { "type": "string", "enum": [""] },
        ],
        "description": "Only tasks with this status (empty: all)",
    }))
}

/// `purge` of `DELETE /tasks/{id}`.
pub(super) fn purge() -> RefOr<Schema> {
    schema(json!({
        "type": "boolean",
        "default": false,
        "description": "Delete the (finished) task and its runs instead of cancelling it",
    }))
}

/// `{file}` of `GET /ui/{file}`.
pub(super) fn ui_file() -> RefOr<Schema> {
    schema(json!({
        "type": "string",
        "enum": ["index.html", "app.js", "style.css"],
        "description": "One of the page's files",
    }))
}

/// The `Idempotency-Key` header.
pub(super) fn idempotency_key() -> RefOr<Schema> {
    schema(json!({
        "type": "string",
        "pattern": IDEMPOTENCY_KEY_PATTERN,
        "minLength": 1,
        "maxLength": IDEMPOTENCY_KEY_BYTES_MAX,
        "description": "Makes a retried submission return the task the first one made \
            (visible ASCII, 1 to 256 characters, no space or tab at either end); used \
            with another body: 422",
    }))
}

/// The JSON submission: its fields with their bounds, no others, and
/// exactly one of `module` and `wasm_base64` (a `null` counts as absent).
pub(super) fn task_json() -> RefOr<Schema> {
    let id = json!({
        "type": ["string", "null"],
        "pattern": TASK_ID_OR_EMPTY_PATTERN,
        "description": format!(
            "The task's id ({TASK_ID_PATTERN}); generated when absent, null or empty"
        ),
    });
    let mut properties = json!({
        "id": id,
        "description": {
            "type": "string",
            "maxLength": DESCRIPTION_CHARS_MAX,
            "default": "",
            "description": "Free text",
        },
        "module": {
            "type": ["string", "null"],
            "pattern": MODULE_HASH_PATTERN,
            "description": "Hex SHA-256 of a module uploaded with `POST /modules`",
        },
        "wasm_base64": {
            "type": ["string", "null"],
            "pattern": BASE64_PATTERN,
            "contentEncoding": "base64",
            "contentMediaType": "application/wasm",
            "description": "The module itself, standard base64 with padding",
        },
        "export": {
            "type": "string",
            "minLength": 1,
            "maxLength": EXPORT_CHARS_MAX,
            "default": "run",
            "description": "The export each run calls",
        },
        "args": {
            "type": "array",
            "maxItems": ARGS_MAX,
            "items": {
                "type": "integer",
                "format": "int64",
                "minimum": i64::MIN,
                "maximum": i64::MAX,
            },
            "default": [],
            "description": "The export's integer arguments",
        },
    });
    if let Some(properties) = properties.as_object_mut() {
        properties.extend(run_properties());
    }
    schema(json!({
        "description": "A submission: exactly one of `module` and `wasm_base64`. \
            The module must be WebAssembly (else 422) within the gateway's module \
            and body limits (else 413); `module` must name an uploaded one (else 422).",
        "allOf": [
            {
                "type": "object",
                "additionalProperties": false,
                "properties": properties,
            },
            {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["module"],
                        "properties": {
                            "module": { "type": "string" },
                            "wasm_base64": { "type": "null" },
                        },
                    },
                    {
                        "type": "object",
                        "required": ["wasm_base64"],
                        "properties": {
                            "wasm_base64": { "type": "string" },
                            "module": { "type": "null" },
                        },
                    },
                ],
            },
        ],
    }))
}

/// The submission's fields about its runs: limits, schedule, completions.
fn run_properties() -> serde_json::Map<String, serde_json::Value> {
    let serde_json::Value::Object(properties) = json!({
        "fuel_max": {
            "type": "integer", "format": "uint64",
            "minimum": 0, "maximum": u64::MAX, "default": 0,
            "description": "Fuel per run (0: the worker's maximum; more is clamped to it)",
        },
        "memory_pages_max": {
            "type": "integer", "format": "uint32",
            "minimum": 0, "maximum": u32::MAX, "default": 0,
            "description": "Memory pages (64 KiB) per run (0: the worker's maximum; more is clamped to it)",
        },
        "duration_ms": {
            "type": "integer", "minimum": 1, "maximum": DURATION_MS_MAX, "default": 30000,
            "description": "Per-run time limit",
        },
        "start_ms": {
            "type": "integer", "minimum": 0, "maximum": SCHEDULE_MS_MAX, "default": 0,
            "description": "When the first run falls due, after submission",
        },
        "delay_ms": {
            "type": "integer", "minimum": 0, "maximum": SCHEDULE_MS_MAX, "default": 0,
            "description": "Between the due times of consecutive runs",
        },
        "repeats": {
            "type": "integer", "minimum": 1, "maximum": REPEATS_MAX, "default": 1,
            "description": "Runs to make",
        },
        "completions": {
            "type": "integer", "format": "uint64",
            "minimum": 0, "maximum": u64::MAX, "default": 0,
            "description": "Completions already counted",
        },
    }) else {
        unreachable!("a JSON object literal")
    };
    properties
}

/// The original's multipart form: times in seconds, `input` and
/// `difficulty` the export's two arguments; a number field left empty takes
/// its default; fields of other names are ignored.
pub(super) fn task_form() -> RefOr<Schema> {
    schema(json!({
        "type": "object",
        "required": ["wasm", "input", "difficulty"],
        "properties": {
            "wasm": {
                "type": "string", "format": "binary",
                "contentMediaType": "application/wasm",
                "description": "The module file",
            },
            "input": {
                "type": "integer", "format": "int64",
                "minimum": i64::MIN, "maximum": i64::MAX,
                "description": "The first argument",
            },
            "difficulty": {
                "type": "integer", "format": "int64",
                "minimum": i64::MIN, "maximum": i64::MAX,
                "description": "The second argument",
            },
            "id": {
                "type": "string",
                "pattern": TASK_ID_OR_EMPTY_PATTERN,
                "description": "The task's id; generated when absent or empty",
            },
            "description": { "type": "string", "maxLength": DESCRIPTION_CHARS_MAX },
            "duration": {
                "type": "integer", "minimum": 1, "maximum": DURATION_S_MAX, "default": 30,
                "description": "Time limit per run, in seconds",
            },
            "start": {
                "type": "integer", "minimum": 0, "maximum": SCHEDULE_S_MAX, "default": 0,
                "description": "When the first run falls due, in seconds after submission",
            },
            "delay": {
                "type": "integer", "minimum": 0, "maximum": SCHEDULE_S_MAX, "default": 0,
                "description": "Seconds between runs",
            },
            "repeats": {
                "type": "integer", "minimum": 1, "maximum": REPEATS_MAX, "default": 1,
                "description": "Runs to make",
            },
            "complete": {
                "type": "integer", "format": "uint64",
                "minimum": 0, "maximum": u64::MAX, "default": 0,
                "description": "Completions already counted",
            },
        },
    }))
}

/// One event of `GET /events` as an SSE frame, in the shape OpenAPI 3.2's
/// `itemSchema` gives `text/event-stream` (carried here as the extension
/// `x-item-schema`, this being a 3.1 document): a `data` line holding one
/// `Event` as JSON; no `event`, `id` or `retry` field is sent.
pub(super) fn event_frame() -> Value {
    json!({
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": { "$ref": "#/components/schemas/Event" },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// utoipa's model keeps every keyword written here (`schema` checks
    /// each in a debug build).
    #[test]
    fn every_schema_survives_utoipas_model_whole() {
        for (built, what) in [
            (offset(), "offset"),
            (limit(), "limit"),
            (runs_offset(), "runs_offset"),
            (run_index(), "index"),
            (task_id(), "id"),
            (after(), "after"),
            (status(), "status"),
            (purge(), "purge"),
            (ui_file(), "file"),
            (idempotency_key(), "key"),
            (task_json(), "json"),
            (task_form(), "form"),
        ] {
            assert!(serde_json::to_value(&built).is_ok(), "{what}");
        }
        let json = serde_json::to_value(task_json()).unwrap();
        assert!(json["allOf"][1]["oneOf"].is_array(), "{json}");
        assert_eq!(json["allOf"][0]["additionalProperties"], false, "{json}");
        assert_eq!(
            json["allOf"][0]["properties"]["args"]["items"]["minimum"],
            i64::MIN,
            "{json}"
        );
    }
}
