//! The WASI preview1 subset: captured stdio, injected clock and randomness, empty
//! args and environment, and ENOSYS for every other `wasi_snapshot_preview1` import.

//!
//! The functions are written once against [`GuestCall`], the little each engine's
//! `Caller` must offer (fuel, the guest's memory, the host state);
//! `link_wasi!` registers them with either engine's linker.

use super::error::{cap_text, ErrorKind, ExecError};
use super::host::HostEnv;
use super::meter::{bytes_fuel, call_fuel, Meter, HOST_CALL_FUEL, HOST_CHUNK_BYTES};
use std::sync::Arc;

/// The only import module a guest may use.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// WASI errno values used here (preview1 `errno` enum).
pub mod errno {
    /// No error.
    pub const SUCCESS: i32 = 0;
    /// Bad file descriptor.
    pub const BADF: i32 = 8;
    /// Bad address: a guest pointer is out of bounds.
    pub const FAULT: i32 = 21;
    /// Invalid argument.
    pub const INVAL: i32 = 28;
    /// Function not supported.
    pub const NOSYS: i32 = 52;
    /// Invalid seek on a stream.
    pub const SPIPE: i32 = 70;
}

/// Functions this module implements; any other WASI import is linked to ENOSYS.
pub(crate) const IMPLEMENTED: [&str; 17] = [
    "fd_write",
    "proc_exit",
    "random_get",
    "clock_time_get",
    "clock_res_get",
    "args_sizes_get",
    "args_get",
    "environ_sizes_get",
    "environ_get",
    "fd_close",
    "fd_seek",
    "fd_fdstat_get",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "sched_yield",
    "fd_read",
    "poll_oneoff",
];

/// Largest table a guest may grow to, in elements.
pub(crate) const TABLE_ELEMENTS_MAX: usize = 1 << 20;

/// Clock resolution reported by `clock_res_get`, in nanoseconds.
const CLOCK_RESOLUTION_NS: u64 = 1_000;

/// A captured output stream that keeps at most `max` bytes.
#[derive(Debug, Default)]
pub(crate) struct OutputBuf {
    pub(crate) data: Vec<u8>,
    max: usize,
}

impl OutputBuf {
    fn new(max: usize) -> Self {
        Self {
            data: Vec::new(),
            max,
        }
    }

    /// Keeps what fits; the guest is still told everything was written so it doesn't retry forever.
    fn push(&mut self, bytes: &[u8]) {
        let room = self.max.saturating_sub(self.data.len());
        let take = room.min(bytes.len());
        self.data.extend_from_slice(&bytes[..take]);
    }
}

/// One of a guest's two output streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutputStream {
    /// fd 1.
    Stdout,
    /// fd 2.
    Stderr,
}

/// Receives a guest's output as it is written, instead of the run's report
/// collecting it: what a long-running process needs so its output can be read
/// before it ends. Called on the thread running the guest, inside `fd_write`,
/// so it must not block for long (a slow sink stalls the guest, not the host).
pub trait OutputSink: Send + Sync {
    /// Takes `bytes` the guest wrote to `stream` (already paid for in fuel).
    fn write(&self, stream: OutputStream, bytes: &[u8]);
}

/// Per-run state of the store: the host, captured output and the fuel and time
/// account that host calls charge. (Each engine keeps its memory limiter beside it.)
pub(crate) struct HostState {
    host: Arc<dyn HostEnv>,
    pub(crate) stdout: OutputBuf,
    pub(crate) stderr: OutputBuf,
    /// Where output goes instead of `stdout`/`stderr`, when the caller streams it.
    sink: Option<Arc<dyn OutputSink>>,
    pub(crate) meter: Meter,
}

impl HostState {
    pub(crate) fn new(
        host: Arc<dyn HostEnv>,
        output_max: usize,
        meter: Meter,
        sink: Option<Arc<dyn OutputSink>>,
    ) -> Self {
        Self {
            host,
            stdout: OutputBuf::new(output_max),
            stderr: OutputBuf::new(output_max),
            sink,
            meter,
        }
    }

    pub(crate) fn host(&self) -> &dyn HostEnv {
        &*self.host
    }
}

pub(crate) type Errno = i32;

/// What a WASI function needs from the engine's view of the guest calling it.
pub(crate) trait GuestCall {
    /// The engine's error type for a host call that ends the run.
    type Error;

    /// Charges `fuel` before the call does its work; checks cancellation and the
    /// deadline first (see `Meter::charge`), so a guest living in host calls stops
    /// like one in a loop.
    fn charge(&mut self, fuel: u64) -> Result<(), Self::Error>;

    /// The guest's exported `memory`, if it has one.
    fn memory(&mut self) -> Option<&[u8]>;

    /// The guest's exported `memory` and the run's host state, at once.
    fn memory_and_state(&mut self) -> Option<(&mut [u8], &mut HostState)>;
}

/// Runs `f` on the guest's exported memory and the host state; errno result for the guest.
fn with_memory<C: GuestCall>(
    caller: &mut C,
    f: impl FnOnce(&mut [u8], &mut HostState) -> Result<(), Errno>,
) -> i32 {
    let Some((mem, state)) = caller.memory_and_state() else {
        return errno::FAULT;
    };
    match f(mem, state) {
        Ok(()) => errno::SUCCESS,
        Err(code) => code,
    }
}

/// Bounds-checked guest byte range `[ptr, ptr + len)`.
fn range(mem: &[u8], ptr: u32, len: u64) -> Result<std::ops::Range<usize>, Errno> {
    let start = usize::try_from(ptr).map_err(|_| errno::FAULT)?;
    let len = usize::try_from(len).map_err(|_| errno::FAULT)?;
    let end = start.checked_add(len).ok_or(errno::FAULT)?;
    if end > mem.len() {
        return Err(errno::FAULT);
    }
    Ok(start..end)
}

fn read_u32(mem: &[u8], ptr: u32) -> Result<u32, Errno> {
    let r = range(mem, ptr, 4)?;
    let mut word = [0u8; 4];
    word.copy_from_slice(&mem[r]);
    Ok(u32::from_le_bytes(word))
}

fn write_bytes(mem: &mut [u8], ptr: i32, bytes: &[u8]) -> Result<(), Errno> {
    let r = range(mem, ptr as u32, bytes.len() as u64)?;
    mem[r].copy_from_slice(bytes);
    Ok(())
}

/// Checks an iovec array and sums its lengths without copying anything.
fn iov_total(mem: &[u8], fd: i32, iovs: u32, iovs_len: u32) -> Result<u64, Errno> {
    // Checking the whole iovec array first bounds the loop by guest memory size.
    range(mem, iovs, u64::from(iovs_len) * 8)?;
    let mut total: u64 = 0;
    for i in 0..iovs_len {
        let entry = iovs.wrapping_add(i * 8);
        let ptr = read_u32(mem, entry)?;
        let len = read_u32(mem, entry.wrapping_add(4))?;
        range(mem, ptr, u64::from(len))?;
        if !(1..=2).contains(&fd) {
            return Err(errno::BADF);
        }
        total += u64::from(len);
    }
    Ok(total)
}

/// Copies checked iovecs into stdout or stderr and stores the count written.
fn iov_copy(
    mem: &mut [u8],
    state: &mut HostState,
    fd: i32,
    iovs: u32,
    iovs_len: u32,
    total: u32,
    nwritten: i32,
) -> Result<(), Errno> {
    let (out, stream) = if fd == 1 {
        (&mut state.stdout, OutputStream::Stdout)
    } else {
        (&mut state.stderr, OutputStream::Stderr)
    };
    for i in 0..iovs_len {
        let entry = iovs.wrapping_add(i * 8);
        let ptr = read_u32(mem, entry)?;
        let len = read_u32(mem, entry.wrapping_add(4))?;
        let bytes = &mem[range(mem, ptr, u64::from(len))?];
        match &state.sink {
            Some(sink) => sink.write(stream, bytes),
            None => out.push(bytes),
        }
    }
    write_bytes(mem, nwritten, &total.to_le_bytes())
}

/// `fd_write`: pays for the iovec array, then for the bytes named, then copies.
pub(crate) fn fd_write<C: GuestCall>(
    caller: &mut C,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> Result<i32, C::Error> {
    let (iovs, iovs_len) = (iovs as u32, iovs_len as u32);
    caller.charge(call_fuel(u64::from(iovs_len) * 8))?;
    let Some(mem) = caller.memory() else {
        return Ok(errno::FAULT);
    };
    let total = match iov_total(mem, fd, iovs, iovs_len) {
        Ok(total) => total,
        Err(code) => return Ok(code),
    };
    let Ok(total) = u32::try_from(total) else {
        return Ok(errno::INVAL);
    };
    // Every byte named is paid for, kept or not: a guest cannot write for free
    // into a full buffer.
    caller.charge(bytes_fuel(u64::from(total)))?;
    Ok(with_memory(caller, |mem, state| {
        iov_copy(mem, state, fd, iovs, iovs_len, total, nwritten)
    }))
}

/// `random_get`: fills the buffer chunk by chunk, paying for each chunk first, so a
/// huge buffer costs fuel in proportion and stops at the deadline or on cancel.
pub(crate) fn random_get<C: GuestCall>(
    caller: &mut C,
    buf: i32,
    len: i32,
) -> Result<i32, C::Error> {
    caller.charge(HOST_CALL_FUEL)?;
    let Some(mem) = caller.memory() else {
        return Ok(errno::FAULT);
    };
    let Ok(whole) = range(mem, buf as u32, u64::from(len as u32)) else {
        return Ok(errno::FAULT);
    };
    let mut at = whole.start;
    while at < whole.end {
        let end = whole.end.min(at.saturating_add(HOST_CHUNK_BYTES));
        caller.charge(bytes_fuel((end - at) as u64))?;
        let Some((mem, state)) = caller.memory_and_state() else {
            return Ok(errno::FAULT);
        };
        // The memory cannot shrink or move between chunks: no guest code runs here.
        state.host().fill_random(&mut mem[at..end]);
        at = end;
    }
    Ok(errno::SUCCESS)
}

fn clock_ns(host: &dyn HostEnv, id: i32) -> Result<u64, Errno> {
    match id {
        0 => Ok(host.wall_clock_ns()),
        // Process and thread CPU clocks are approximated by the monotonic clock.
        1..=3 => Ok(host.monotonic_ns()),
        _ => Err(errno::INVAL),
    }
}

/// Writes two zero u32 counts, as for empty args and environment.
pub(crate) fn write_zero_sizes<C: GuestCall>(
    caller: &mut C,
    count_ptr: i32,
    size_ptr: i32,
) -> Result<i32, C::Error> {
    caller.charge(call_fuel(8))?;
    Ok(with_memory(caller, |mem, _| {
        write_bytes(mem, count_ptr, &0u32.to_le_bytes())?;
        write_bytes(mem, size_ptr, &0u32.to_le_bytes())
    }))
}

/// A call that touches no guest memory: pays the base cost, then answers `code`.
pub(crate) fn flat<C: GuestCall>(caller: &mut C, code: Errno) -> Result<i32, C::Error> {
    caller.charge(HOST_CALL_FUEL)?;
    Ok(code)
}

/// The errno for a call on a stdio descriptor (`ok`) or any other (`BADF`).
pub(crate) fn stdio(fd: i32, ok: Errno) -> Errno {
    if (0..=2).contains(&fd) {
        ok
    } else {
        errno::BADF
    }
}

/// `clock_time_get`: the injected clock's time for clocks 0 to 3.
pub(crate) fn clock_time_get<C: GuestCall>(
    caller: &mut C,
    id: i32,
    out: i32,
) -> Result<i32, C::Error> {
    caller.charge(call_fuel(8))?;
    Ok(with_memory(caller, |mem, st| {
        let now = clock_ns(st.host(), id)?;
        write_bytes(mem, out, &now.to_le_bytes())
    }))
}

/// `clock_res_get`: [`CLOCK_RESOLUTION_NS`] for clocks 0 to 3.
pub(crate) fn clock_res_get<C: GuestCall>(
    caller: &mut C,
    id: i32,
    out: i32,
) -> Result<i32, C::Error> {
    caller.charge(call_fuel(8))?;
    Ok(with_memory(caller, |mem, _| {
        if !(0..=3).contains(&id) {
            return Err(errno::INVAL);
        }
        write_bytes(mem, out, &CLOCK_RESOLUTION_NS.to_le_bytes())
    }))
}

/// `fd_fdstat_get`: a character device, readable (stdin) or writable (stdout, stderr).
pub(crate) fn fd_fdstat_get<C: GuestCall>(
    caller: &mut C,
    fd: i32,
    out: i32,
) -> Result<i32, C::Error> {
    caller.charge(call_fuel(24))?;
    Ok(with_memory(caller, |mem, _| {
        // fdstat: filetype u8 @0, flags u16 @2, rights_base u64 @8, rights_inheriting u64 @16.
        let rights: u64 = match fd {
            0 => 1 << 1,     // fd_read
            1 | 2 => 1 << 6, // fd_write
            _ => return Err(errno::BADF),
        };
        let mut stat = [0u8; 24];
        stat[0] = 2; // character_device
        stat[8..16].copy_from_slice(&rights.to_le_bytes());
        write_bytes(mem, out, &stat)
    }))
}

/// `fd_read`: stdin is empty, so a read returns 0 bytes (EOF) on fd 0.
pub(crate) fn fd_read<C: GuestCall>(caller: &mut C, fd: i32, out: i32) -> Result<i32, C::Error> {
    caller.charge(call_fuel(4))?;
    if fd != 0 {
        return Ok(errno::BADF);
    }
    Ok(with_memory(caller, |mem, _| {
        write_bytes(mem, out, &0u32.to_le_bytes())
    }))
}

/// The message of a module that imports something other than WASI functions, or
/// `None` when the import is one a linker can satisfy.
pub(crate) fn foreign_import(
    module_name: &str,
    name: &str,
    is_function: bool,
) -> Option<ExecError> {
    let what = || cap_text(format!("{module_name}::{name}"), 160);
    if module_name != WASI_MODULE {
        return Some(ExecError::new(
            ErrorKind::BadModule,
            format!("import from unknown module: {}", what()),
        ));
    }
    if !is_function {
        return Some(ExecError::new(
            ErrorKind::BadModule,
            format!("unsupported non-function import: {}", what()),
        ));
    }
    None
}

/// The error of a linker call on our own table of WASI functions: only a bug of ours
/// (a duplicate name) can cause it.
pub(crate) fn link_error(error: impl std::fmt::Display) -> ExecError {
    ExecError::new(ErrorKind::Internal, error.to_string())
}

/// Registers every implemented WASI function on `$linker` (either engine's
/// `Linker`): `$caller` is its `Caller` type, `$error` its error type, `$exit` a
/// function making the error of `proc_exit(code)`. Every function except
/// `proc_exit` first charges fuel (see [`GuestCall::charge`]).
macro_rules! link_wasi {
    ($linker:expr, $caller:ty, $error:ty, $exit:expr) => {{
        use $crate::exec::wasi as w;
        type R = ::std::result::Result<i32, $error>;
        let m = w::WASI_MODULE;
        let linker = $linker;
        linker
            .func_wrap(
                m,
                "fd_write",
                |mut c: $caller, fd: i32, iovs: i32, n: i32, out: i32| -> R {
                    w::fd_write(&mut c, fd, iovs, n, out)
                },
            )
            .map_err(w::link_error)?
            .func_wrap(
                m,
                "proc_exit",
                |_c: $caller, code: i32| -> ::std::result::Result<(), $error> { Err($exit(code)) },
            )
            .map_err(w::link_error)?
            .func_wrap(m, "random_get", |mut c: $caller, buf: i32, len: i32| -> R {
                w::random_get(&mut c, buf, len)
            })
            .map_err(w::link_error)?
            .func_wrap(
                m,
                "clock_time_get",
                |mut c: $caller, id: i32, _p: i64, out: i32| -> R {
                    w::clock_time_get(&mut c, id, out)
                },
            )
            .map_err(w::link_error)?
            .func_wrap(
                m,
                "clock_res_get",
                |mut c: $caller, id: i32, out: i32| -> R { w::clock_res_get(&mut c, id, out) },
            )
            .map_err(w::link_error)?
            .func_wrap(
                m,
                "args_sizes_get",
                |mut c: $caller, argc: i32, size: i32| -> R {
                    w::write_zero_sizes(&mut c, argc, size)
                },
            )
            .map_err(w::link_error)?
            .func_wrap(
                m,
                "environ_sizes_get",
                |mut c: $caller, count: i32, size: i32| -> R {
                    w::write_zero_sizes(&mut c, count, size)
                },
            )
            .map_err(w::link_error)?
            // With zero entries there is nothing to copy: the pointers are never written.
            .func_wrap(
                m,
                "args_get",
                |mut c: $caller, _argv: i32, _buf: i32| -> R { w::flat(&mut c, w::errno::SUCCESS) },
            )
            .map_err(w::link_error)?
            .func_wrap(
                m,
                "environ_get",
                |mut c: $caller, _env: i32, _buf: i32| -> R { w::flat(&mut c, w::errno::SUCCESS) },
            )
            .map_err(w::link_error)?
            .func_wrap(m, "fd_close", |mut c: $caller, fd: i32| -> R {
                w::flat(&mut c, w::stdio(fd, w::errno::SUCCESS))
            })
            .map_err(w::link_error)?
            .func_wrap(
                m,
                "fd_seek",
                |mut c: $caller, fd: i32, _off: i64, _whence: i32, _out: i32| -> R {
                    w::flat(&mut c, w::stdio(fd, w::errno::SPIPE))
                },
            )
            .map_err(w::link_error)?
            .func_wrap(
                m,
                "fd_fdstat_get",
                |mut c: $caller, fd: i32, out: i32| -> R { w::fd_fdstat_get(&mut c, fd, out) },
            )
            .map_err(w::link_error)?
            // No preopened directories: EBADF ends std's and wasi-libc's preopen scan.
            .func_wrap(
                m,
                "fd_prestat_get",
                |mut c: $caller, _fd: i32, _out: i32| -> R { w::flat(&mut c, w::errno::BADF) },
            )
            .map_err(w::link_error)?
            .func_wrap(
                m,
                "fd_prestat_dir_name",
                |mut c: $caller, _fd: i32, _p: i32, _l: i32| -> R {
                    w::flat(&mut c, w::errno::BADF)
                },
            )
            .map_err(w::link_error)?
            .func_wrap(m, "sched_yield", |mut c: $caller| -> R {
                w::flat(&mut c, w::errno::SUCCESS)
            })
            .map_err(w::link_error)?
            .func_wrap(
                m,
                "fd_read",
                |mut c: $caller, fd: i32, _iovs: i32, _n: i32, out: i32| -> R {
                    w::fd_read(&mut c, fd, out)
                },
            )
            .map_err(w::link_error)?
            // Sleeping would let a guest hold a worker without spending fuel.
            .func_wrap(
                m,
                "poll_oneoff",
                |mut c: $caller, _i: i32, _o: i32, _n: i32, _r: i32| -> R {
                    w::flat(&mut c, w::errno::NOSYS)
                },
            )
            .map_err(w::link_error)?;
    }};
}
pub(crate) use link_wasi;
