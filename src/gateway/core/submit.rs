//! Submissions: module checks, task ids, and idempotent retries. Nothing is
//! changed until every check passed; the task, its module (if sent with it)
//! and its idempotency key then go into the same batch, one transaction.
//!
//! A check the core cannot make from memory (a key or id the store may hold,
//! a module another gateway uploaded, a generated id a clock set back may
//! repeat) is a store read. Submissions that need reads wait in order, one
//! being read for at a time: two submissions that could name the same id or
//! key are never checked against the store at once, so neither can pass on a
//! read that the other's acceptance has made stale. The rest of the core
//! goes on meanwhile.

use std::sync::Arc;

use super::reads::Pending;
use super::{
    internal, Answer, Core, Held, ModuleInput, NewTask, Read, ReadResult, RequestId,
    SUBMISSIONS_READING_MAX,
};
use crate::gateway::ApiError;
use crate::sched::{Op, SchedError, TaskId, TaskSpec};

/// A submission being checked, with what the store said so far.
pub(super) struct Submission {
    request: RequestId,
    task: NewTask,
    key: Option<String>,
    /// The spec of the task the key names, as the store said (`None`: not
    /// asked yet).
    keyed: Option<Option<TaskSpec>>,
    /// Whether the store holds the module named by hash (`None`: not asked).
    module_stored: Option<bool>,
    /// The id chosen (given, or generated) and whether the store holds a
    /// task under it (`None`: not asked).
    id: Option<(TaskId, Option<bool>)>,
    /// What the read in flight for it is.
    awaiting: Option<Awaiting>,
}

/// What a submission's read in flight asks.
enum Awaiting {
    /// The task its key names.
    Key(String),
    /// Whether its module is stored.
    Module([u8; 32]),
    /// Whether a task with this id is stored.
    Id(TaskId),
}

/// Where a check of a submission got to.
enum Step {
    /// Answered (refused, or an idempotent retry) or accepted and held.
    Done,
    /// Waiting for this read.
    Read(Read),
}

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

    /// A new submission: checked now if none waits before it, else queued.
    pub(super) fn submission(&mut self, request: RequestId, task: NewTask, key: Option<String>) {
        if self.submissions.len() >= SUBMISSIONS_READING_MAX {
            let busy = ApiError::Busy(format!(
                "{SUBMISSIONS_READING_MAX} submissions already wait for the task store"
            ));
            return self.answer(request, Answer::Submit(Err(busy)));
        }
        self.submissions.push_back(Submission {
            request,
            task,
            key,
            keyed: None,
            module_stored: None,
            id: None,
            awaiting: None,
        });
        if self.submissions.len() == 1 {
            self.advance_submissions();
        }
    }

    /// Checks the submissions in order until one waits for a read.
    pub(super) fn advance_submissions(&mut self) {
        while let Some(mut submission) = self.submissions.pop_front() {
            match self.check(&mut submission) {
                Step::Done => {}
                Step::Read(read) => {
                    self.submissions.push_front(submission);
                    self.read(read, Pending::Submission);
                    return;
                }
            }
        }
    }

    /// What the store said for the first submission waiting.
    pub(super) fn submission_read(&mut self, result: ReadResult) {
        let Some(mut submission) = self.submissions.pop_front() else {
            debug_assert!(false, "a submission's read with no submission waiting");
            return;
        };
        let error = match (submission.awaiting.take(), result) {
            (Some(Awaiting::Key(_)), ReadResult::Header(Ok(header))) => {
                submission.keyed = Some(header.map(|h| h.spec));
                None
            }
            (Some(Awaiting::Id(id)), ReadResult::Header(Ok(header))) => {
                submission.id = Some((id, Some(header.is_some())));
                None
            }
            (Some(Awaiting::Module(hash)), ReadResult::Module(Ok(bytes))) => {
                if let Some(bytes) = &bytes {
                    // Uploaded through another gateway: this mirror learns it.
                    self.modules.learned(hash, self.now_ms);
                    self.modules.cache_insert(hash, bytes.clone());
                }
                submission.module_stored = Some(bytes.is_some());
                None
            }
            (_, ReadResult::Header(Err(e)) | ReadResult::Module(Err(e))) => Some(e),
            (_, other) => {
                debug_assert!(false, "a submission's read came back as {other:?}");
                Some(crate::sched::StoreError::Corrupt {
                    what: "a submission's read".into(),
                    reason: format!("answered as {other:?}"),
                })
            }
        };
        if let Some(e) = error {
            // Out of the queue: a fail-stop now refuses the others, not it.
            let error = self.read_failed(e);
            self.answer(submission.request, Answer::Submit(Err(error)));
        } else {
            self.submissions.push_front(submission);
        }
        self.advance_submissions();
    }

    /// Refuses every submission waiting (the core fail-stopped).
    pub(super) fn refuse_submissions(&mut self, cause: &str) {
        for submission in std::mem::take(&mut self.submissions) {
            let error = ApiError::Storage(format!("not acknowledged: {cause}"));
            self.answer(submission.request, Answer::Submit(Err(error)));
        }
    }

    /// Checks `submission` as far as memory and the reads so far allow.
    fn check(&mut self, sub: &mut Submission) -> Step {
        match self.check_or_refuse(sub) {
            Ok(step) => step,
            Err(e) => {
                self.answer(sub.request, Answer::Submit(Err(e)));
                Step::Done
            }
        }
    }

    fn check_or_refuse(&mut self, sub: &mut Submission) -> Result<Step, ApiError> {
        if let Some(cause) = self.plan.failure() {
            return Err(ApiError::Storage(format!("not acknowledged: {cause}")));
        }
        // The key first: a retry is answered with the first task, whatever
        // else it says.
        if let Some(key) = sub.key.clone() {
            let spec = match self.keys.get(&key) {
                // Checked again at every step: a task held now may have
                // been submitted or taken over since the store was read.
                Some(id) => self.sched.task(id).map(|t| t.spec.clone()),
                None => match &sub.keyed {
                    Some(spec) => spec.clone(),
                    None => return Ok(self.ask(sub, Awaiting::Key(key.clone()))),
                },
            };
            if let Some(spec) = spec {
                if let Some(field) = first_difference(&sub.task, &spec) {
                    return Err(ApiError::Unprocessable(format!(
                        "Idempotency-Key {key:?} was used for task {:?} with another \
                         {field}; nothing changed (use a new key for a new task)",
                        spec.id.as_str()
                    )));
                }
                self.hold(Held::Submit {
                    request: sub.request,
                    id: spec.id,
                    created: false,
                });
                return Ok(Step::Done);
            }
        }
        match &sub.task.module {
            ModuleInput::Bytes(bytes) => self.check_module(bytes)?,
            ModuleInput::Hash(hash) if self.modules.known(hash) => {}
            // Uploaded through another gateway sharing the store?
            ModuleInput::Hash(hash) if self.config.shared() && sub.module_stored.is_none() => {
                let hash = *hash;
                return Ok(self.ask(sub, Awaiting::Module(hash)));
            }
            ModuleInput::Hash(hash) => {
                return Err(ApiError::Unprocessable(format!(
                    "unknown module {}: upload it with POST /modules first",
                    ww::exec::ModuleHash(*hash)
                )))
            }
        }
        let (given, chosen) = (sub.task.id.clone(), sub.id.clone());
        let id = match (&given, &chosen) {
            (Some(id), _) if self.sched.task(id).is_some() => return Err(exists(id)),
            (Some(id), Some((_, Some(true)))) => return Err(exists(id)),
            (Some(id), Some((_, Some(false)))) => id.clone(),
            // Ids stay unique for as long as a task is kept: the store may
            // hold a finished one.
            (Some(id), _) => return Ok(self.ask(sub, Awaiting::Id(id.clone()))),
            (None, Some((id, Some(false)))) if self.sched.task(id).is_none() => id.clone(),
            // None yet, or the one generated is taken (a clock set back).
            (None, _) if self.config.id_tag.is_some() => self.generated_id()?,
            (None, _) => {
                let id = self.generated_id()?;
                return Ok(self.ask(sub, Awaiting::Id(id)));
            }
        };
        self.accept(sub, id)
    }

    /// Takes the checked submission into the scheduler and the next batch.
    fn accept(&mut self, sub: &mut Submission, id: TaskId) -> Result<Step, ApiError> {
        let (module_hash, new_module) = match &mut sub.task.module {
            ModuleInput::Bytes(bytes) => {
                let bytes = std::mem::take(bytes);
                (ww::exec::ModuleHash::of(&bytes).0, Some(bytes))
            }
            ModuleInput::Hash(hash) => (*hash, None),
        };
        let task = &sub.task;
        let spec = TaskSpec {
            id: id.clone(),
            description: task.description.clone(),
            module_hash,
            export: task.export.clone(),
            args: task.args.clone(),
            fuel_max: task.fuel_max,
            memory_pages_max: task.memory_pages_max,
            duration_ms: task.duration_ms,
            schedule: task.schedule.clone(),
            completions_initial: task.completions_initial,
            idempotency_key: sub.key.clone(),
        };
        spec.validate()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let now = self.now_ms;
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
        if let Some(key) = &sub.key {
            self.keys.insert(key.clone(), id.clone());
        }
        self.apply(effects);
        self.hold(Held::Submit {
            request: sub.request,
            id,
            created: true,
        });
        Ok(Step::Done)
    }

    /// The next generated id not held in memory. On a shared store the id
    /// carries this gateway's tag and lease epoch, new at every registration,
    /// and a count that never repeats within it, so it is unique without a
    /// database round trip; should two peer ids share a tag and an epoch, the
    /// store's insert finds the id taken and the later task is refused (409),
    /// never overwritten. Alone, the store is asked whether it is taken (a
    /// clock set back could repeat one).
    fn generated_id(&mut self) -> Result<TaskId, ApiError> {
        loop {
            self.generated += 1;
            let text = match &self.config.id_tag {
                Some(tag) => format!("t{}-{tag}-{}", self.now_ms, self.generated),
                None => format!("t{}-{}", self.now_ms, self.generated),
            };
            let id = TaskId::parse(&text).map_err(internal)?;
            if self.sched.task(&id).is_none() {
                return Ok(id);
            }
        }
    }
}

impl Submission {
    /// The request it answers.
    pub(super) fn request(&self) -> RequestId {
        self.request
    }
}

impl Core {
    /// The read `awaiting` names, noted on the submission.
    fn ask(&mut self, sub: &mut Submission, awaiting: Awaiting) -> Step {
        let read = match &awaiting {
            Awaiting::Key(key) => Read::Keyed(key.clone()),
            Awaiting::Module(hash) => Read::Module(*hash),
            Awaiting::Id(id) => Read::Header(id.clone()),
        };
        sub.awaiting = Some(awaiting);
        Step::Read(read)
    }
}

fn exists(id: &TaskId) -> ApiError {
    ApiError::Conflict(format!("a task with id {:?} exists", id.as_str()))
}
