//! Checksummed data patterns, as fio's `verify=crc32c`.
//!
//! A write job fills every block (of the job's verify block size) with a
//! header and a pseudo-random payload; a read job checks each block it reads
//! and counts verify errors, each naming the offset of the bad block.
//!
//! Block layout (little-endian):
//!
//! | bytes   | field                                                     |
//! |---------|-----------------------------------------------------------|
//! | 0..4    | magic `"eNdV"`                                            |
//! | 4..8    | crc32c of the whole block with these four bytes as zero   |
//! | 8..16   | the block's offset in the device                          |
//! | 16..24  | block number (`offset / block_size`)                      |
//! | 24..32  | the seed of the run                                       |
//! | 32..    | payload: splitmix64 stream seeded by seed and offset      |
//!
//! A block is any number of bytes from [`BLOCK_MIN`] up (512, 4096, but also
//! 3000 or 4097): the payload is the stream's words, the last one cut short
//! when the length is not a multiple of 8.
//!
//! The checksum covers header and payload, so any changed byte is found;
//! the offset and seed in the header then tell a misplaced block (a write
//! that landed at the wrong offset) and a stale one (written by another run)
//! apart from a corrupted one.

use crate::sync::Mutex;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of the header at the start of every block.
pub(crate) const HEADER_LEN: usize = 32;

/// The smallest verify block size.
pub(crate) const BLOCK_MIN: usize = 64;

const MAGIC: [u8; 4] = *b"eNdV";

/// How many errors a [`Verifier`] keeps for reporting (all are counted).
const ERRORS_KEPT: usize = 16;

/// What is wrong with a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// No header: the block was never written with a pattern (or its first
    /// bytes were overwritten).
    NoHeader {
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// The stored checksum does not match the block's contents.
    Checksum {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of what was read.
        computed: u32,
    },
    /// An intact block that belongs at another offset (a misdirected write
    /// or read).
    WrongOffset {
        /// The offset the block was written for.
        written_for: u64,
    },
    /// An intact block of another run (another seed): stale data.
    WrongSeed {
        /// The seed in the block.
        found: u64,
    },
}

/// A block that failed verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub struct VerifyError {
    /// Byte offset of the block in the device.
    pub offset: u64,
    /// Its block number (`offset / block_size`).
    pub block: u64,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (offset, block) = (self.offset, self.block);
        write!(f, "verify error at offset {offset} (block {block}): ")?;
        match self.problem {
            Problem::NoHeader { found } => write!(
                f,
                "no pattern header (found bytes {found:02x?}, expected \"eNdV\"); the block was never written by a verify job, or was overwritten"
            ),
            Problem::Checksum { stored, computed } => write!(
                f,
                "crc32c mismatch (header says {stored:#010x}, data gives {computed:#010x}); the data was corrupted on the way to or on the device"
            ),
            Problem::WrongOffset { written_for } => write!(
                f,
                "the block was written for offset {written_for}; a write or read went to the wrong place"
            ),
            Problem::WrongSeed { found } => write!(
                f,
                "the block carries seed {found}, not this run's; it is stale data of another run"
            ),
        }
    }
}

/// Counters of a verifying job (the `verify` object of the benchmark JSON).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyStats {
    /// Bytes checked.
    pub checked_bytes: u64,
    /// Blocks that failed.
    pub errors: u64,
}

/// splitmix64: a fast, well-mixed stream from a 64-bit state.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn block_checksum(block: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&block[0..4]);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc32c::crc32c_append(crc, &block[8..])
}

fn read_u64(block: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&block[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Fills one block (its length is the block size: at least
/// [`Verifier::BLOCK_MIN`] bytes) for `offset` with the pattern of `seed`.
///
/// # Panics
///
/// If the block is shorter than [`Verifier::BLOCK_MIN`].
pub(crate) fn fill_block(block: &mut [u8], offset: u64, seed: u64) {
    check_block_size(block.len());
    let block_size = block.len() as u64;
    block[0..4].copy_from_slice(&MAGIC);
    block[8..16].copy_from_slice(&offset.to_le_bytes());
    block[16..24].copy_from_slice(&(offset / block_size).to_le_bytes());
    block[24..32].copy_from_slice(&seed.to_le_bytes());
    let mut state = seed ^ offset.wrapping_mul(0xd6e8_feb8_6659_fd93);
    let mut words = block[HEADER_LEN..].chunks_exact_mut(8);
    for word in &mut words {
        word.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    let tail = words.into_remainder();
    let last = splitmix64(&mut state).to_le_bytes();
    let n = tail.len();
    tail.copy_from_slice(&last[..n]);
    let crc = block_checksum(block);
    block[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Checks one block read at `offset` against the pattern of `seed`.
pub(crate) fn check_block(block: &[u8], offset: u64, seed: u64) -> Result<(), VerifyError> {
    check_block_size(block.len());
    let error = |problem| VerifyError {
        offset,
        block: offset / block.len() as u64,
        problem,
    };
    if block[0..4] != MAGIC {
        let mut found = [0u8; 4];
        found.copy_from_slice(&block[0..4]);
        return Err(error(Problem::NoHeader { found }));
    }
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&block[4..8]);
    let stored = u32::from_le_bytes(stored);
    let computed = block_checksum(block);
    if stored != computed {
        return Err(error(Problem::Checksum { stored, computed }));
    }
    let written_for = read_u64(block, 8);
    if written_for != offset {
        return Err(error(Problem::WrongOffset { written_for }));
    }
    let found = read_u64(block, 24);
    if found != seed {
        return Err(error(Problem::WrongSeed { found }));
    }
    Ok(())
}

fn check_block_size(len: usize) {
    assert!(
        len >= BLOCK_MIN,
        "verify block size {len} is too small; use at least {BLOCK_MIN} bytes, e.g. the I/O block size"
    );
}

/// A checksummed data pattern for checking a storage path end to end, as
/// fio's `verify=crc32c` (what `endio bench --verify` uses): fill every write
/// buffer with [`fill`](Self::fill), check every read buffer with
/// [`check`](Self::check). Each block of the verifier's block size carries a
/// header (a magic, the crc32c of the whole block, its offset, its number,
/// the run's seed) and a pseudo-random payload of the seed and offset, so a
/// changed byte, a block written at the wrong offset and a stale block from
/// another run are each told apart ([`VerifyProblem`]). It counts what it
/// checked and keeps the first few errors; the handlers of a job share it
/// (`Sync`).
///
/// [`VerifyProblem`]: crate::VerifyProblem
#[derive(Debug)]
pub struct Verifier {
    block_size: usize,
    seed: u64,
    checked_bytes: AtomicU64,
    errors: AtomicU64,
    kept: Mutex<Vec<VerifyError>>,
}

impl Verifier {
    /// The smallest block the pattern fits in.
    pub const BLOCK_MIN: usize = BLOCK_MIN;

    /// The bytes of each block's header (offset, seed, checksum).
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// A verifier of blocks of `block_size` bytes for the run `seed`.
    ///
    /// # Panics
    ///
    /// If `block_size` is below [`Verifier::BLOCK_MIN`].
    pub fn new(block_size: usize, seed: u64) -> Verifier {
        check_block_size(block_size);
        Verifier {
            block_size,
            seed,
            checked_bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            kept: Mutex::new(Vec::new()),
        }
    }

    /// The verify block size.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Fills `buf`, which holds whole blocks and goes to `offset`.
    ///
    /// # Panics
    ///
    /// If `buf` is not a whole number of blocks.
    pub fn fill(&self, buf: &mut [u8], offset: u64) {
        self.assert_whole(buf.len());
        for (i, block) in buf.chunks_exact_mut(self.block_size).enumerate() {
            fill_block(block, offset + (i * self.block_size) as u64, self.seed);
        }
    }

    /// Checks `buf`, read at `offset`: counts its bytes, counts and keeps
    /// every bad block, and returns the first of them.
    ///
    /// # Panics
    ///
    /// If `buf` is not a whole number of blocks.
    pub fn check(&self, buf: &[u8], offset: u64) -> Result<(), VerifyError> {
        self.assert_whole(buf.len());
        let mut first = None;
        for (i, block) in buf.chunks_exact(self.block_size).enumerate() {
            if let Err(e) = check_block(block, offset + (i * self.block_size) as u64, self.seed) {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let mut kept = self.kept.lock();
                if kept.len() < ERRORS_KEPT {
                    kept.push(e);
                }
                first.get_or_insert(e);
            }
        }
        self.checked_bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        first.map_or(Ok(()), Err)
    }

    /// Bytes checked and errors found so far.
    pub fn stats(&self) -> VerifyStats {
        VerifyStats {
            checked_bytes: self.checked_bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    /// The first errors found (at most 16; all are counted in
    /// [`stats`](Self::stats)).
    pub fn errors(&self) -> Vec<VerifyError> {
        self.kept.lock().clone()
    }

    fn assert_whole(&self, len: usize) {
        assert!(
            len.is_multiple_of(self.block_size),
            "a verified buffer of {len} bytes is not a whole number of {}-byte verify blocks; make the I/O size a multiple of the verify block size",
            self.block_size
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_buffer_checks() {
        let v = Verifier::new(4096, 42);
        let mut buf = vec![0u8; 4 * 4096];
        v.fill(&mut buf, 8192);
        v.check(&buf, 8192).unwrap();
        assert_eq!(
            v.stats(),
            VerifyStats {
                checked_bytes: 16384,
                errors: 0
            }
        );
    }

    #[test]
    fn every_kind_of_damage_is_named_with_its_offset() {
        let v = Verifier::new(512, 7);
        let mut good = vec![0u8; 512];
        v.fill(&mut good, 1024);

        let mut flipped = good.clone();
        flipped[300] ^= 1;
        let e = v.check(&flipped, 1024).unwrap_err();
        assert!(matches!(e.problem, Problem::Checksum { .. }), "{e}");
        assert!(e.to_string().contains("offset 1024"), "{e}");

        let e = v.check(&vec![0u8; 512], 1024).unwrap_err();
        assert!(matches!(e.problem, Problem::NoHeader { .. }), "{e}");

        let e = v.check(&good, 1536).unwrap_err();
        assert_eq!(e.problem, Problem::WrongOffset { written_for: 1024 });
        assert_eq!(e.block, 3);

        let other = Verifier::new(512, 8);
        let e = other.check(&good, 1024).unwrap_err();
        assert_eq!(e.problem, Problem::WrongSeed { found: 7 });

        assert_eq!(v.stats().errors, 3);
        assert_eq!(v.errors().len(), 3);
    }

    #[test]
    fn payloads_differ_between_blocks_and_seeds() {
        let mut a = vec![0u8; 64];
        let mut b = vec![0u8; 64];
        fill_block(&mut a, 0, 1);
        fill_block(&mut b, 64, 1);
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
        fill_block(&mut b, 0, 2);
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
    }

    #[test]
    fn odd_block_sizes_fill_and_check_whole_buffers() {
        // Block sizes that do not divide 1 MiB, are not multiples of 512,
        // or not even of 8.
        for bs in [64, 511, 1000, 1536, 3000, 4097, 6144, 8704] {
            let v = Verifier::new(bs, 11);
            let mut buf = vec![0u8; 5 * bs];
            let offset = 3 * bs as u64;
            v.fill(&mut buf, offset);
            v.check(&buf, offset).unwrap();
            assert_eq!(v.stats().checked_bytes, 5 * bs as u64, "bs {bs}");
            // The last byte of the last block (in the cut-short word when
            // bs is not a multiple of 8) is covered by the checksum.
            let mut bad = buf.clone();
            *bad.last_mut().unwrap() ^= 0x80;
            let e = v.check(&bad, offset).unwrap_err();
            assert_eq!(e.block, 7, "bs {bs}: {e}");
            assert_eq!(e.offset, 7 * bs as u64, "bs {bs}: {e}");
            assert!(
                matches!(e.problem, Problem::Checksum { .. }),
                "bs {bs}: {e}"
            );
        }
    }

    #[test]
    fn the_tail_of_an_odd_block_is_pattern_not_zeros() {
        let mut a = vec![0u8; 4097];
        fill_block(&mut a, 0, 5);
        assert_ne!(a[4096], 0, "the last byte comes from the stream");
        let mut b = vec![0u8; 4097];
        fill_block(&mut b, 0, 5);
        assert_eq!(a, b, "the pattern is a function of seed and offset");
    }

    #[test]
    #[should_panic(expected = "verify block size 40")]
    fn tiny_blocks_are_refused_with_the_fix() {
        let _ = Verifier::new(40, 1);
    }
}
