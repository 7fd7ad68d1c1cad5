//! Submissions: module checks, task ids, and idempotent retries. Nothing is
//! changed until every check passed; the task, its module (if sent with it)
//! and its idempotency key then go into the same batch, one transaction.

use std::sync::Arc;

use super::{internal, Core, ModuleInput, NewTask};
use crate::gateway::ApiError;
use crate::sched::{Op, SchedError, TaskId, TaskSpec};

/// The first field in which a retried submission differs from the task its
/// idempotency key created, if any: a key names one request, not any request.
fn first_difference(new: &NewTask, spec: &TaskSpec) -> Option<&'static str> {
    let module_hash = match &new.module {
        ModuleInput::Bytes(bytes) => ww::exec::ModuleHash::of(bytes).0,
        ModuleInput::Hash(hash) => *hash,
    };
    [
        ("id", new.id.as_ref().is_some_and(|id| *id != spec.id)),
        ("description", new.description != spec.description),
        ("module", module_hash != spec.module_hash),
        ("export", new.export != spec.export),
        ("args", new.args != spec.args),
        ("fuel_max", new.fuel_max != spec.fuel_max),
        (
            "memory_pages_max",
            new.memory_pages_max != spec.memory_pages_max,
        ),
        ("duration_ms", new.duration_ms != spec.duration_ms),
        ("schedule", new.schedule != spec.schedule),
        (
            "completions_initial",
            new.completions_initial != spec.completions_initial,
        ),
    ]
    .into_iter()
    .find_map(|(field, differs)| differs.then_some(field))
}

impl Core {
    /// Refuses modules over the size limit or without the WASM magic.
    pub(super) fn check_module(&self, bytes: &[u8]) -> Result<(), ApiError> {
        if bytes.len() > self.config.module_bytes_max {
            return Err(ApiError::TooLarge(format!(
                "module of {} bytes; the limit is {}",
                bytes.len(),
                self.config.module_bytes_max
            )));
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(ApiError::Unprocessable(
                "not a WebAssembly module (no \\0asm magic)".into(),
            ));
        }
        Ok(())
    }

    /// The spec of the task `key` names, if it is kept (in memory or stored).
    fn keyed_task(&self, key: &str) -> Result<Option<TaskSpec>, ApiError> {
        if let Some(id) = self.keys.get(key) {
            return Ok(self.sched.task(id).map(|t| t.spec.clone()));
        }
        let Some(id) = self
            .store
            .idempotency(key)
            .map_err(|e| self.read_failed(e))?
        else {
            return Ok(None);
        };
        let header = self.store.header(&id).map_err(|e| self.read_failed(e))?;
        Ok(header.map(|h| h.spec))
    }

    /// Accepts a submission into the scheduler and the next batch; returns the
    /// task's id and whether it was created now (a retry with the same key
    /// returns the first task). Refused submissions change nothing.
    pub(super) fn submit(
        &mut self,
        new: NewTask,
        idempotency_key: Option<String>,
    ) -> Result<(TaskId, bool), ApiError> {
        if let Some(key) = &idempotency_key {
            if let Some(spec) = self.keyed_task(key)? {
                if let Some(field) = first_difference(&new, &spec) {
                    return Err(ApiError::Unprocessable(format!(
                        "Idempotency-Key {key:?} was used for task {:?} with another \
                         {field}; nothing changed (use a new key for a new task)",
                        spec.id.as_str()
                    )));
                }
                return Ok((spec.id, false));
            }
        }
        let (module_hash, new_module) = match new.module {
            ModuleInput::Bytes(bytes) => {
                self.check_module(&bytes)?;
                (ww::exec::ModuleHash::of(&bytes).0, Some(bytes))
            }
            ModuleInput::Hash(hash) if self.modules.known(&hash) => (hash, None),
            // Uploaded through another gateway sharing the store.
            ModuleInput::Hash(hash) if self.learned_module(&hash)? => (hash, None),
            ModuleInput::Hash(hash) => {
                return Err(ApiError::Unprocessable(format!(
                    "unknown module {}: upload it with POST /modules first",
                    ww::exec::ModuleHash(hash)
                )))
            }
        };
        let id = match new.id {
            // A generated id is checked unused as it is generated.
            None => self.generate_id()?,
            Some(id) if self.sched.task(&id).is_some() || self.stored(&id)? => {
                return Err(ApiError::Conflict(format!(
                    "a task with id {:?} exists",
                    id.as_str()
                )));
            }
            Some(id) => id,
        };
        let spec = TaskSpec {
            id: id.clone(),
            description: new.description,
            module_hash,
            export: new.export,
            args: new.args,
            fuel_max: new.fuel_max,
            memory_pages_max: new.memory_pages_max,
            duration_ms: new.duration_ms,
            schedule: new.schedule,
            completions_initial: new.completions_initial,
            idempotency_key: idempotency_key.clone(),
        };
        spec.validate()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let now = (self.clock)();
        let effects = self.sched.submit(now, spec).map_err(|e| match e {
            SchedError::Exists { .. } => ApiError::Conflict(e.to_string()),
            SchedError::Busy { .. } => ApiError::Busy(e.to_string()),
            other => ApiError::BadRequest(other.to_string()),
        })?;
        // Accepted: from here on everything goes into the next batch together.
        if let Some(bytes) = new_module {
            let bytes = Arc::new(bytes);
            self.modules.uploaded(module_hash, bytes.clone(), now);
            self.plan.queue(Op::PutModule {
                hash: module_hash,
                bytes,
                now_ms: now,
            });
        }
        self.modules.referred(&module_hash);
        if let Some(key) = idempotency_key {
            self.keys.insert(key, id.clone());
        }
        self.apply(effects);
        #[cfg(feature = "sabotage")]
        if crate::sabotage::strike(crate::sabotage::Sabotage::LoseAckedTask) {
            tracing::warn!(%id, "sabotage: acknowledged task will never be persisted");
            self.plan.unwritten.insert(id.clone());
        }
        Ok((id, true))
    }

    /// Whether a task with this id is in the store (finished, or about to be
    /// forgotten): ids stay unique for as long as a task is kept.
    fn stored(&self, id: &TaskId) -> Result<bool, ApiError> {
        self.store
            .header(id)
            .map(|h| h.is_some())
            .map_err(|e| self.read_failed(e))
    }

    /// A new task id. Alone, the store is asked whether it is taken (a clock
    /// set back could repeat one; the read is local). On a shared store the
    /// id carries this gateway's tag and lease epoch, new at every
    /// registration, and a count that never repeats within it, so it is
    /// unique without a database round trip on the core's thread; should two
    /// peer ids share a tag and an epoch, the store's insert finds the id
    /// taken and the later task is refused (409), never overwritten.
    fn generate_id(&mut self) -> Result<TaskId, ApiError> {
        loop {
            self.generated += 1;
            let text = match &self.config.id_tag {
                Some(tag) => format!("t{}-{tag}-{}", (self.clock)(), self.generated),
                None => format!("t{}-{}", (self.clock)(), self.generated),
            };
            let id = TaskId::parse(&text).map_err(internal)?;
            if self.sched.task(&id).is_some() {
                continue;
            }
            if self.config.id_tag.is_some() || !self.stored(&id)? {
                return Ok(id);
            }
        }
    }

    /// Whether a shared store holds module `hash`, uploaded through another
    /// gateway; if so this gateway's mirror learns it (and caches its bytes).
    fn learned_module(&mut self, hash: &[u8; 32]) -> Result<bool, ApiError> {
        if self.store.shared().is_none() {
            return Ok(false);
        }
        match self.module_bytes(hash) {
            Ok(Some(_)) => {
                let now = (self.clock)();
                self.modules.learned(*hash, now);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(self.read_failed(e)),
        }
    }
}
