//! The WASI preview1 subset: captured stdio, injected clock and randomness, empty
//! args and environment, and ENOSYS for every other `wasi_snapshot_preview1` import.

use super::error::{cap_text, ErrorKind, ExecError};
use super::host::HostEnv;
use std::collections::BTreeSet;
use std::sync::Arc;
use wasmi::{
    Caller, Engine, Error, Extern, ExternType, Linker, Module, StoreLimits, StoreLimitsBuilder,
    Val, ValType,
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

/// Per-run state of the store: the host, captured output and the memory limiter.
pub(crate) struct HostState {
    host: Arc<dyn HostEnv>,
    pub(crate) stdout: OutputBuf,
    pub(crate) stderr: OutputBuf,
    pub(crate) limits: StoreLimits,
}

impl HostState {
    pub(crate) fn new(host: Arc<dyn HostEnv>, output_max: usize, memory_bytes_max: usize) -> Self {
        Self {
            host,
            stdout: OutputBuf::new(output_max),
            stderr: OutputBuf::new(output_max),
            limits: store_limits(memory_bytes_max),
        }
    }

    pub(crate) fn host(&self) -> &dyn HostEnv {
        &*self.host
    }
}

type Errno = i32;

/// Runs `f` on the guest's exported memory and the host state; errno result for the guest.
fn with_memory(
    caller: &mut Caller<'_, HostState>,
    f: impl FnOnce(&mut [u8], &mut HostState) -> Result<(), Errno>,
) -> i32 {
    let Some(memory) = caller.get_export("memory").and_then(Extern::into_memory) else {
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

fn fd_write(
    mem: &mut [u8],
    state: &mut HostState,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> Result<(), Errno> {
    let iovs_len = iovs_len as u32;
    // Checking the whole iovec array first bounds the loop by guest memory size.
    range(mem, iovs as u32, u64::from(iovs_len) * 8)?;
    let mut total: u64 = 0;
    for i in 0..iovs_len {
        let entry = (iovs as u32).wrapping_add(i * 8);
        let ptr = read_u32(mem, entry)?;
        let len = read_u32(mem, entry.wrapping_add(4))?;
        let r = range(mem, ptr, u64::from(len))?;
        let out = match fd {
            1 => &mut state.stdout,
            2 => &mut state.stderr,
            _ => return Err(errno::BADF),
        };
        out.push(&mem[r]);
        total += u64::from(len);
    }
    let total = u32::try_from(total).map_err(|_| errno::INVAL)?;
    write_bytes(mem, nwritten, &total.to_le_bytes())
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
fn write_zero_sizes(caller: &mut Caller<'_, HostState>, count_ptr: i32, size_ptr: i32) -> i32 {
    with_memory(caller, |mem, _| {
        write_bytes(mem, count_ptr, &0u32.to_le_bytes())?;
        write_bytes(mem, size_ptr, &0u32.to_le_bytes())
    })
}

/// A linker with every implemented WASI function; shared by all modules of a sandbox.
pub(crate) fn base_linker(engine: &Engine) -> Result<Linker<HostState>, ExecError> {
    let mut linker = Linker::<HostState>::new(engine);
    let internal =
        |e: wasmi::errors::LinkerError| ExecError::new(ErrorKind::Internal, e.to_string());
    let m = WASI_MODULE;
    linker
        .func_wrap(
            m,
            "fd_write",
            |mut c: Caller<'_, HostState>, fd: i32, iovs: i32, n: i32, out: i32| -> i32 {
                with_memory(&mut c, |mem, st| fd_write(mem, st, fd, iovs, n, out))
            },
        )
        .map_err(internal)?
        .func_wrap(
            m,
            "proc_exit",
            |_c: Caller<'_, HostState>, code: i32| -> Result<(), Error> {
                Err(Error::i32_exit(code))
            },
        )
        .map_err(internal)?
        .func_wrap(
            m,
            "random_get",
            |mut c: Caller<'_, HostState>, buf: i32, len: i32| -> i32 {
                with_memory(&mut c, |mem, st| {
                    let r = range(mem, buf as u32, u64::from(len as u32))?;
                    st.host().fill_random(&mut mem[r]);
                    Ok(())
                })
            },
        )
        .map_err(internal)?
        .func_wrap(
            m,
            "clock_time_get",
            |mut c: Caller<'_, HostState>, id: i32, _precision: i64, out: i32| -> i32 {
                with_memory(&mut c, |mem, st| {
                    let now = clock_ns(st.host(), id)?;
                    write_bytes(mem, out, &now.to_le_bytes())
                })
            },
        )
        .map_err(internal)?
        .func_wrap(
            m,
            "clock_res_get",
            |mut c: Caller<'_, HostState>, id: i32, out: i32| -> i32 {
                with_memory(&mut c, |mem, _| {
                    if !(0..=3).contains(&id) {
                        return Err(errno::INVAL);
                    }
                    write_bytes(mem, out, &CLOCK_RESOLUTION_NS.to_le_bytes())
                })
            },
        )
        .map_err(internal)?
        .func_wrap(
            m,
            "args_sizes_get",
            |mut c: Caller<'_, HostState>, argc: i32, size: i32| -> i32 {
                write_zero_sizes(&mut c, argc, size)
            },
        )
        .map_err(internal)?
        .func_wrap(
            m,
            "environ_sizes_get",
            |mut c: Caller<'_, HostState>, count: i32, size: i32| -> i32 {
                write_zero_sizes(&mut c, count, size)
            },
        )
        .map_err(internal)?
        // With zero entries there is nothing to copy: the pointers are never written.
        .func_wrap(
            m,
            "args_get",
            |_c: Caller<'_, HostState>, _argv: i32, _buf: i32| -> i32 { errno::SUCCESS },
        )
        .map_err(internal)?
        .func_wrap(
            m,
            "environ_get",
            |_c: Caller<'_, HostState>, _env: i32, _buf: i32| -> i32 { errno::SUCCESS },
        )
        .map_err(internal)?
        .func_wrap(m, "fd_close", |_c: Caller<'_, HostState>, fd: i32| -> i32 {
            if (0..=2).contains(&fd) {
                errno::SUCCESS
            } else {
                errno::BADF
            }
        })
        .map_err(internal)?
        .func_wrap(
            m,
            "fd_seek",
            |_c: Caller<'_, HostState>, fd: i32, _off: i64, _whence: i32, _out: i32| -> i32 {
                if (0..=2).contains(&fd) {
                    errno::SPIPE
                } else {
                    errno::BADF
                }
            },
        )
        .map_err(internal)?
        .func_wrap(
            m,
            "fd_fdstat_get",
            |mut c: Caller<'_, HostState>, fd: i32, out: i32| -> i32 {
                with_memory(&mut c, |mem, _| {
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
                })
            },
        )
        .map_err(internal)?
        // No preopened directories: EBADF ends std's and wasi-libc's preopen scan.
        .func_wrap(
            m,
            "fd_prestat_get",
            |_c: Caller<'_, HostState>, _fd: i32, _out: i32| -> i32 { errno::BADF },
        )
        .map_err(internal)?
        .func_wrap(
            m,
            "fd_prestat_dir_name",
            |_c: Caller<'_, HostState>, _fd: i32, _p: i32, _l: i32| -> i32 { errno::BADF },
        )
        .map_err(internal)?
        .func_wrap(m, "sched_yield", |_c: Caller<'_, HostState>| -> i32 {
            errno::SUCCESS
        })
        .map_err(internal)?
        // stdin is empty: a read returns 0 bytes (EOF) on fd 0.
        .func_wrap(
            m,
            "fd_read",
            |mut c: Caller<'_, HostState>, fd: i32, _iovs: i32, _n: i32, out: i32| -> i32 {
                if fd != 0 {
                    return errno::BADF;
                }
                with_memory(&mut c, |mem, _| write_bytes(mem, out, &0u32.to_le_bytes()))
            },
        )
        .map_err(internal)?
        // Sleeping would let a guest hold a worker without spending fuel.
        .func_wrap(
            m,
            "poll_oneoff",
            |_c: Caller<'_, HostState>, _i: i32, _o: i32, _n: i32, _r: i32| -> i32 { errno::NOSYS },
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
                move |_c, _params: &[Val], results: &mut [Val]| {
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
