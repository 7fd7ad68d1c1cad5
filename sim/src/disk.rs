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

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use rand_chacha::rand_core::Rng;

use ww_sched::sched::StorageBackend;

/// Largest image a simulated disk holds, in bytes: a runaway store fails
/// its write instead of eating the machine's memory.
pub const DISK_BYTES_MAX: u64 = 256 * 1024 * 1024;

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
        if let Some(len) = image.unsynced_len.take() {
            if persisted() {
                image.synced.resize(len, 0);
            }
        }
        let mut lost = 0u64;
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
        image.live.resize(end, 0);
        image.unsynced_len = Some(end);
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> io::Result<()> {
        let mut image = self.image()?;
        let image = &mut *image;
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

    #[test]
    fn writes_past_the_limit_fail_and_change_nothing() {
        let disk = SimDisk::new();
        let handle = disk.backend();
        assert!(handle.set_len(DISK_BYTES_MAX + 1).is_err());
        assert!(handle.write(DISK_BYTES_MAX, b"x").is_err());
        assert_eq!(handle.len().unwrap(), 0);
    }
}
