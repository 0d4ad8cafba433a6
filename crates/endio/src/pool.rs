//! Registered buffers: a pool of page-aligned memory an engine registers
//! with each of its io_uring rings (`IORING_REGISTER_BUFFERS`, as fio's
//! `fixedbufs`), so that I/O on a buffer from it is issued as `READ_FIXED`
//! or `WRITE_FIXED` and the kernel does not pin and unpin the buffer's
//! pages for every I/O (on this machine's VM, 4 KiB direct reads then cost
//! about 15 % less CPU).
//!
//! A [`Buf`](crate::Buf) knows whether it came from a pool and from which
//! one; the ring uses the fixed form only for a buffer of the pool it
//! registered. Registration pins the pool's pages for as long as the ring
//! lives; the pool's memory lives as long as the pool or any buffer from it
//! (each holds the pool), so a buffer that outlives its engine stays valid.
//!
//! The pool is cut into blocks of 4 KiB × 2^k (up to 8 MiB), taken from the
//! pool's end the first time a block of that size is needed and kept on a
//! free list of its size when given back: a buffer is one block, zeroed when
//! handed out. A request the pool cannot serve (too large, or the pool is
//! used up) gets an ordinary heap buffer instead.

use std::fmt;
use std::io;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, PoisonError};

/// The smallest block: a page, which also gives every block an alignment
/// `O_DIRECT` accepts.
const BLOCK_MIN: usize = 4096;

/// Block sizes: 4 KiB to 8 MiB.
const CLASSES: usize = 12;

/// The most a pool holds: io_uring registers at most 1 GiB per buffer.
pub(crate) const POOL_BYTES_MAX: usize = 1 << 30;

/// Memory registered (or to be) with an engine's rings.
pub(crate) struct BufPool {
    base: NonNull<u8>,
    len: usize,
    state: Mutex<Blocks>,
}

/// The pool's bookkeeping.
struct Blocks {
    /// Offsets of free blocks, by size class.
    free: [Vec<usize>; CLASSES],
    /// Where the never-used rest of the pool starts.
    next: usize,
    /// Bytes in blocks handed out.
    in_use: usize,
}

// SAFETY: the pool's memory is reached only through `PoolBuf`s, each of
// which owns a block no other one overlaps (the free lists and `next` hand
// out each block once, under the mutex), and through the kernel, which
// reads and writes a block only while a request owning its buffer is in
// flight.
unsafe impl Send for BufPool {}
// SAFETY: as above; `&BufPool` gives access to the bookkeeping (behind a
// mutex) and to the memory's address, not to the memory.
unsafe impl Sync for BufPool {}

impl fmt::Debug for BufPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufPool")
            .field("base", &self.base)
            .field("len", &self.len)
            .finish()
    }
}

impl BufPool {
    /// A pool of `bytes` (rounded up to a page, at most [`POOL_BYTES_MAX`]),
    /// its pages touched now so that no I/O waits for a page fault.
    pub(crate) fn new(bytes: usize) -> io::Result<Arc<BufPool>> {
        let len = bytes.min(POOL_BYTES_MAX).div_ceil(BLOCK_MIN) * BLOCK_MIN;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a buffer pool of 0 bytes",
            ));
        }
        // SAFETY: a fresh private anonymous mapping, at an address of the
        // kernel's choosing: no existing memory is affected.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::POPULATE,
            )
        }?;
        let base =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Arc::new(BufPool {
            base,
            len,
            state: Mutex::new(Blocks {
                free: std::array::from_fn(|_| Vec::new()),
                next: 0,
                in_use: 0,
            }),
        }))
    }

    /// The pool's memory, as io_uring registers it.
    pub(crate) fn iovec(&self) -> libc::iovec {
        libc::iovec {
            iov_base: self.base.as_ptr().cast(),
            iov_len: self.len,
        }
    }

    /// The pool's identity, as buffers carry it.
    pub(crate) fn key(&self) -> usize {
        self.base.as_ptr() as usize
    }

    /// Its size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes in buffers handed out now.
    pub(crate) fn in_use(&self) -> usize {
        self.lock().in_use
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Blocks> {
        // The bookkeeping is consistent between statements: a panic while
        // holding the lock cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A zeroed block of at least `len` bytes (not zero), or `None`.
    pub(crate) fn alloc(self: &Arc<BufPool>, len: usize) -> Option<PoolBuf> {
        let class = class_of(len)?;
        let size = BLOCK_MIN << class;
        let offset = {
            let mut blocks = self.lock();
            let offset = match blocks.free[class].pop() {
                Some(offset) => offset,
                None if blocks.next + size <= self.len => {
                    blocks.next += size;
                    blocks.next - size
                }
                None => return None,
            };
            blocks.in_use += size;
            offset
        };
        let buf = PoolBuf {
            pool: Arc::clone(self),
            offset,
            class: class as u8,
        };
        // SAFETY: the block is ours alone (handed out once, above) and lies
        // inside the mapping.
        unsafe { std::ptr::write_bytes(buf.as_ptr(), 0, len) };
        Some(buf)
    }

    fn free(&self, offset: usize, class: usize) {
        let mut blocks = self.lock();
        blocks.in_use -= BLOCK_MIN << class;
        blocks.free[class].push(offset);
    }
}

impl Drop for BufPool {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; no buffer of it is left (each
        // holds the pool) and no ring still has it registered (a ring holds
        // its engine, which holds the pool).
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// The size class of a block for `len` bytes, if the pool has one.
fn class_of(len: usize) -> Option<usize> {
    if len == 0 {
        return None;
    }
    let blocks = len.div_ceil(BLOCK_MIN).next_power_of_two();
    let class = blocks.trailing_zeros() as usize;
    (class < CLASSES).then_some(class)
}

/// One block of a pool, owned; given back when dropped.
pub(crate) struct PoolBuf {
    pool: Arc<BufPool>,
    offset: usize,
    class: u8,
}

impl PoolBuf {
    /// The block's start.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        // SAFETY: `offset` lies inside the mapping (`alloc`).
        unsafe { self.pool.base.as_ptr().add(self.offset) }
    }

    /// The block's size.
    pub(crate) fn capacity(&self) -> usize {
        BLOCK_MIN << self.class
    }

    /// The pool's identity.
    pub(crate) fn pool_key(&self) -> usize {
        self.pool.key()
    }

    /// Another block of the same pool, for at least `len` bytes.
    pub(crate) fn sibling(&self, len: usize) -> Option<PoolBuf> {
        self.pool.alloc(len)
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        self.pool.free(self.offset, usize::from(self.class));
    }
}

#[cfg(all(test, not(loom), not(shuttle)))]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_page_aligned_zeroed_reused_and_bounded() {
        let pool = BufPool::new(64 << 10).unwrap();
        assert_eq!(pool.len(), 64 << 10);
        let a = pool.alloc(100).unwrap();
        assert_eq!(a.capacity(), 4096);
        assert_eq!(a.as_ptr() as usize % 4096, 0);
        // SAFETY: the block is `a`'s, 4096 bytes.
        unsafe { std::ptr::write_bytes(a.as_ptr(), 7, 4096) };
        let addr = a.as_ptr();
        drop(a);
        let b = pool.alloc(4096).unwrap();
        assert_eq!(b.as_ptr(), addr, "a freed block is reused");
        // SAFETY: the block is `b`'s, 4096 bytes.
        let zeroed = unsafe { std::slice::from_raw_parts(b.as_ptr(), 4096) };
        assert!(zeroed.iter().all(|&x| x == 0), "handed out zeroed");
        let c = pool.alloc(5000).unwrap();
        assert_eq!(c.capacity(), 8192);
        assert_eq!(pool.in_use(), 4096 + 8192);
        assert!(pool.alloc(64 << 10).is_none(), "larger than what is left");
        assert!(pool.alloc(0).is_none());
        assert!(pool.alloc(16 << 20).is_none(), "larger than any class");
        drop((b, c));
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn size_classes() {
        assert_eq!(class_of(1), Some(0));
        assert_eq!(class_of(4096), Some(0));
        assert_eq!(class_of(4097), Some(1));
        assert_eq!(class_of(1 << 20), Some(8));
        assert_eq!(class_of(8 << 20), Some(11));
        assert_eq!(class_of((8 << 20) + 1), None);
    }
}
