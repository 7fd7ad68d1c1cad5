//! The WASI preview1 subset: captured stdio, injected clock and randomness, empty
//! args and environment, and ENOSYS for every other `wasi_snapshot_preview1` import.

use super::error::{cap_text, ErrorKind, ExecError};
use super::host::HostEnv;
use super::meter::{bytes_fuel, call_fuel, Meter, HOST_CALL_FUEL, HOST_CHUNK_BYTES};
use std::collections::BTreeSet;
use std::sync::Arc;
use wasmi::{
    Caller, Engine, Error, Extern, ExternType, Linker, Memory, Module, StoreLimits,
    StoreLimitsBuilder, Val, ValType,
};

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
const IMPLEMENTED: [&str; 17] = [
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
const TABLE_ELEMENTS_MAX: usize = 1 << 20;

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

/// Store limits of one run.
///
/// A custom `ResourceLimiter` is not possible: wasmi 2 does not export `LimiterError`,
/// the only error type its methods may return. `StoreLimits` with `trap_on_grow_failure`
/// gives the wanted effect: growth past the limit traps (`GrowthOperationLimited`) rather
/// than returning -1, so a memory bomb ends at once as MemoryLimit instead of spinning
/// until its fuel runs out.
pub(crate) fn store_limits(memory_bytes_max: usize) -> StoreLimits {
    StoreLimitsBuilder::new()
        .memory_size(memory_bytes_max)
        .table_elements(TABLE_ELEMENTS_MAX)
        .instances(1)
        .memories(1)
        .tables(16)
        .trap_on_grow_failure(true)
        .build()
}

/// Per-run state of the store: the host, captured output, the memory limiter and
/// the fuel and time account that host calls charge.
pub(crate) struct HostState {
    host: Arc<dyn HostEnv>,
    pub(crate) stdout: OutputBuf,
    pub(crate) stderr: OutputBuf,
    pub(crate) limits: StoreLimits,
    pub(crate) meter: Meter,
}

impl HostState {
    pub(crate) fn new(
        host: Arc<dyn HostEnv>,
        output_max: usize,
        memory_bytes_max: usize,
        meter: Meter,
    ) -> Self {
        Self {
            host,
            stdout: OutputBuf::new(output_max),
            stderr: OutputBuf::new(output_max),
            limits: store_limits(memory_bytes_max),
            meter,
        }
    }

    pub(crate) fn host(&self) -> &dyn HostEnv {
        &*self.host
    }
}

type Errno = i32;

/// Charges a host call `fuel` before it does its work; checks cancellation and the
/// deadline first, so a guest living in host calls stops like one in a loop.
fn charge(caller: &mut Caller<'_, HostState>, fuel: u64) -> Result<(), Error> {
    // Fuel metering is always on in this engine; an error here would be our bug.
    let left = caller.get_fuel()?;
    let level = caller
        .data_mut()
        .meter
        .charge(left, fuel)
        .map_err(Error::host)?;
    caller.set_fuel(level)
}

/// The guest's exported memory, if any.
fn guest_memory(caller: &Caller<'_, HostState>) -> Option<Memory> {
    caller.get_export("memory").and_then(Extern::into_memory)
}

/// Runs `f` on the guest's exported memory and the host state; errno result for the guest.
fn with_memory(
    caller: &mut Caller<'_, HostState>,
    f: impl FnOnce(&mut [u8], &mut HostState) -> Result<(), Errno>,
) -> i32 {
    let Some(memory) = guest_memory(caller) else {
        return errno::FAULT;
    };
    let (mem, state) = memory.data_and_store_mut(caller);
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
    let out = if fd == 1 {
        &mut state.stdout
    } else {
        &mut state.stderr
    };
    for i in 0..iovs_len {
        let entry = iovs.wrapping_add(i * 8);
        let ptr = read_u32(mem, entry)?;
        let len = read_u32(mem, entry.wrapping_add(4))?;
        out.push(&mem[range(mem, ptr, u64::from(len))?]);
    }
    write_bytes(mem, nwritten, &total.to_le_bytes())
}

/// `fd_write`: pays for the iovec array, then for the bytes named, then copies.
fn fd_write(
    caller: &mut Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> Result<i32, Error> {
    let (iovs, iovs_len) = (iovs as u32, iovs_len as u32);
    charge(caller, call_fuel(u64::from(iovs_len) * 8))?;
    let Some(memory) = guest_memory(caller) else {
        return Ok(errno::FAULT);
    };
    let total = match iov_total(memory.data(&*caller), fd, iovs, iovs_len) {
        Ok(total) => total,
        Err(code) => return Ok(code),
    };
    let Ok(total) = u32::try_from(total) else {
        return Ok(errno::INVAL);
    };
    // Every byte named is paid for, kept or not: a guest cannot write for free
    // into a full buffer.
    charge(caller, bytes_fuel(u64::from(total)))?;
    let (mem, state) = memory.data_and_store_mut(&mut *caller);
    Ok(
        match iov_copy(mem, state, fd, iovs, iovs_len, total, nwritten) {
            Ok(()) => errno::SUCCESS,
            Err(code) => code,
        },
    )
}

/// `random_get`: fills the buffer chunk by chunk, paying for each chunk first, so a
/// huge buffer costs fuel in proportion and stops at the deadline or on cancel.
fn random_get(caller: &mut Caller<'_, HostState>, buf: i32, len: i32) -> Result<i32, Error> {
    charge(caller, HOST_CALL_FUEL)?;
    let Some(memory) = guest_memory(caller) else {
        return Ok(errno::FAULT);
    };
    let Ok(whole) = range(memory.data(&*caller), buf as u32, u64::from(len as u32)) else {
        return Ok(errno::FAULT);
    };
    let mut at = whole.start;
    while at < whole.end {
        let end = whole.end.min(at.saturating_add(HOST_CHUNK_BYTES));
        charge(caller, bytes_fuel((end - at) as u64))?;
        let (mem, state) = memory.data_and_store_mut(&mut *caller);
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
fn write_zero_sizes(
    caller: &mut Caller<'_, HostState>,
    count_ptr: i32,
    size_ptr: i32,
) -> Result<i32, Error> {
    charge(caller, call_fuel(8))?;
    Ok(with_memory(caller, |mem, _| {
        write_bytes(mem, count_ptr, &0u32.to_le_bytes())?;
        write_bytes(mem, size_ptr, &0u32.to_le_bytes())
    }))
}

/// A call that touches no guest memory: pays the base cost, then answers `code`.
fn flat(caller: &mut Caller<'_, HostState>, code: Errno) -> Result<i32, Error> {
    charge(caller, HOST_CALL_FUEL)?;
    Ok(code)
}

/// The errno for a call on a stdio descriptor (`ok`) or any other (`BADF`).
fn stdio(fd: i32, ok: Errno) -> Errno {
    if (0..=2).contains(&fd) {
        ok
    } else {
        errno::BADF
    }
}

/// A linker with every implemented WASI function; shared by all modules of a sandbox.
///
/// Every function except `proc_exit` first charges fuel (see `charge`), which also
/// checks the deadline and cancellation.
pub(crate) fn base_linker(engine: &Engine) -> Result<Linker<HostState>, ExecError> {
    type C<'a> = Caller<'a, HostState>;
    type R = Result<i32, Error>;
    let mut linker = Linker::<HostState>::new(engine);
    let internal =
        |e: wasmi::errors::LinkerError| ExecError::new(ErrorKind::Internal, e.to_string());
    let m = WASI_MODULE;
    linker
        .func_wrap(
            m,
            "fd_write",
            |mut c: C, fd: i32, iovs: i32, n: i32, out: i32| -> R {
                fd_write(&mut c, fd, iovs, n, out)
            },
        )
        .map_err(internal)?
        .func_wrap(m, "proc_exit", |_c: C, code: i32| -> Result<(), Error> {
            Err(Error::i32_exit(code))
        })
        .map_err(internal)?
        .func_wrap(m, "random_get", |mut c: C, buf: i32, len: i32| -> R {
            random_get(&mut c, buf, len)
        })
        .map_err(internal)?
        .func_wrap(
            m,
            "clock_time_get",
            |mut c: C, id: i32, _p: i64, out: i32| -> R {
                charge(&mut c, call_fuel(8))?;
                Ok(with_memory(&mut c, |mem, st| {
                    let now = clock_ns(st.host(), id)?;
                    write_bytes(mem, out, &now.to_le_bytes())
                }))
            },
        )
        .map_err(internal)?
        .func_wrap(m, "clock_res_get", |mut c: C, id: i32, out: i32| -> R {
            charge(&mut c, call_fuel(8))?;
            Ok(with_memory(&mut c, |mem, _| {
                if !(0..=3).contains(&id) {
                    return Err(errno::INVAL);
                }
                write_bytes(mem, out, &CLOCK_RESOLUTION_NS.to_le_bytes())
            }))
        })
        .map_err(internal)?
        .func_wrap(m, "args_sizes_get", |mut c: C, argc: i32, size: i32| -> R {
            write_zero_sizes(&mut c, argc, size)
        })
        .map_err(internal)?
        .func_wrap(
            m,
            "environ_sizes_get",
            |mut c: C, count: i32, size: i32| -> R { write_zero_sizes(&mut c, count, size) },
        )
        .map_err(internal)?
        // With zero entries there is nothing to copy: the pointers are never written.
        .func_wrap(m, "args_get", |mut c: C, _argv: i32, _buf: i32| -> R {
            flat(&mut c, errno::SUCCESS)
        })
        .map_err(internal)?
        .func_wrap(m, "environ_get", |mut c: C, _env: i32, _buf: i32| -> R {
            flat(&mut c, errno::SUCCESS)
        })
        .map_err(internal)?
        .func_wrap(m, "fd_close", |mut c: C, fd: i32| -> R {
            flat(&mut c, stdio(fd, errno::SUCCESS))
        })
        .map_err(internal)?
        .func_wrap(
            m,
            "fd_seek",
            |mut c: C, fd: i32, _off: i64, _whence: i32, _out: i32| -> R {
                flat(&mut c, stdio(fd, errno::SPIPE))
            },
        )
        .map_err(internal)?
        .func_wrap(m, "fd_fdstat_get", |mut c: C, fd: i32, out: i32| -> R {
            charge(&mut c, call_fuel(24))?;
            Ok(with_memory(&mut c, |mem, _| {
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
        })
        .map_err(internal)?
        // No preopened directories: EBADF ends std's and wasi-libc's preopen scan.
        .func_wrap(m, "fd_prestat_get", |mut c: C, _fd: i32, _out: i32| -> R {
            flat(&mut c, errno::BADF)
        })
        .map_err(internal)?
        .func_wrap(
            m,
            "fd_prestat_dir_name",
            |mut c: C, _fd: i32, _p: i32, _l: i32| -> R { flat(&mut c, errno::BADF) },
        )
        .map_err(internal)?
        .func_wrap(m, "sched_yield", |mut c: C| -> R {
            flat(&mut c, errno::SUCCESS)
        })
        .map_err(internal)?
        // stdin is empty: a read returns 0 bytes (EOF) on fd 0.
        .func_wrap(
            m,
            "fd_read",
            |mut c: C, fd: i32, _iovs: i32, _n: i32, out: i32| -> R {
                charge(&mut c, call_fuel(4))?;
                if fd != 0 {
                    return Ok(errno::BADF);
                }
                Ok(with_memory(&mut c, |mem, _| {
                    write_bytes(mem, out, &0u32.to_le_bytes())
                }))
            },
        )
        .map_err(internal)?
        // Sleeping would let a guest hold a worker without spending fuel.
        .func_wrap(
            m,
            "poll_oneoff",
            |mut c: C, _i: i32, _o: i32, _n: i32, _r: i32| -> R { flat(&mut c, errno::NOSYS) },
        )
        .map_err(internal)?;
    Ok(linker)
}

/// Extends `base` for `module`: other WASI functions return ENOSYS; foreign imports are BadModule.
pub(crate) fn module_linker(
    base: &Linker<HostState>,
    module: &Module,
) -> Result<Linker<HostState>, ExecError> {
    let mut linker = base.clone();
    let mut stubbed = BTreeSet::new();
    for import in module.imports() {
        let (module_name, name) = (import.module(), import.name());
        let what = || cap_text(format!("{module_name}::{name}"), 160);
        if module_name != WASI_MODULE {
            return Err(ExecError::new(
                ErrorKind::BadModule,
                format!("import from unknown module: {}", what()),
            ));
        }
        let ExternType::Func(ty) = import.ty() else {
            return Err(ExecError::new(
                ErrorKind::BadModule,
                format!("unsupported non-function import: {}", what()),
            ));
        };
        if IMPLEMENTED.contains(&name) || !stubbed.insert(name.to_string()) {
            continue;
        }
        let fname = name.to_string();
        let errno_result = ty.results() == [ValType::I32];
        linker
            .func_new(
                WASI_MODULE,
                name,
                ty.clone(),
                move |mut c, _params: &[Val], results: &mut [Val]| {
                    charge(&mut c, HOST_CALL_FUEL)?;
                    tracing::debug!(function = %fname, "unsupported WASI call");
                    if errno_result {
                        results[0] = Val::I32(errno::NOSYS);
                        Ok(())
                    } else {
                        Err(Error::new(format!("unsupported WASI function {fname}")))
                    }
                },
            )
            .map_err(|e| ExecError::new(ErrorKind::BadModule, e.to_string()))?;
    }
    Ok(linker)
}
