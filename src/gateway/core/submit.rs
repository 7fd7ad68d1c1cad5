//! Submissions: module checks, task ids, and idempotent retries.

use super::{internal, Core, ModuleInput, NewTask};
use crate::gateway::ApiError;
use crate::sched::{Task, TaskId, TaskSpec};

/// The first field in which a retried submission differs from the task its
/// idempotency key created, if any: a key names one request, not any request.
fn first_difference(new: &NewTask, spec: &TaskSpec) -> Option<&'static str> {
    let module_hash = match &new.module {
        ModuleInput::Bytes(bytes) => crate::exec::ModuleHash::of(bytes).0,
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
    pub(super) fn put_module(&mut self, bytes: &[u8]) -> Result<[u8; 32], ApiError> {
        self.check_module(bytes)?;
        self.store.put_module(bytes).map_err(internal)
    }

    /// Refuses modules over the size limit or without the WASM magic.
    fn check_module(&self, bytes: &[u8]) -> Result<(), ApiError> {
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

    pub(super) fn submit(
        &mut self,
        new: NewTask,
        idempotency_key: Option<String>,
    ) -> Result<(Task, bool), ApiError> {
        if let Some(key) = &idempotency_key {
            if let Some(id) = self.store.idempotency(key).map_err(internal)? {
                if let Some(task) = self.sched.task(&id) {
                    if let Some(field) = first_difference(&new, &task.spec) {
                        return Err(ApiError::Unprocessable(format!(
                            "Idempotency-Key {key:?} was used for task {:?} with another \
                             {field}; nothing changed (use a new key for a new task)",
                            id.0
                        )));
                    }
                    return Ok((task.clone(), false));
                }
            }
        }
        // Everything is checked before anything is stored: a refused submission
        // leaves no module behind.
        let (module_hash, new_module) = match new.module {
            ModuleInput::Bytes(bytes) => {
                self.check_module(&bytes)?;
                (crate::exec::ModuleHash::of(&bytes).0, Some(bytes))
            }
            ModuleInput::Hash(hash) => match self.store.module(&hash).map_err(internal)? {
                Some(_) => (hash, None),
                None => {
                    return Err(ApiError::Unprocessable(format!(
                        "unknown module {}: upload it with POST /modules first",
                        crate::exec::ModuleHash(hash)
                    )))
                }
            },
        };
        let id = match new.id {
            Some(id) => id,
            None => self.generate_id()?,
        };
        if self.sched.task(&id).is_some() {
            return Err(ApiError::Conflict(format!(
                "a task with id {:?} exists",
                id.0
            )));
        }
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
        };
        spec.validate()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if let Some(bytes) = new_module {
            self.store.put_module(&bytes).map_err(internal)?;
        }
        let effects = self
            .sched
            .submit((self.clock)(), spec)
            .map_err(|e| match e {
                crate::sched::SchedError::Exists { .. } => ApiError::Conflict(e.to_string()),
                other => ApiError::BadRequest(other.to_string()),
            })?;
        self.apply(effects);
        if let Some(key) = &idempotency_key {
            self.store.put_idempotency(key, &id).map_err(internal)?;
        }
        let task = self
            .sched
            .task(&id)
            .cloned()
            .ok_or_else(|| ApiError::Internal("submitted task vanished".into()))?;
        #[cfg(feature = "sabotage")]
        if crate::sabotage::strike(crate::sabotage::Sabotage::LoseAckedTask) {
            tracing::warn!(%id, "sabotage: acknowledged task will never be persisted");
            self.sabotaged.insert(id);
        }
        Ok((task, true))
    }

    fn generate_id(&mut self) -> Result<TaskId, ApiError> {
        loop {
            self.generated += 1;
            let id = TaskId::parse(&format!("t{}-{}", (self.clock)(), self.generated))
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            if self.sched.task(&id).is_none() {
                return Ok(id);
            }
        }
    }
}
