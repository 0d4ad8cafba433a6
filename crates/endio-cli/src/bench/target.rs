//! What a benchmark runs on: the user's file or block device, a temporary
//! file (the embedded default), or a loop device over one (`--bdev`); how
//! it is laid out, and how its page cache is invalidated before each job
//! (fio's `invalidate=1`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use endio::Residency;
use endio::{Backend, Bio, Completer, Engine, OpenError, OpenOptions, Verifier};
use serde::Serialize;

use super::cli_terms::describe_os_error;
use super::interrupt::{self, Registration, Undo};
use super::loopdev::LoopDev;
use super::units::fmt_bytes;

/// Default size of a temporary target.
pub(crate) const DEFAULT_SIZE: u64 = 1 << 30;

/// `statfs` magic numbers of the filesystems worth naming.
const FS_NAMES: [(i64, &str); 7] = [
    (0x0102_1994, "tmpfs"),
    (0xEF53, "ext4"),
    (0x5846_5342, "xfs"),
    (0x9123_683E, "btrfs"),
    (0xF2F5_2010, "f2fs"),
    (0x6969, "nfs"),
    (0x794C_7630, "overlayfs"),
];

/// The filesystem type of `dir`, named if known.
pub(crate) fn fs_name(dir: &Path) -> Option<String> {
    let s = rustix::fs::statfs(dir).ok()?;
    // `f_type` is an `i64` on x86_64 and narrower on some targets.
    #[allow(clippy::unnecessary_cast)]
    let magic = s.f_type as i64;
    Some(
        FS_NAMES
            .iter()
            .find(|(m, _)| *m == magic)
            .map_or_else(|| format!("fs {magic:#x}"), |(_, n)| (*n).to_owned()),
    )
}

/// What kind of target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// A regular file.
    File,
    /// A block device.
    BlockDevice,
}

/// The target of a run. Fields drop in order: the loop device is detached
/// before the temporary directory with its backing file is removed.
#[derive(Debug)]
pub(crate) struct Target {
    /// The path jobs open.
    pub(crate) path: PathBuf,
    /// File or block device.
    pub(crate) kind: Kind,
    /// The bytes the jobs use, from offset 0.
    pub(crate) size: u64,
    /// What the target is, for the report (`temporary file on ext4 in
    /// /var/tmp`).
    pub(crate) description: String,
    /// Whether endio made it (and removes it).
    pub(crate) temporary: bool,
    /// Whether it must be written before it is read (a new or short file,
    /// a fresh loop device).
    pub(crate) needs_layout: bool,
    /// A file whose cache must be invalidated along with the target (the
    /// backing file of a loop device without direct I/O).
    also_invalidate: Option<PathBuf>,
    /// A `--target` file that endio created: removed on drop unless
    /// [`keep`](Target::keep) was called (a failed or interrupted run
    /// leaves no half-written file behind).
    created: Option<PathBuf>,
    _loop: Option<LoopDev>,
    _dir: Option<(tempfile::TempDir, Registration)>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(path) = self.created.take()
            && let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!(
                "warning: cannot remove {}, which this run created: {e}; remove it by hand",
                path.display()
            );
        }
    }
}

/// A temporary directory on a filesystem with a page cache of its own:
/// `$TMPDIR` (or `/tmp`), else `/var/tmp` if that is tmpfs; and a note if
/// the choice was not the first.
fn disk_temp_dir() -> anyhow::Result<(tempfile::TempDir, Option<String>)> {
    let base = std::env::temp_dir();
    let mut note = None;
    let dir = if fs_name(&base).as_deref() == Some("tmpfs") {
        let alt = PathBuf::from("/var/tmp");
        if !alt.is_dir() || fs_name(&alt).as_deref() == Some("tmpfs") {
            bail!(
                "{} and /var/tmp are tmpfs, whose files live in the page cache (no O_DIRECT, nothing for dontcache to drop); set TMPDIR to a directory on a disk filesystem or use --target",
                base.display()
            );
        }
        note = Some(format!(
            "note: {} is tmpfs (its files are page cache: nothing to compare); using /var/tmp",
            base.display()
        ));
        alt
    } else {
        base
    };
    let t = tempfile::Builder::new()
        .prefix(&super::leftovers::temp_prefix())
        .tempdir_in(&dir)
        .with_context(|| {
            format!(
                "cannot create a temporary directory in {}; set TMPDIR to a writable directory on a disk filesystem",
                dir.display()
            )
        })?;
    Ok((t, note))
}

impl Target {
    /// A temporary file of `size` bytes (the embedded default).
    pub(crate) fn temp_file(size: u64) -> anyhow::Result<Target> {
        let (dir, note) = disk_temp_dir()?;
        if let Some(note) = note {
            eprintln!("{note}");
        }
        check_free_space(dir.path(), size, "--size")?;
        let registration = interrupt::register(Undo::RemoveDir(dir.path().to_owned()));
        let path = dir.path().join("data");
        File::create(&path)
            .with_context(|| format!("cannot create the temporary file {}", path.display()))?;
        let fs = fs_name(dir.path()).unwrap_or_else(|| "an unknown filesystem".into());
        Ok(Target {
            description: format!("temporary file on {fs}"),
            path,
            kind: Kind::File,
            size,
            temporary: true,
            needs_layout: true,
            also_invalidate: None,
            created: None,
            _loop: None,
            _dir: Some((dir, registration)),
        })
    }

    /// A loop device over a temporary file of `size` bytes (`--bdev`).
    pub(crate) fn temp_loop_device(size: u64) -> anyhow::Result<Target> {
        let (dir, note) = disk_temp_dir()?;
        if let Some(note) = note {
            eprintln!("{note}");
        }
        check_free_space(dir.path(), size, "--size")?;
        let registration = interrupt::register(Undo::RemoveDir(dir.path().to_owned()));
        let backing = dir.path().join("backing.img");
        let f = File::create(&backing)
            .with_context(|| format!("cannot create {}", backing.display()))?;
        f.set_len(size)
            .with_context(|| format!("cannot size {} to {size} bytes", backing.display()))?;
        drop(f);
        let dev = LoopDev::attach(&backing)?;
        let fs = fs_name(dir.path()).unwrap_or_else(|| "an unknown filesystem".into());
        let description = format!(
            "loop device over a temporary file on {fs}, {}",
            if dev.direct_io() {
                "with direct I/O to the backing file"
            } else {
                "whose backing file is cached too (the kernel refused --direct-io)"
            }
        );
        Ok(Target {
            path: dev.path().to_owned(),
            kind: Kind::BlockDevice,
            size,
            description,
            temporary: true,
            needs_layout: true,
            also_invalidate: (!dev.direct_io()).then_some(backing),
            created: None,
            _loop: Some(dev),
            _dir: Some((dir, registration)),
        })
    }

    /// The user's `--target`; `size` from `--size`.
    pub(crate) fn user(path: &Path, size: Option<u64>) -> anyhow::Result<Target> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.file_type().is_dir() => bail!(
                "--target {} is a directory; give a file (it is created if missing) or a block device",
                path.display()
            ),
            Ok(meta) if std::os::unix::fs::FileTypeExt::is_block_device(&meta.file_type()) => {
                let f = File::open(path).with_context(|| {
                    format!(
                        "cannot open {} to read its size; run as a user who may read it (root for most block devices)",
                        path.display()
                    )
                })?;
                let dev_size = endio::testing::block_device_size(&f)
                    .with_context(|| format!("cannot read the size of {}", path.display()))?;
                let size = size.unwrap_or(dev_size);
                if size > dev_size {
                    bail!(
                        "--size {} is larger than {} ({}); use at most --size {dev_size}",
                        fmt_bytes(size),
                        path.display(),
                        fmt_bytes(dev_size)
                    );
                }
                Ok(Target {
                    path: path.to_owned(),
                    kind: Kind::BlockDevice,
                    size,
                    description: format!("block device ({})", fmt_bytes(dev_size)),
                    temporary: false,
                    needs_layout: false,
                    also_invalidate: None,
                    created: None,
                    _loop: None,
                    _dir: None,
                })
            }
            Ok(meta) if meta.file_type().is_file() => {
                let len = meta.len();
                let size = match size {
                    Some(s) => s,
                    None if len > 0 => len,
                    None => DEFAULT_SIZE,
                };
                let parent = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                if len < size {
                    check_free_space(parent, size - len, "--size")?;
                }
                let fs = fs_name(parent).unwrap_or_else(|| "an unknown filesystem".into());
                Ok(Target {
                    path: path.to_owned(),
                    kind: Kind::File,
                    size,
                    description: format!("file on {fs} ({})", fmt_bytes(len)),
                    temporary: false,
                    needs_layout: len < size,
                    also_invalidate: None,
                    created: None,
                    _loop: None,
                    _dir: None,
                })
            }
            Ok(_) => bail!(
                "--target {} is neither a regular file nor a block device",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let parent = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                if !parent.is_dir() {
                    bail!(
                        "--target {}: the directory {} does not exist; create it or choose another path",
                        path.display(),
                        parent.display()
                    );
                }
                let size = size.unwrap_or(DEFAULT_SIZE);
                check_free_space(parent, size, "--size")?;
                File::create_new(path).with_context(|| {
                    format!("--target {}: cannot create the file", path.display())
                })?;
                let fs = fs_name(parent).unwrap_or_else(|| "an unknown filesystem".into());
                Ok(Target {
                    path: path.to_owned(),
                    kind: Kind::File,
                    size,
                    description: format!("new file on {fs}"),
                    temporary: false,
                    needs_layout: true,
                    also_invalidate: None,
                    created: Some(path.to_owned()),
                    _loop: None,
                    _dir: None,
                })
            }
            Err(e) => Err(e).with_context(|| format!("--target {}", path.display())),
        }
    }

    /// A read-only handle for residency samples.
    pub(crate) fn sampler(&self) -> Option<Sampler> {
        File::open(&self.path).ok().map(|file| Sampler {
            file,
            size: self.size,
        })
    }

    /// Keeps a `--target` file this run created (the run succeeded).
    pub(crate) fn keep(&mut self) {
        self.created = None;
    }

    /// A note for a target on tmpfs, where the page cache is the file's
    /// storage, when `modes` holds dontcache or direct: neither can do
    /// anything different from buffered there.
    pub(crate) fn tmpfs_note(&self, modes: &[super::Mode]) -> Option<String> {
        let dir = match self.kind {
            Kind::File => self
                .path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
            Kind::BlockDevice => return None,
        };
        let uncached = modes
            .iter()
            .any(|m| matches!(m, super::Mode::Dontcache | super::Mode::Direct));
        (uncached && fs_name(dir).as_deref() == Some("tmpfs")).then(|| {
            format!(
                "note: {} is on tmpfs, where the page cache is the file's storage: dontcache has nothing to drop and direct I/O goes through the same pages, so both measure what buffered does; put --target on a disk filesystem to compare the modes",
                self.path.display()
            )
        })
    }

    /// Writes the whole range, with the verify pattern of `verifier` if
    /// given; then fsync. Direct I/O where the target takes it and the
    /// range is made of whole logical blocks (the cache then stays empty),
    /// else buffered I/O (whose pages the next job's invalidation drops).
    /// Each write is a whole number of verify blocks.
    pub(crate) fn lay_out(
        &self,
        backend: Option<Backend>,
        verifier: Option<&Verifier>,
    ) -> anyhow::Result<()> {
        let completer = Completer::builder()
            .build()
            .context("cannot start the endio completer")?;
        let mut builder = Engine::builder(completer).queue_depth(16);
        if let Some(b) = backend {
            builder = builder.backend(b);
        }
        let engine = builder
            .build()
            .map_err(super::cli_terms::engine_error_in_cli_terms)?;
        let open = |direct: bool| {
            let mut o = OpenOptions::new().write(true).direct(direct);
            // The null backend's device needs its size; a file grows with
            // the writes (so a write that cannot land fails here, with its
            // errno, rather than a sparse growth up front).
            if self.kind == Kind::File && engine.backend() == Backend::Null {
                o = o.size(self.size);
            }
            engine.open(&self.path, o)
        };
        let verify_block = verifier.map_or(1, |v| v.block_size() as u64);
        let direct = match open(true) {
            Ok(dev) => {
                let lbs = u64::from(dev.logical_block_size());
                layout_chunk(verify_block, lbs)
                    .filter(|_| self.size.is_multiple_of(lbs))
                    .map(|chunk| (dev, chunk))
            }
            Err(OpenError::DirectUnsupported { .. }) => None,
            Err(e) => return Err(super::cli_terms::open_error_in_cli_terms(e)),
        };
        let (dev, chunk) = match direct {
            Some(d) => d,
            None => {
                let dev = open(false).map_err(super::cli_terms::open_error_in_cli_terms)?;
                let chunk =
                    layout_chunk(verify_block, 1).context("the verify block is too large")?;
                (dev, chunk)
            }
        };
        let errors = Arc::new(AtomicU64::new(0));
        let first_error = Arc::new(std::sync::Mutex::new(None));
        let mut offset = 0;
        while offset < self.size {
            if interrupt::interrupted() {
                bail!("interrupted while laying out {}", self.path.display());
            }
            if errors.load(Ordering::Relaxed) > 0 {
                break;
            }
            let len = chunk.min(self.size - offset);
            let mut buf = dev.buf(len as usize);
            match verifier {
                Some(v) => v.fill(&mut buf, offset),
                None => buf.fill(0xa5),
            }
            let errors = Arc::clone(&errors);
            let first_error = Arc::clone(&first_error);
            dev.submit(Bio::write(offset, buf, move |done| {
                let failure = match done.result() {
                    Ok(n) if n as u64 == len => return,
                    Ok(n) => format!("only {n} of {len} bytes written"),
                    Err(e) => describe_os_error(&e),
                };
                errors.fetch_add(1, Ordering::Relaxed);
                let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                if first.as_ref().is_none_or(|&(at, _)| offset < at) {
                    *first = Some((offset, failure));
                }
            }))
            .map_err(|e| super::cli_terms::submit_error_in_cli_terms(e, &dev))?;
            offset += len;
        }
        dev.drain();
        let errors = errors.load(Ordering::Relaxed);
        if errors > 0 {
            let (at, why) = first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or((0, "unknown error".into()));
            bail!(
                "laying out {}: {errors} writes failed, the first at offset {at}: {why}; check free space (df), the file size limit (ulimit -f) and the device (dmesg), or give a smaller --size",
                self.path.display()
            );
        }
        let (tx, rx) = std::sync::mpsc::channel();
        dev.submit(Bio::flush(move |done| {
            let _ = tx.send(done.result().map(|_| ()));
        }))
        .map_err(|e| super::cli_terms::submit_error_in_cli_terms(e, &dev))?;
        rx.recv_timeout(Duration::from_secs(600))
            .context("fsync after the layout did not finish")?
            .map_err(|e| {
                anyhow::anyhow!(
                    "fsync of {} after the layout: {}",
                    self.path.display(),
                    describe_os_error(&e)
                )
            })?;
        Ok(())
    }

    /// fio's `invalidate=1`: fsync, then `POSIX_FADV_DONTNEED` over the
    /// whole target, repeated briefly while pages survive (pages under
    /// readahead can escape one drop). Returns what stayed cached.
    pub(crate) fn invalidate(&self) -> anyhow::Result<u64> {
        if let Some(backing) = &self.also_invalidate {
            drop_cache(backing)?;
        }
        drop_cache(&self.path)
    }
}

/// The length of the layout's writes: the largest multiple of both
/// `verify_block` and `align` up to 1 MiB (or one such multiple if that is
/// larger, within the largest I/O); `None` if there is none.
fn layout_chunk(verify_block: u64, align: u64) -> Option<u64> {
    const CHUNK: u64 = 1 << 20;
    let (mut a, mut b) = (verify_block, align);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    let unit = verify_block / a * align;
    let chunk = (CHUNK / unit).max(1) * unit;
    (chunk <= endio::MAX_IO_BYTES).then_some(chunk)
}

/// Refuses to lay out `needed` bytes in `dir` if its filesystem has less
/// free space for this user (`statvfs`); `flag` is the option to shrink.
fn check_free_space(dir: &Path, needed: u64, flag: &str) -> anyhow::Result<()> {
    let Ok(st) = rustix::fs::statvfs(dir) else {
        return Ok(());
    };
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    if needed > free {
        let fs = fs_name(dir).unwrap_or_else(|| "its filesystem".into());
        bail!(
            "{flag} {}: the layout needs {} in {} ({fs}), which has {} free; give a smaller {flag}, free some space, or choose a --target (or TMPDIR) on a filesystem with room",
            fmt_bytes(needed),
            fmt_bytes(needed),
            dir.display(),
            fmt_bytes(free)
        );
    }
    Ok(())
}

fn drop_cache(path: &Path) -> anyhow::Result<u64> {
    let f = File::open(path).with_context(|| {
        format!(
            "cannot open {} to invalidate its page cache",
            path.display()
        )
    })?;
    f.sync_all()
        .with_context(|| format!("fsync of {} before invalidating", path.display()))?;
    let mut left = 0;
    for _ in 0..20 {
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)
            .with_context(|| format!("posix_fadvise(DONTNEED) of {}", path.display()))?;
        left = endio::residency(&f, 0..0).map_or(0, |r| r.cached_bytes);
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(left)
}

/// Samples the page-cache residency of the target's range.
#[derive(Debug)]
pub(crate) struct Sampler {
    file: File,
    size: u64,
}

impl Sampler {
    /// Residency of the range the jobs use, if the kernel tells.
    pub(crate) fn sample(&self) -> Option<Residency> {
        endio::residency(&self.file, 0..self.size).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_chunks_are_whole_verify_blocks_and_aligned() {
        assert_eq!(layout_chunk(1, 1), Some(1 << 20));
        assert_eq!(layout_chunk(4096, 512), Some(1 << 20));
        for (vb, align) in [
            (3000, 1),
            (3000, 512),
            (8704, 4096),
            (4097, 1),
            (1000, 4096),
        ] {
            let chunk = layout_chunk(vb, align).unwrap();
            assert!(
                chunk.is_multiple_of(vb) && chunk.is_multiple_of(align),
                "{vb} {align}"
            );
            assert!(chunk <= 1 << 20, "{vb} {align}: {chunk}");
        }
        // One unit larger than 1 MiB is still one write, within the limit.
        assert_eq!(layout_chunk(3 << 20, 4096), Some(3 << 20));
        assert_eq!(layout_chunk(endio::MAX_IO_BYTES + 8, 1), None);
    }

    #[test]
    fn os_errors_carry_their_errno_name_and_number() {
        let e = std::io::Error::from_raw_os_error(28);
        let text = describe_os_error(&e);
        assert!(
            text.contains("ENOSPC") && text.contains("errno 28"),
            "{text}"
        );
        assert!(!text.contains("os error"), "{text}");
        let text = describe_os_error(&std::io::Error::from_raw_os_error(61));
        assert!(text.contains("errno 61"), "{text}");
    }
}
