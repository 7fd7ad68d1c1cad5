//! A crashable disk for the gateway's store.
//!
//! A real crash keeps what was fsynced and may lose everything written since.
//! Dropping a store on a real file is instead a clean shutdown (redb makes a
//! durable commit on drop), so a simulated crash on a file would never lose
//! anything and an answer given before its fsync would go unpunished. This disk
//! keeps the image as of the last `sync_data` apart from the live one; a crash
//! keeps a seeded random subset of the writes since (a real disk persists some
//! of them, in any order), throws the rest away, and fences the crashed store's
//! handles, so whatever the dropped store writes on its way down goes nowhere.
//!
//! Faults can be armed on the disk (and outlive every incarnation of the host
//! until healed): see [`DiskFault`]. A refused call changes nothing.
//!
//! The disk can also lie about `sync_data` ([`SyncPolicy`]): it reports every
//! sync done while flushing only some, as a drive with a volatile write cache
//! that ignores flushes does. The store believes its commits durable and shows
//! them; a crash takes back everything since the last real flush. That is the
//! `show-unsynced-results` sabotage: the checks must see a result the client
//! was shown change.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use rand_chacha::rand_core::Rng;

use ww_sched::sched::StorageBackend;

/// Largest image a simulated disk holds, in bytes: a runaway store fails
/// its write instead of eating the machine's memory.
pub const DISK_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// A fault armed on a [`SimDisk`] until [`SimDisk::heal`]. Reads and `len`
/// keep working under every fault; each refused call is counted
/// ([`SimDisk::failures`]) and changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFault {
    /// The device fails: `write`, `set_len` and `sync_data` fail with EIO
    /// (raw os error 5). A device that refuses writes flushes nothing either,
    /// so `sync_data` fails as under [`DiskFault::FsyncFail`].
    Eio,
    /// The disk is full: every `write` and every `set_len` that grows the file
    /// fail with ENOSPC (raw os error 28); shrinking and `sync_data` work.
    Full,
    /// `sync_data` fails with EIO (raw os error 5) and makes nothing durable.
    /// As Linux may after a failed fsync, the writes it should have flushed
    /// are dropped from writeback: reads still see them, but no later sync
    /// makes them durable, so the next crash loses them even after a heal and
    /// a successful sync. (An unsynced change of length stays pending.)
    FsyncFail,
}

impl DiskFault {
    /// The fault's name in timelines.
    pub fn name(self) -> &'static str {
        match self {
            DiskFault::Eio => "eio",
            DiskFault::Full => "enospc",
            DiskFault::FsyncFail => "fsync failure",
        }
    }
}

/// What `sync_data` does on a [`SimDisk`]. A lie is not a fault: the call
/// succeeds and nothing is counted in [`SimDisk::failures`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every sync makes every write so far durable.
    #[default]
    Honest,
    /// Every sync reports success and makes nothing durable.
    Lying,
    /// One sync in `n` (the `n`-th, the `2n`-th, ...) makes every write so
    /// far durable; the others report success and make nothing durable. `0`
    /// counts as 1 (honest).
    FlushEvery(u64),
}

/// Raw os error of an I/O error (EIO).
const EIO: i32 = 5;
/// Raw os error of a full disk (ENOSPC).
const ENOSPC: i32 = 28;

#[derive(Debug, Default)]
struct Image {
    /// What every read sees: all writes, synced or not.
    live: Vec<u8>,
    /// What survives a crash: the live image at the last sync.
    synced: Vec<u8>,
    /// Writes since the last sync, in order: (offset, bytes); a change of length
    /// is kept apart in `unsynced_len`.
    dirty: Vec<(usize, Vec<u8>)>,
    /// Length set since the last sync, if any.
    unsynced_len: Option<usize>,
    /// Bumped by each crash; handles opened before it are fenced.
    generation: u64,
    /// Syncs so far (all generations).
    syncs: u64,
    /// Unsynced bytes thrown away by crashes (all generations).
    bytes_lost: u64,
    /// Writes a failed sync dropped from writeback: still in `live`, never
    /// made durable, lost in the next crash.
    dropped: Vec<(usize, Vec<u8>)>,
    /// The fault armed now, if any.
    fault: Option<DiskFault>,
    /// Calls refused by an armed fault (all generations).
    failures: u64,
    /// What `sync_data` does.
    policy: SyncPolicy,
    /// Syncs reported done but not made (all generations).
    lies: u64,
    /// Syncs asked for since the last one made under [`SyncPolicy::FlushEvery`].
    since_flush: u64,
    /// A sync was reported done but not made since the last real one.
    lie_pending: bool,
}

impl Image {
    /// Whether the sync asked for now is really made (counting a lie if not).
    fn flushes(&mut self) -> bool {
        let flush = match self.policy {
            SyncPolicy::Honest => true,
            SyncPolicy::Lying => false,
            SyncPolicy::FlushEvery(n) => {
                self.since_flush += 1;
                self.since_flush >= n
            }
        };
        if flush {
            self.since_flush = 0;
            self.lie_pending = false;
        } else {
            self.lies += 1;
            self.lie_pending = true;
        }
        flush
    }

    /// Refuses the call (counting it) with raw os error `code`.
    fn refuse(&mut self, code: i32) -> io::Error {
        self.failures += 1;
        io::Error::from_raw_os_error(code)
    }
}

/// A disk shared by every incarnation of one simulated host; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    image: Arc<Mutex<Image>>,
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    fn lock(&self) -> MutexGuard<'_, Image> {
        self.image.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A handle for a store opened now; it is fenced by the next crash.
    pub fn backend(&self) -> DiskBackend {
        DiskBackend {
            generation: self.lock().generation,
            disk: self.clone(),
        }
    }

    /// The host crashed: every unsynced write is lost and every handle open now
    /// is fenced. Returns the bytes thrown away.
    pub fn crash(&self) -> u64 {
        self.crash_keeping(|| false)
    }

    /// [`SimDisk::crash`], but each unsynced write (and an unsynced change of
    /// length) reaches the disk with probability 1/2, drawn from `rng`.
    pub fn crash_torn(&self, rng: &mut impl Rng) -> u64 {
        self.crash_keeping(|| rng.next_u32() & 1 == 1)
    }

    fn crash_keeping(&self, mut persisted: impl FnMut() -> bool) -> u64 {
        let mut image = self.lock();
        let image = &mut *image;
        // After a lie, the write cache loses all it held: a torn subset of
        // several commits the store believed durable (whose pages it has
        // reused since) is a disk no database survives, which would test
        // redb, not what the gateway showed.
        let whole = std::mem::take(&mut image.lie_pending);
        let mut persisted = move || !whole && persisted();
        if let Some(len) = image.unsynced_len.take() {
            if persisted() {
                image.synced.resize(len, 0);
            }
        }
        let mut lost: u64 = image.dropped.drain(..).map(|(_, d)| d.len() as u64).sum();
        for (start, data) in image.dirty.drain(..) {
            let end = (start + data.len()).min(image.synced.len());
            if start < end && persisted() {
                image.synced[start..end].copy_from_slice(&data[..end - start]);
            } else {
                lost += data.len() as u64;
            }
        }
        image.live = image.synced.clone();
        image.generation += 1;
        image.bytes_lost += lost;
        lost
    }

    /// Syncs so far and unsynced bytes lost to crashes.
    pub fn stats(&self) -> (u64, u64) {
        let image = self.lock();
        (image.syncs, image.bytes_lost)
    }

    /// Arms `fault` (replacing any armed one) until [`SimDisk::heal`]; it holds
    /// for every handle, across crashes.
    pub fn inject(&self, fault: DiskFault) {
        self.lock().fault = Some(fault);
    }

    /// Clears the armed fault, if any (what a failed sync dropped stays dropped).
    pub fn heal(&self) {
        self.lock().fault = None;
    }

    /// The fault armed now.
    pub fn fault(&self) -> Option<DiskFault> {
        self.lock().fault
    }

    /// Calls refused by injected faults so far (all generations).
    pub fn failures(&self) -> u64 {
        self.lock().failures
    }

    /// Sets what `sync_data` does from now on, for every handle and across
    /// crashes; writes already reported synced stay as they are (durable or
    /// not).
    pub fn set_sync_policy(&self, policy: SyncPolicy) {
        let mut image = self.lock();
        image.policy = policy;
        image.since_flush = 0;
    }

    /// Syncs reported done but not made so far (all generations).
    pub fn lies(&self) -> u64 {
        self.lock().lies
    }
}

/// One store's handle on a [`SimDisk`]; after a crash every call fails.
#[derive(Debug)]
pub struct DiskBackend {
    disk: SimDisk,
    generation: u64,
}

impl DiskBackend {
    /// The image, unless a crash fenced this handle.
    fn image(&self) -> io::Result<MutexGuard<'_, Image>> {
        let image = self.disk.lock();
        if image.generation != self.generation {
            return Err(io::Error::other(
                "simulated host crashed; disk handle fenced",
            ));
        }
        Ok(image)
    }
}

fn range(offset: u64, len: usize) -> io::Result<(usize, usize)> {
    let end = offset
        .checked_add(len as u64)
        .filter(|end| *end <= DISK_BYTES_MAX)
        .ok_or_else(|| io::Error::other(format!("disk holds at most {DISK_BYTES_MAX} bytes")))?;
    Ok((offset as usize, end as usize))
}

impl StorageBackend for DiskBackend {
    fn len(&self) -> io::Result<u64> {
        Ok(self.image()?.live.len() as u64)
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let image = self.image()?;
        let (start, end) = range(offset, len)?;
        image
            .live
            .get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut image = self.image()?;
        let (_, end) = range(len, 0)?;
        match image.fault {
            Some(DiskFault::Eio) => return Err(image.refuse(EIO)),
            Some(DiskFault::Full) if end > image.live.len() => return Err(image.refuse(ENOSPC)),
            _ => {}
        }
        image.live.resize(end, 0);
        image.unsynced_len = Some(end);
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> io::Result<()> {
        let mut image = self.image()?;
        let image = &mut *image;
        if matches!(image.fault, Some(DiskFault::Eio | DiskFault::FsyncFail)) {
            let dropped: Vec<(usize, Vec<u8>)> = image.dirty.drain(..).collect();
            image.dropped.extend(dropped);
            return Err(image.refuse(EIO));
        }
        if !image.flushes() {
            return Ok(());
        }
        image.synced.resize(image.live.len(), 0);
        image.unsynced_len = None;
        for (start, data) in image.dirty.drain(..) {
            let end = (start + data.len()).min(image.live.len());
            if start < end {
                image.synced[start..end].copy_from_slice(&image.live[start..end]);
            }
        }
        image.syncs += 1;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut image = self.image()?;
        let (start, end) = range(offset, data.len())?;
        match image.fault {
            Some(DiskFault::Eio) => return Err(image.refuse(EIO)),
            Some(DiskFault::Full) => return Err(image.refuse(ENOSPC)),
            _ => {}
        }
        if image.live.len() < end {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "write past the end",
            ));
        }
        image.live[start..end].copy_from_slice(data);
        image.dirty.push((start, data.to_vec()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_keeps_only_what_was_synced() {
        let disk = SimDisk::new();
        let first = disk.backend();
        first.set_len(8).unwrap();
        first.write(0, b"dura").unwrap();
        first.sync_data(false).unwrap();
        first.write(4, b"lost").unwrap();
        first.write(0, b"DURA").unwrap();
        assert_eq!(first.read(0, 8).unwrap(), b"DURAlost");

        assert_eq!(disk.crash(), 8, "both unsynced writes of 4 bytes are lost");
        assert!(
            first.write(0, b"late").is_err(),
            "a fenced handle must not write"
        );
        assert!(first.sync_data(false).is_err());

        let second = disk.backend();
        assert_eq!(second.read(0, 8).unwrap(), b"dura\0\0\0\0");
        assert_eq!(disk.stats(), (1, 8));
    }

    #[test]
    fn growth_after_the_last_sync_is_lost_too() {
        let disk = SimDisk::new();
        let handle = disk.backend();
        handle.set_len(4).unwrap();
        handle.sync_data(false).unwrap();
        handle.set_len(16).unwrap();
        handle.write(8, b"gone").unwrap();
        disk.crash();
        assert_eq!(disk.backend().len().unwrap(), 4);
    }

    #[test]
    fn a_torn_crash_keeps_some_unsynced_writes_whole() {
        use rand_chacha::rand_core::SeedableRng;
        let mut outcomes = std::collections::BTreeSet::new();
        for seed in 0..32 {
            let disk = SimDisk::new();
            let handle = disk.backend();
            handle.set_len(4).unwrap();
            handle.sync_data(false).unwrap();
            handle.write(0, b"ab").unwrap();
            handle.write(2, b"cd").unwrap();
            disk.crash_torn(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            let kept = disk.backend().read(0, 4).unwrap();
            // Each write is kept whole or not at all.
            assert!([&b"\0\0\0\0"[..], b"ab\0\0", b"\0\0cd", b"abcd"].contains(&&kept[..]));
            outcomes.insert(kept);
        }
        assert_eq!(outcomes.len(), 4, "32 seeds should reach every subset");
    }

    /// A disk holding "dura" durably and "lost" unsynced after it, and a handle.
    fn disk_with_unsynced_tail() -> (SimDisk, DiskBackend) {
        let disk = SimDisk::new();
        let handle = disk.backend();
        handle.set_len(8).unwrap();
        handle.write(0, b"dura").unwrap();
        handle.sync_data(false).unwrap();
        handle.write(4, b"lost").unwrap();
        (disk, handle)
    }

    fn raw(result: io::Result<()>) -> Option<i32> {
        result
            .expect_err("the fault should refuse the call")
            .raw_os_error()
    }

    #[test]
    fn eio_refuses_writes_and_syncs_and_keeps_reads() {
        let (disk, handle) = disk_with_unsynced_tail();
        disk.inject(DiskFault::Eio);
        assert_eq!(disk.fault(), Some(DiskFault::Eio));
        assert_eq!(raw(handle.write(0, b"XXXX")), Some(EIO));
        assert_eq!(raw(handle.set_len(16)), Some(EIO));
        assert_eq!(raw(handle.set_len(2)), Some(EIO));
        assert_eq!(raw(handle.sync_data(false)), Some(EIO));
        assert_eq!(raw(handle.write(0, b"XXXX")), Some(EIO));
        // Nothing refused changed the image; reads see what was accepted.
        assert_eq!(handle.len().unwrap(), 8);
        assert_eq!(handle.read(0, 8).unwrap(), b"duralost");
        assert_eq!(disk.failures(), 5);
        assert_eq!(disk.stats().0, 1, "the failed sync is not counted as one");

        disk.heal();
        assert_eq!(disk.fault(), None);
        handle.write(0, b"DURA").unwrap();
        handle.sync_data(false).unwrap();
        disk.crash();
        // The failed sync dropped "lost" from writeback; "DURA" came after.
        assert_eq!(disk.backend().read(0, 8).unwrap(), b"DURA\0\0\0\0");
        assert_eq!(disk.failures(), 5);
    }

    #[test]
    fn a_full_disk_refuses_writes_and_growth_but_shrinks() {
        let (disk, handle) = disk_with_unsynced_tail();
        disk.inject(DiskFault::Full);
        let full = handle.write(0, b"XX").unwrap_err();
        assert_eq!(full.kind(), io::ErrorKind::StorageFull);
        assert_eq!(full.raw_os_error(), Some(ENOSPC));
        assert_eq!(raw(handle.set_len(9)), Some(ENOSPC));
        assert_eq!(handle.read(0, 8).unwrap(), b"duralost");
        assert_eq!(handle.len().unwrap(), 8);
        assert_eq!(disk.failures(), 2);
        // Shrinking frees space, and a sync still flushes what was accepted.
        handle.set_len(6).unwrap();
        handle.sync_data(false).unwrap();
        disk.crash();
        let after = disk.backend();
        assert_eq!(after.read(0, 6).unwrap(), b"duralo");
        assert_eq!(after.len().unwrap(), 6);

        disk.heal();
        after.set_len(8).unwrap();
        after.write(6, b"ok").unwrap();
        after.sync_data(false).unwrap();
        assert_eq!(after.read(0, 8).unwrap(), b"duralook");
        assert_eq!(disk.failures(), 2);
    }

    #[test]
    fn a_failed_fsync_makes_nothing_durable_and_a_crash_loses_it() {
        let (disk, handle) = disk_with_unsynced_tail();
        disk.inject(DiskFault::FsyncFail);
        // Writes are accepted (into the page cache); the sync fails.
        handle.write(0, b"DURA").unwrap();
        assert_eq!(raw(handle.sync_data(false)), Some(EIO));
        assert_eq!(
            handle.read(0, 8).unwrap(),
            b"DURAlost",
            "reads still see them"
        );
        assert_eq!(disk.failures(), 1);
        assert_eq!(
            disk.crash(),
            8,
            "both writes the failed sync covered are lost"
        );
        assert_eq!(disk.backend().read(0, 8).unwrap(), b"dura\0\0\0\0");
    }

    #[test]
    fn writes_dropped_by_a_failed_fsync_stay_lost_after_a_heal_and_a_sync() {
        let (disk, handle) = disk_with_unsynced_tail();
        disk.inject(DiskFault::FsyncFail);
        assert!(handle.sync_data(false).is_err());
        disk.heal();
        // A store that retries the sync and believes it is durable now is wrong.
        handle.sync_data(false).unwrap();
        handle.write(0, b"DU").unwrap();
        handle.sync_data(false).unwrap();
        assert_eq!(handle.read(0, 8).unwrap(), b"DUralost");
        assert_eq!(disk.crash(), 4);
        assert_eq!(disk.backend().read(0, 8).unwrap(), b"DUra\0\0\0\0");
    }

    #[test]
    fn a_lying_disk_reports_syncs_and_a_crash_loses_them_whole() {
        let (disk, handle) = disk_with_unsynced_tail();
        disk.set_sync_policy(SyncPolicy::Lying);
        handle.sync_data(false).unwrap();
        handle.write(0, b"DURA").unwrap();
        handle.sync_data(false).unwrap();
        assert_eq!(handle.read(0, 8).unwrap(), b"DURAlost");
        assert_eq!((disk.lies(), disk.failures()), (2, 0), "a lie is no fault");
        // However the crash is torn, nothing since the last real flush stays.
        let mut rng =
            <rand_chacha::ChaCha8Rng as rand_chacha::rand_core::SeedableRng>::seed_from_u64(1);
        assert_eq!(disk.crash_torn(&mut rng), 8);
        assert_eq!(disk.backend().read(0, 8).unwrap(), b"dura\0\0\0\0");
    }

    #[test]
    fn flushing_every_second_sync_makes_both_writes_durable_at_the_second() {
        let (disk, handle) = disk_with_unsynced_tail();
        disk.set_sync_policy(SyncPolicy::FlushEvery(2));
        handle.sync_data(false).unwrap();
        handle.write(0, b"DURA").unwrap();
        handle.sync_data(false).unwrap();
        handle.write(0, b"gone").unwrap();
        handle.sync_data(false).unwrap();
        assert_eq!(disk.lies(), 2);
        assert_eq!(
            disk.crash(),
            4,
            "only the write after the real flush is lost"
        );
        assert_eq!(disk.backend().read(0, 8).unwrap(), b"DURAlost");
    }

    #[test]
    fn faults_outlive_crashes_until_healed() {
        let (disk, _) = disk_with_unsynced_tail();
        disk.inject(DiskFault::Eio);
        disk.crash();
        let next = disk.backend();
        assert_eq!(raw(next.write(0, b"x")), Some(EIO));
        assert_eq!(next.read(0, 4).unwrap(), b"dura");
        disk.heal();
        next.write(0, b"x").unwrap();
    }

    #[test]
    fn writes_past_the_limit_fail_and_change_nothing() {
        let disk = SimDisk::new();
        let handle = disk.backend();
        assert!(handle.set_len(DISK_BYTES_MAX + 1).is_err());
        assert!(handle.write(DISK_BYTES_MAX, b"x").is_err());
        assert_eq!(handle.len().unwrap(), 0);
    }
}
