//! The I/O request: [`Bio`], and what its handler receives: [`EndedBio`].
//!
//! A `Bio` always carries its end-io handler: the only constructors take one,
//! and the fields are private. When the handler runs it is moved out and the
//! request is handed to it as an [`EndedBio`], a type that has no handler and
//! cannot be completed or deferred again. So "a deferred bio without a
//! handler" (a `NULL` `bi_end_io`) cannot be
//! written down at all:
//!
//! ```compile_fail
//! // A bio cannot be made without a handler ...
//! let bio = endio::Bio::write(0, endio::Buf::from(vec![0u8; 512]));
//! ```
//!
//! ```compile_fail
//! // ... nor with an absent one ...
//! let bio = endio::Bio::write(0, endio::Buf::from(vec![0u8; 512]), None);
//! ```
//!
//! ```compile_fail
//! // ... nor by filling in the fields ...
//! let bio = endio::Bio { offset: 0 };
//! ```
//!
//! ```compile_fail
//! # fn f(completer: &endio::Completer) {
//! // ... and an ended bio (its handler already taken) cannot be completed again.
//! let c = completer.clone();
//! let bio = endio::Bio::nop(move |ended| {
//!     c.endio(ended);
//! });
//! # }
//! ```
//!
//! while the same with a handler compiles:
//!
//! ```
//! let bio = endio::Bio::write(0, endio::Buf::from(vec![0u8; 512]), |ended| {
//!     assert_eq!(ended.len(), 512);
//! });
//! ```

use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};

use crate::pool::PoolBuf;
use crate::sync::AtomicPtr;
use crate::sys::inline_fn::InlineFnOnce;

bitflags::bitflags! {
    /// Flags of a [`Bio`], as the kernel's `bi_flags`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct BioFlags: u32 {
        /// Run the handler in task context: when the bio is completed in
        /// atomic context, defer it to the current CPU's worker
        /// (`BIO_COMPLETE_IN_TASK`).
        const COMPLETE_IN_TASK = 1 << 0;
        /// Uncached buffered I/O: drop the pages this I/O brought into the page
        /// cache once it is done (`RWF_DONTCACHE`).
        const DONTCACHE = 1 << 1;
        /// A buffered write (plain or dontcache) whose handler runs only
        /// after its own data has been written back to the device, with the
        /// write-back's result: `Err` if the write-back failed (the kernel
        /// reports write-back errors per file, not per range, so a failure
        /// elsewhere in the file while this write's write-back ran fails it
        /// too: never a false success). On an `O_DIRECT` device a write's
        /// completion already means that, and the flag changes nothing.
        /// Written back is not durable: the device's volatile cache needs a
        /// [`Bio::flush`].
        const WAIT_WRITEBACK = 1 << 2;
        /// Measure how many of a buffered read's bytes were already in the
        /// page cache when it was submitted, for
        /// [`EndedBio::cached_bytes`]: one `cachestat(2)` on the range at
        /// submit. Emulated dontcache reads are measured without it (their
        /// look-up is made anyway) and `O_DIRECT` reads need no measuring
        /// (none of their bytes come from the cache); the flag changes
        /// nothing else, and nothing on writes.
        const CACHE_HITS = 1 << 3;
    }
}

/// What a [`Bio`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read `len` bytes at `offset` into the buffer.
    Read,
    /// Write the buffer at `offset`.
    Write,
    /// Make written data durable (`fdatasync`).
    Flush,
    /// Transfer nothing; used to exercise and measure the completion path.
    Nop,
}

/// [`Node::cached`] when nothing was measured.
const NOT_MEASURED: u64 = u64::MAX;

/// A handler: runs once, with the ended bio. Kept inside the node: a
/// closure of up to six words is stored without an allocation of its own.
pub(crate) type Handler = InlineFnOnce<EndedBio>;

/// The heap node behind [`Bio`] and [`EndedBio`]. `next` links it into a
/// per-CPU batch without any allocation beyond the bio itself, and the
/// allocation itself is recycled through the thread's node cache.
pub(crate) struct Node {
    /// Intrusive link, owned by whichever batch list holds the node.
    pub(crate) next: AtomicPtr<Node>,
    op: Op,
    offset: u64,
    len: u64,
    buf: Buf,
    flags: BioFlags,
    /// `>= 0`: bytes transferred; `< 0`: a negated errno.
    res: i64,
    /// Bytes of a read found in the page cache at submit; `u64::MAX`: not
    /// measured.
    cached: u64,
    /// The bio went through a per-CPU batch (the re-entry guard that bounds re-deferral).
    deferred: bool,
    handler: Option<Handler>,
}

impl Node {
    fn len(&self) -> u64 {
        match self.op {
            Op::Read | Op::Write => self.buf.len() as u64,
            Op::Flush | Op::Nop => self.len,
        }
    }
}

/// An owned I/O request with a mandatory end-io handler (`struct bio` with its
/// `bi_end_io`).
///
/// Made by [`Bio::read`], [`Bio::write`], [`Bio::flush`], [`Bio::nop`] or
/// [`Bio::new`]; completed by [`Completer::endio`](crate::Completer::endio),
/// which runs the handler inline or defers it to task context.
pub struct Bio {
    pub(crate) node: NodeBox,
}

/// A bio whose handler is running: what the handler receives.
///
/// It has no handler and cannot be completed again. To reuse its buffer for
/// another request, turn it into a new [`Bio`] with [`EndedBio::into_bio`]; to
/// move the rest of the completion work to task context, pass it to
/// [`Completer::complete_in_task`](crate::Completer::complete_in_task).
pub struct EndedBio {
    node: NodeBox,
}

impl Bio {
    /// A request for `op` at `offset` with `buf`; `handler` runs exactly once
    /// when it completes.
    pub fn new<F>(op: Op, offset: u64, buf: Buf, handler: F) -> Bio
    where
        F: FnOnce(EndedBio) + Send + 'static,
    {
        let len = buf.len() as u64;
        Bio {
            node: NodeBox::new(Node {
                next: AtomicPtr::new(std::ptr::null_mut()),
                op,
                offset,
                len,
                buf,
                flags: BioFlags::empty(),
                res: 0,
                cached: NOT_MEASURED,
                deferred: false,
                handler: Some(InlineFnOnce::new(handler)),
            }),
        }
    }

    /// Reads `buf.len()` bytes at `offset` into `buf`.
    pub fn read<F>(offset: u64, buf: Buf, handler: F) -> Bio
    where
        F: FnOnce(EndedBio) + Send + 'static,
    {
        Bio::new(Op::Read, offset, buf, handler)
    }

    /// Writes `buf` at `offset`.
    pub fn write<F>(offset: u64, buf: Buf, handler: F) -> Bio
    where
        F: FnOnce(EndedBio) + Send + 'static,
    {
        Bio::new(Op::Write, offset, buf, handler)
    }

    /// Makes the data written so far durable.
    pub fn flush<F>(handler: F) -> Bio
    where
        F: FnOnce(EndedBio) + Send + 'static,
    {
        Bio::new(Op::Flush, 0, Buf::empty(), handler)
    }

    /// Transfers nothing: a request that only exercises completion.
    pub fn nop<F>(handler: F) -> Bio
    where
        F: FnOnce(EndedBio) + Send + 'static,
    {
        Bio::new(Op::Nop, 0, Buf::empty(), handler)
    }

    /// Adds `flags` (builder style).
    #[must_use]
    pub fn with_flags(mut self, flags: BioFlags) -> Bio {
        self.node.flags |= flags;
        self
    }

    /// Sets or clears `flags`.
    pub fn set_flags(&mut self, flags: BioFlags, on: bool) {
        self.node.flags.set(flags, on);
    }

    /// The request's flags.
    pub fn flags(&self) -> BioFlags {
        self.node.flags
    }

    /// The operation.
    pub fn op(&self) -> Op {
        self.node.op
    }

    /// The byte offset.
    pub fn offset(&self) -> u64 {
        self.node.offset
    }

    /// The length in bytes: the buffer's length for reads and writes (also
    /// after the buffer was truncated), the range for a flush.
    pub fn len(&self) -> u64 {
        self.node.len()
    }

    /// Whether the request transfers no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets a new operation and offset (to retry a refused bio elsewhere,
    /// or reuse it).
    pub fn retarget(&mut self, op: Op, offset: u64) {
        self.node.op = op;
        self.node.offset = offset;
        self.node.len = self.node.buf.len() as u64;
    }

    /// The data buffer.
    pub fn buf(&self) -> &Buf {
        &self.node.buf
    }

    /// The data buffer, writable (to fill a write, or for a driver to fill a
    /// read).
    pub fn buf_mut(&mut self) -> &mut Buf {
        &mut self.node.buf
    }

    /// Records the outcome: bytes transferred, or the error
    /// (`bi_status`). Set by whoever performs the I/O, before completion.
    pub fn set_result(&mut self, result: io::Result<usize>) {
        self.node.res = match result {
            Ok(n) => i64::try_from(n).unwrap_or(i64::MAX),
            Err(e) => -i64::from(e.raw_os_error().unwrap_or(libc::EIO)),
        };
    }

    /// Records a raw io_uring-style result: `>= 0` bytes, `< 0` a negated
    /// errno.
    pub fn set_raw_result(&mut self, res: i64) {
        self.node.res = res;
    }

    /// Whether this bio has already been through a per-CPU batch.
    pub fn was_deferred(&self) -> bool {
        self.node.deferred
    }

    pub(crate) fn mark_deferred(&mut self) {
        self.node.deferred = true;
    }

    /// Records how many of a read's bytes were in the page cache at submit
    /// (at most its length).
    pub(crate) fn set_cached_bytes(&mut self, bytes: u64) {
        self.node.cached = bytes.min(self.node.len());
    }

    /// Runs the handler (in the calling thread). Consumes the bio, so the
    /// handler runs at most once.
    pub(crate) fn run_handler(mut self) {
        let handler = self
            .node
            .handler
            .take()
            .expect("every Bio carries its handler; only EndedBio has none");
        handler.call(EndedBio { node: self.node });
    }

    /// The same bio with its handler replaced by `wrap(handler)`: what a
    /// [`Group`](crate::Group) uses to run code after the handler returns.
    pub(crate) fn wrap_handler<W>(mut self, wrap: impl FnOnce(Handler) -> W) -> Bio
    where
        W: FnOnce(EndedBio) + Send + 'static,
    {
        let handler = self
            .node
            .handler
            .take()
            .expect("every Bio carries its handler; only EndedBio has none");
        self.node.handler = Some(InlineFnOnce::new(wrap(handler)));
        self
    }

    pub(crate) fn into_raw(self) -> *mut Node {
        self.node.into_raw()
    }

    /// Rebuilds a bio from [`Bio::into_raw`].
    ///
    /// # Safety
    ///
    /// `node` must come from `Bio::into_raw` and must not be used again.
    pub(crate) unsafe fn from_raw(node: *mut Node) -> Bio {
        // SAFETY: by the contract, `node` is a leaked `Box<Node>` with a
        // handler that nobody else owns.
        let node = unsafe { NodeBox::from_raw(node) };
        Bio { node }
    }
}

impl EndedBio {
    /// The operation.
    pub fn op(&self) -> Op {
        self.node.op
    }

    /// The byte offset.
    pub fn offset(&self) -> u64 {
        self.node.offset
    }

    /// The length in bytes (as [`Bio::len`]).
    pub fn len(&self) -> u64 {
        self.node.len()
    }

    /// Whether the request transferred no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The request's flags.
    pub fn flags(&self) -> BioFlags {
        self.node.flags
    }

    /// The outcome: bytes transferred, or the error.
    pub fn result(&self) -> io::Result<usize> {
        let res = self.node.res;
        if res < 0 {
            let errno = i32::try_from(-res).unwrap_or(libc::EIO);
            Err(io::Error::from_raw_os_error(errno))
        } else {
            Ok(usize::try_from(res).unwrap_or(usize::MAX))
        }
    }

    /// The raw result: `>= 0` bytes, `< 0` a negated errno.
    pub fn raw_result(&self) -> i64 {
        self.node.res
    }

    /// How many of a read's bytes were already in the page cache when it
    /// was submitted, at page granularity (a cached page counts with the
    /// part of it the read covers): those the device did not have to
    /// read. `Some(0)` for every `O_DIRECT` read; measured for emulated
    /// dontcache reads and for buffered reads flagged
    /// [`BioFlags::CACHE_HITS`]; `None` when not measured (writes, flushes,
    /// other reads, memory devices, or a look-up the kernel refused).
    ///
    /// The look-up precedes the read: a page evicted or brought in by
    /// someone else in between is counted as it was then.
    pub fn cached_bytes(&self) -> Option<u64> {
        (self.node.cached != NOT_MEASURED).then_some(self.node.cached)
    }

    /// Whether the handler runs after a trip through a per-CPU batch (in a
    /// worker, or a drain in task context).
    pub fn was_deferred(&self) -> bool {
        self.node.deferred
    }

    /// The data buffer.
    pub fn buf(&self) -> &Buf {
        &self.node.buf
    }

    /// The data buffer, writable.
    pub fn buf_mut(&mut self) -> &mut Buf {
        &mut self.node.buf
    }

    /// Takes the data buffer, ending the bio.
    pub fn into_buf(mut self) -> Buf {
        // The node goes back to the cache; the buffer is the caller's.
        std::mem::take(&mut self.node.buf)
    }

    /// Reuses this bio (its allocation and buffer) as a new request with a new
    /// handler: the result is cleared, and so is the deferral mark, since it is
    /// a new I/O. Flags, operation and offset are kept; change them on the
    /// returned `Bio`.
    pub fn into_bio<F>(self, handler: F) -> Bio
    where
        F: FnOnce(EndedBio) + Send + 'static,
    {
        let mut bio = self.continue_with(handler);
        bio.node.res = 0;
        bio.node.cached = NOT_MEASURED;
        bio.node.deferred = false;
        bio
    }

    /// Sets a new operation and offset (with [`EndedBio::into_bio`], to reuse
    /// a request at another place).
    pub fn retarget(&mut self, op: Op, offset: u64) {
        self.node.op = op;
        self.node.offset = offset;
        self.node.len = self.node.buf.len() as u64;
    }

    /// The same bio (result and deferral mark kept) with `handler` as the
    /// rest of its completion: what `complete_in_task` defers.
    pub(crate) fn continue_with<F>(mut self, handler: F) -> Bio
    where
        F: FnOnce(EndedBio) + Send + 'static,
    {
        self.node.handler = Some(InlineFnOnce::new(handler));
        self.node.next = AtomicPtr::new(std::ptr::null_mut());
        Bio { node: self.node }
    }
}

impl fmt::Debug for Bio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_node(f, "Bio", &self.node)
    }
}

impl fmt::Debug for EndedBio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_node(f, "EndedBio", &self.node)
    }
}

fn debug_node(f: &mut fmt::Formatter<'_>, name: &str, node: &Node) -> fmt::Result {
    f.debug_struct(name)
        .field("op", &node.op)
        .field("offset", &node.offset)
        .field("len", &node.len)
        .field("flags", &node.flags)
        .field("res", &node.res)
        .field(
            "cached",
            &(node.cached != NOT_MEASURED).then_some(node.cached),
        )
        .field("deferred", &node.deferred)
        .finish_non_exhaustive()
}

/// The owned node of a [`Bio`] or an [`EndedBio`]: a `Box<Node>` whose
/// allocation goes back to the dropping thread's node cache (the
/// `bio_alloc_cache` of the kernel) rather than to the allocator. The node's
/// contents (handler, buffer) are dropped as usual; only the allocation is
/// reused, by the next [`Bio::new`] on that thread.
pub(crate) struct NodeBox {
    node: ManuallyDrop<Box<Node>>,
}

impl NodeBox {
    fn new(node: Node) -> NodeBox {
        NodeBox {
            node: ManuallyDrop::new(node_cache::alloc(node)),
        }
    }

    fn into_raw(self) -> *mut Node {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped nor used again, so the box is
        // taken out exactly once.
        let node = unsafe { ManuallyDrop::take(&mut this.node) };
        Box::into_raw(node)
    }

    /// # Safety
    ///
    /// `node` comes from [`NodeBox::into_raw`] and is not used again.
    unsafe fn from_raw(node: *mut Node) -> NodeBox {
        NodeBox {
            // SAFETY: by the contract `node` is a leaked `Box<Node>`, owned
            // by nobody else.
            node: ManuallyDrop::new(unsafe { Box::from_raw(node) }),
        }
    }
}

impl Deref for NodeBox {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

impl DerefMut for NodeBox {
    fn deref_mut(&mut self) -> &mut Node {
        &mut self.node
    }
}

impl Drop for NodeBox {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and `self.node` is not used after it.
        let node = unsafe { ManuallyDrop::take(&mut self.node) };
        node_cache::free(node);
    }
}

/// Node allocations kept for reuse: two magazines per thread, and behind
/// them a bounded depot of magazines per CPU (Bonwick's magazine layer, or
/// the kernel's per-CPU `bio_alloc_cache` with a depot behind it).
///
/// A magazine is a vector of up to [`node_cache::MAGAZINE`] free node
/// allocations. A closed loop of I/O (a handler that makes its next bio, on
/// the thread it runs on) frees and allocates on the same thread, and its
/// two magazines serve it without the allocator or any shared state. When
/// one thread makes bios and another ends them (a submitter and the worker
/// of its CPU), the ender fills magazines and the maker empties them: the
/// ender hands each full magazine to the depot of the CPU it runs on and
/// takes an empty one back, and the maker, on that CPU too, trades its empty
/// magazine for a full one. So the shared depot is touched once per
/// magazine, not once per node, and no vector is allocated once the
/// magazines exist. Two magazines per thread rather than one, so that a
/// thread that frees and allocates around a boundary swaps its own two
/// instead of going to the depot each time.
///
/// Bounded: a thread keeps at most two magazines, a depot at most
/// [`node_cache::DEPOT_MAGAZINES`] full ones; a magazine that finds the
/// depot full is freed, nodes and all. A node freed during the thread's
/// exit (its magazines gone or going) is freed normally: the thread-local
/// is reached with `try_with` and `try_borrow_mut`, which never panic.
///
/// The depot's queues are lock-free (no lock is taken in atomic context,
/// where bios are dropped too).
#[cfg(not(any(loom, shuttle)))]
mod node_cache {
    use std::cell::RefCell;
    use std::mem::{self, MaybeUninit};
    use std::ptr;
    use std::sync::OnceLock;

    use crossbeam_queue::ArrayQueue;

    use super::Node;

    /// Node allocations per magazine.
    pub(super) const MAGAZINE: usize = 64;
    /// Full magazines a CPU's depot keeps: 8192 nodes, about 1.3 MiB. This
    /// covers a maker that keeps 4096 bios in flight against an ender that
    /// frees them in batches of that size; more in flight between them than
    /// the depot holds come from the allocator.
    pub(super) const DEPOT_MAGAZINES: usize = 128;

    /// A free node allocation.
    type Slot = Box<MaybeUninit<Node>>;
    /// Up to [`MAGAZINE`] of them (the boxes are the point: each is a node
    /// allocation kept for reuse).
    #[allow(clippy::vec_box)]
    type Magazine = Vec<Slot>;

    /// The magazines of one CPU.
    struct Depot {
        full: ArrayQueue<Magazine>,
        /// Empty magazines (their vectors' allocations), handed back by
        /// makers and taken by enders.
        empty: ArrayQueue<Magazine>,
    }

    /// The depot of the CPU the caller runs on; the depots are made on
    /// first use.
    fn depot() -> &'static Depot {
        static DEPOTS: OnceLock<Box<[Depot]>> = OnceLock::new();
        // One per CPU this process may run on; a higher CPU number folds in.
        let depots = DEPOTS.get_or_init(|| {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            (0..n)
                .map(|_| Depot {
                    full: ArrayQueue::new(DEPOT_MAGAZINES),
                    empty: ArrayQueue::new(DEPOT_MAGAZINES),
                })
                .collect()
        });
        &depots[crate::sys::current_cpu() % depots.len()]
    }

    /// A thread's two magazines. `previous` is always empty or full.
    struct Cache {
        loaded: Magazine,
        previous: Magazine,
    }

    impl Cache {
        fn take(&mut self) -> Option<Slot> {
            if let Some(slot) = self.loaded.pop() {
                return Some(slot);
            }
            if self.previous.len() == MAGAZINE {
                mem::swap(&mut self.loaded, &mut self.previous);
                return self.loaded.pop();
            }
            // Both empty: trade one for a full magazine of the depot.
            let depot = depot();
            let full = depot.full.pop()?;
            let empty = mem::replace(&mut self.loaded, full);
            if empty.capacity() != 0 {
                // The depot has as many places for empty magazines as for
                // full ones; should it be full, the vector is freed.
                let _ = depot.empty.push(empty);
            }
            self.loaded.pop()
        }

        fn put(&mut self, slot: Slot) {
            if self.loaded.len() == MAGAZINE {
                if self.previous.is_empty() {
                    mem::swap(&mut self.loaded, &mut self.previous);
                } else {
                    // Both full: the previous one goes to the depot (or,
                    // when the depot is full, back to the allocator), and
                    // an empty one is loaded.
                    let depot = depot();
                    let empty = depot.empty.pop().unwrap_or_default();
                    let full =
                        mem::replace(&mut self.previous, mem::replace(&mut self.loaded, empty));
                    let _ = depot.full.push(full);
                }
            }
            if self.loaded.capacity() == 0 {
                self.loaded.reserve_exact(MAGAZINE);
            }
            self.loaded.push(slot);
        }

        #[cfg(test)]
        fn len(&self) -> usize {
            self.loaded.len() + self.previous.len()
        }
    }

    std::thread_local! {
        static CACHE: RefCell<Cache> = const {
            RefCell::new(Cache { loaded: Vec::new(), previous: Vec::new() })
        };
    }

    /// `node`, moved into a cached allocation when there is one.
    pub(super) fn alloc(node: Node) -> Box<Node> {
        // A handler or drop running while the cache is borrowed cannot
        // happen (the borrows below call no foreign code), but a failed
        // borrow or a thread-local being torn down just means no reuse.
        let slot = CACHE
            .try_with(|cache| cache.try_borrow_mut().ok().and_then(|mut c| c.take()))
            .ok()
            .flatten();
        match slot {
            Some(slot) => Box::write(slot, node),
            None => Box::new(node),
        }
    }

    /// Drops `node`'s contents and keeps its allocation.
    pub(super) fn free(node: Box<Node>) {
        let raw = Box::into_raw(node);
        // SAFETY: `raw` is the live node of a box we own; its contents are
        // dropped here once (a handler never run, the buffer) and the
        // allocation is only reused as uninitialized memory below. Should a
        // drop panic, the allocation leaks and nothing is dropped twice.
        unsafe { ptr::drop_in_place(raw) };
        // SAFETY: `raw` was allocated as a `Box<Node>`, and `MaybeUninit<Node>`
        // has the same layout; its contents were dropped just above, so the
        // box holds nothing that needs dropping.
        let slot = unsafe { Box::from_raw(raw.cast::<MaybeUninit<Node>>()) };
        // With the cache borrowed or destroyed (thread exit), the slot is
        // freed with the closure or here.
        let _ = CACHE.try_with(move |cache| {
            if let Ok(mut cache) = cache.try_borrow_mut() {
                cache.put(slot);
            }
        });
    }

    /// Cached allocations of the calling thread.
    #[cfg(test)]
    pub(super) fn cached() -> usize {
        CACHE.try_with(|cache| cache.borrow().len()).unwrap_or(0)
    }
}

/// Under the model checkers a node is a plain box: their threads and
/// thread-locals are simulated, and reuse is not what they check.
#[cfg(any(loom, shuttle))]
mod node_cache {
    use super::Node;

    pub(super) fn alloc(node: Node) -> Box<Node> {
        Box::new(node)
    }

    pub(super) fn free(node: Box<Node>) {
        drop(node);
    }
}

/// A data buffer whose start is aligned, as `O_DIRECT` needs.
///
/// Either a `Vec<u8>`, over-allocated by `align - 1` bytes so that the
/// buffer starts at the first aligned byte, or a block of an engine's
/// registered buffer pool ([`EngineBuilder::registered_buffers`]), which
/// its rings read and write without pinning its pages per I/O; it goes
/// back to the pool when dropped.
///
/// [`EngineBuilder::registered_buffers`]: crate::EngineBuilder::registered_buffers
#[derive(Default)]
pub struct Buf {
    store: Store,
    start: usize,
    len: usize,
}

/// Where a buffer's bytes are.
enum Store {
    Heap(Vec<u8>),
    Pool(PoolBuf),
}

impl Default for Store {
    fn default() -> Store {
        Store::Heap(Vec::new())
    }
}

impl Buf {
    /// An empty buffer (no allocation).
    pub const fn empty() -> Buf {
        Buf {
            store: Store::Heap(Vec::new()),
            start: 0,
            len: 0,
        }
    }

    /// `len` zero bytes starting at an address that is a multiple of `align`
    /// (a power of two, e.g. the device's logical block size or 4096).
    ///
    /// # Panics
    ///
    /// If `align` is not a power of two.
    pub fn zeroed(len: usize, align: usize) -> Buf {
        assert!(
            align.is_power_of_two(),
            "buffer alignment {align} is not a power of two; use the device's logical block size"
        );
        let vec = vec![0u8; len + align - 1];
        let start = vec.as_ptr().align_offset(align);
        Buf {
            store: Store::Heap(vec),
            start,
            len,
        }
    }

    /// `len` zero bytes of a pool block (at least `len` long).
    pub(crate) fn from_pool(block: PoolBuf, len: usize) -> Buf {
        debug_assert!(len <= block.capacity());
        Buf {
            store: Store::Pool(block),
            start: 0,
            len,
        }
    }

    /// The identity of the registered pool this buffer is a block of.
    pub(crate) fn pool_key(&self) -> Option<usize> {
        match &self.store {
            Store::Pool(block) => Some(block.pool_key()),
            Store::Heap(_) => None,
        }
    }

    /// The buffer's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the buffer's start is a multiple of `align`.
    pub fn is_aligned_to(&self, align: usize) -> bool {
        align.is_power_of_two() && (self.as_ptr() as usize).is_multiple_of(align)
    }

    /// Whether the buffer is a block of an engine's registered buffer pool
    /// (see [`EngineBuilder::registered_buffers`]).
    ///
    /// [`EngineBuilder::registered_buffers`]: crate::EngineBuilder::registered_buffers
    pub fn is_registered(&self) -> bool {
        matches!(self.store, Store::Pool(_))
    }

    /// Shortens the buffer to `len` bytes (no effect if it is shorter).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl Clone for Buf {
    /// A copy with the same length, alignment and kind: a block of the
    /// same pool if the pool has one free, else a heap buffer aligned to
    /// 4096.
    fn clone(&self) -> Buf {
        let mut copy = match &self.store {
            // As aligned as the original (up to a page): a cloned vector's
            // start has no alignment of its own.
            Store::Heap(_) => {
                let align = 1usize << (self.as_ptr() as usize).trailing_zeros().min(12);
                Buf::zeroed(self.len, align)
            }
            Store::Pool(block) => match block.sibling(self.len.max(1)) {
                Some(other) => Buf::from_pool(other, self.len),
                None => Buf::zeroed(self.len, 4096),
            },
        };
        copy.copy_from_slice(self);
        copy
    }
}

impl From<Vec<u8>> for Buf {
    fn from(vec: Vec<u8>) -> Buf {
        let len = vec.len();
        Buf {
            store: Store::Heap(vec),
            start: 0,
            len,
        }
    }
}

impl std::ops::Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.store {
            Store::Heap(vec) => &vec[self.start..self.start + self.len],
            // SAFETY: the block is this buffer's alone and at least
            // `start + len` bytes long (`from_pool`, `truncate` only
            // shortens); it lives as long as `block`.
            Store::Pool(block) => unsafe {
                std::slice::from_raw_parts(block.as_ptr().add(self.start), self.len)
            },
        }
    }
}

impl std::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.store {
            Store::Heap(vec) => &mut vec[self.start..self.start + self.len],
            // SAFETY: as in `deref`, and `&mut self` makes this the only
            // reference to the block's bytes.
            Store::Pool(block) => unsafe {
                std::slice::from_raw_parts_mut(block.as_ptr().add(self.start), self.len)
            },
        }
    }
}

impl fmt::Debug for Buf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buf")
            .field("len", &self.len)
            .field("addr", &self.as_ptr())
            .field("registered", &self.is_registered())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers_are_aligned() {
        for align in [1, 512, 4096] {
            for len in [0, 1, 511, 4096, 65536] {
                let b = Buf::zeroed(len, align);
                assert_eq!(b.len(), len);
                assert!(b.is_aligned_to(align));
                assert!(b.iter().all(|&x| x == 0));
            }
        }
    }

    #[test]
    fn results_round_trip() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut bio = Bio::nop(move |e| tx.send(e.result().map_err(|e| e.raw_os_error())).unwrap());
        bio.set_result(Ok(4096));
        bio.set_result(Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP)));
        bio.run_handler();
        assert_eq!(rx.recv().unwrap(), Err(Some(libc::EOPNOTSUPP)));
    }

    #[test]
    fn len_follows_a_truncated_buffer() {
        let mut bio = Bio::read(0, Buf::zeroed(8192, 512), |_| {});
        bio.buf_mut().truncate(4096);
        assert_eq!(bio.len(), 4096);
        bio.retarget(Op::Write, 4096);
        assert_eq!((bio.op(), bio.offset(), bio.len()), (Op::Write, 4096, 4096));
        assert_eq!(Bio::flush(|_| {}).len(), 0);
    }

    #[test]
    #[cfg(not(shuttle))]
    fn a_dropped_bio_drops_its_handler_once_and_its_node_is_reused() {
        std::thread::spawn(|| {
            let captured = std::sync::Arc::new(());
            let c = std::sync::Arc::clone(&captured);
            let mut buf = Buf::zeroed(64, 8);
            buf.fill(3);
            let bio = Bio::write(0, buf, move |_| drop(c));
            let addr = std::ptr::from_ref::<Node>(&bio.node).addr();
            drop(bio);
            assert_eq!(
                std::sync::Arc::strong_count(&captured),
                1,
                "handler dropped"
            );
            assert_eq!(node_cache::cached(), 1);
            let again = Bio::nop(|_| {});
            assert_eq!(std::ptr::from_ref::<Node>(&again.node).addr(), addr);
            assert_eq!(node_cache::cached(), 0);
            assert!(
                again
                    .node
                    .next
                    .load(crate::sync::Ordering::Relaxed)
                    .is_null()
            );
            assert!(again.node.handler.is_some() && !again.was_deferred());
            // An ended bio's node is cached too, its buffer handed out.
            let (tx, rx) = std::sync::mpsc::channel();
            Bio::read(0, Buf::from(vec![1u8; 8]), move |e| tx.send(e).unwrap()).run_handler();
            let buf = rx.recv().unwrap().into_buf();
            assert_eq!(&buf[..], &[1u8; 8]);
            assert_eq!(node_cache::cached(), 1);
            // A thread keeps two magazines; the rest goes to the depot.
            let many: Vec<Bio> = (0..200).map(|_| Bio::nop(|_| {})).collect();
            drop(many);
            let kept = node_cache::cached();
            assert!(
                (200 - 2 * node_cache::MAGAZINE..=2 * node_cache::MAGAZINE).contains(&kept),
                "{kept} kept"
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn into_bio_clears_result_and_deferral_but_keeps_the_buffer() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut bio = Bio::write(8, Buf::from(vec![7u8; 16]), move |e| tx.send(e).unwrap());
        bio.set_result(Ok(16));
        bio.set_cached_bytes(4096);
        assert_eq!(bio.node.cached, 16, "clipped to the length");
        bio.mark_deferred();
        bio.run_handler();
        let ended = rx.recv().unwrap();
        assert!(ended.was_deferred());
        let again = ended.into_bio(|_| {});
        assert!(!again.was_deferred());
        assert_eq!(again.node.res, 0);
        assert_eq!(again.node.cached, NOT_MEASURED);
        assert_eq!(&again.buf()[..], &[7u8; 16]);
        assert_eq!(again.offset(), 8);
    }
}
