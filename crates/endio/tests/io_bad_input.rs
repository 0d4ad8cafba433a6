//! Bad input, one test each: a clear error that names the
//! problem and the fix, and nothing lost (a refused bio comes back with its
//! handler, which has not run).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::io_target::{disk_dir, engine, loop_device_or_skip};
use endio::{
    Backend, Bio, Buf, Completer, Device, Engine, OpenError, OpenOptions, SubmitError,
    SubmitErrorKind,
};

/// Counts how often its handlers ran.
#[derive(Clone, Default)]
struct Ran(Arc<AtomicU32>);

impl Ran {
    fn bio(&self, op: endio::Op, offset: u64, buf: Buf) -> Bio {
        let ran = self.clone();
        Bio::new(op, offset, buf, move |_| {
            ran.0.fetch_add(1, Ordering::SeqCst);
        })
    }

    fn count(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The default backend's engine (io_uring here; ENDIO_BACKEND can change it).
fn default_engine() -> (Completer, Engine) {
    let completer = Completer::builder().build().unwrap();
    let engine = Engine::builder(completer.clone()).build().unwrap();
    (completer, engine)
}

/// Submits `bio`, expects a refusal of `kind` whose message holds every
/// piece of `says`, and checks the bio came back unrun.
fn refused(dev: &Device, bio: Bio, ran: &Ran, kind: SubmitErrorKind, says: &[&str]) -> Bio {
    let (op, offset, len) = (bio.op(), bio.offset(), bio.len());
    let e: SubmitError = dev.submit(bio).expect_err("the bio should be refused");
    assert_eq!(e.kind(), kind, "{e}");
    let msg = e.to_string();
    for s in says {
        assert!(msg.contains(s), "message lacks {s:?}: {msg}");
    }
    assert_eq!(ran.count(), 0, "a refused bio's handler ran");
    let bio = e.into_bio();
    assert_eq!((bio.op(), bio.offset(), bio.len()), (op, offset, len));
    bio
}

/// Submits a returned bio to a device that takes it: its handler runs once.
fn still_completes(dev: &Device, bio: Bio, ran: &Ran) {
    dev.submit(bio).unwrap();
    dev.drain();
    assert_eq!(ran.count(), 1);
}

fn open_err(engine: &Engine, path: &std::path::Path, o: OpenOptions) -> OpenError {
    engine.open(path, o).expect_err("the open should fail")
}

#[test]
fn a_missing_path_names_the_path_and_create() {
    let (_c, engine) = default_engine();
    let dir = disk_dir();
    let path = dir.path().join("no/such/file");
    let e = open_err(&engine, &path, OpenOptions::new().read(true));
    assert!(matches!(e, OpenError::NotFound { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("create(true)"),
        "{msg}"
    );
}

#[test]
fn a_directory_is_refused() {
    let (_c, engine) = default_engine();
    let dir = disk_dir();
    let e = open_err(&engine, dir.path(), OpenOptions::new().read(true));
    assert!(matches!(e, OpenError::IsDirectory { .. }), "{e}");
    assert!(
        e.to_string().contains("regular file or a block device"),
        "{e}"
    );
}

#[test]
fn a_character_device_is_refused() {
    let (_c, engine) = default_engine();
    let e = open_err(
        &engine,
        std::path::Path::new("/dev/null"),
        OpenOptions::new().read(true),
    );
    assert!(
        matches!(
            e,
            OpenError::Unsupported {
                what: "character device",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn options_without_access_are_refused() {
    let (_c, engine) = default_engine();
    let dir = disk_dir();
    let e = open_err(&engine, &dir.path().join("f"), OpenOptions::new());
    assert!(e.to_string().contains("read(true)"), "{e}");
    let e = open_err(
        &engine,
        &dir.path().join("f"),
        OpenOptions::new().read(true).create(true),
    );
    assert!(e.to_string().contains("write(true)"), "{e}");
}

#[test]
fn a_write_on_a_read_only_open_is_refused() {
    let (_c, engine) = default_engine();
    let dir = disk_dir();
    let path = dir.path().join("ro.dat");
    std::fs::write(&path, vec![0u8; 8192]).unwrap();
    let dev = engine.open(&path, OpenOptions::new().read(true)).unwrap();
    let ran = Ran::default();
    let bio = ran.bio(endio::Op::Write, 0, Buf::zeroed(4096, 4096));
    let bio = refused(
        &dev,
        bio,
        &ran,
        SubmitErrorKind::ReadOnly,
        &["read-only", "write(true)", "ro.dat"],
    );
    let rw = engine
        .open(&path, OpenOptions::new().read(true).write(true))
        .unwrap();
    still_completes(&rw, bio, &ran);
}

#[test]
fn a_read_on_a_write_only_open_is_refused() {
    let (_c, engine) = default_engine();
    let dir = disk_dir();
    let path = dir.path().join("wo.dat");
    let dev = engine
        .open(&path, OpenOptions::new().write(true).create(true))
        .unwrap();
    let ran = Ran::default();
    let bio = ran.bio(endio::Op::Read, 0, Buf::zeroed(512, 512));
    refused(
        &dev,
        bio,
        &ran,
        SubmitErrorKind::WriteOnly,
        &["write-only", "read(true)"],
    );
}

fn direct_file(engine: &Engine, dir: &tempfile::TempDir) -> Device {
    let dev = engine
        .open(
            dir.path().join("direct.dat"),
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .direct(true)
                .size(1 << 20),
        )
        .unwrap();
    assert!(dev.logical_block_size() >= 512 && dev.logical_block_size().is_power_of_two());
    dev
}

#[test]
fn direct_io_at_an_unaligned_offset_is_refused_naming_the_block_size() {
    let (_c, engine) = default_engine();
    let dir = disk_dir();
    let dev = direct_file(&engine, &dir);
    let lbs = dev.logical_block_size();
    let ran = Ran::default();
    let bio = ran.bio(endio::Op::Read, 100, dev.buf(lbs as usize));
    let bio = refused(
        &dev,
        bio,
        &ran,
        SubmitErrorKind::UnalignedOffset,
        &[
            "offset 100",
            &format!("logical block size {lbs}"),
            "direct(true)",
        ],
    );
    // The same bio is fine without O_DIRECT: nothing was lost.
    let buffered = engine
        .open(dir.path().join("direct.dat"), OpenOptions::new().read(true))
        .unwrap();
    still_completes(&buffered, bio, &ran);
}

#[test]
fn direct_io_of_an_unaligned_length_is_refused() {
    let (_c, engine) = default_engine();
    let dir = disk_dir();
    let dev = direct_file(&engine, &dir);
    let lbs = dev.logical_block_size();
    let ran = Ran::default();
    let mut buf = dev.buf(lbs as usize * 2);
    buf.truncate(lbs as usize + 1);
    let bio = ran.bio(endio::Op::Write, 0, buf);
    refused(
        &dev,
        bio,
        &ran,
        SubmitErrorKind::UnalignedLength,
        &[
            &format!("length {}", lbs + 1),
            &format!("multiple of {lbs}"),
        ],
    );
}

#[test]
fn direct_io_from_an_unaligned_buffer_is_refused() {
    let (_c, engine) = default_engine();
    let dir = disk_dir();
    let dev = direct_file(&engine, &dir);
    let lbs = dev.logical_block_size() as usize;
    // Buf has no offset constructor: take plain heap buffers (16-byte
    // aligned by malloc) until one is not aligned to the block size. Kept
    // alive so the allocator does not hand the same address back.
    let mut tries = Vec::new();
    let buf = loop {
        let buf = Buf::from(vec![0u8; lbs]);
        if !buf.is_aligned_to(512) {
            break buf;
        }
        tries.push(buf);
        assert!(
            tries.len() < 1000,
            "malloc keeps returning 512-aligned buffers"
        );
    };
    let ran = Ran::default();
    let bio = ran.bio(endio::Op::Read, 0, buf);
    match dev.submit(bio) {
        Err(e) => {
            assert_eq!(e.kind(), SubmitErrorKind::UnalignedBuffer, "{e}");
            let msg = e.to_string();
            assert!(
                msg.contains("not aligned") && msg.contains("Device::buf"),
                "{msg}"
            );
            assert_eq!(ran.count(), 0);
            drop(e.into_bio());
        }
        Ok(()) => {
            dev.drain();
            eprintln!(
                "skipped: this filesystem needs less than 16-byte buffer alignment for O_DIRECT, so a heap buffer is fine"
            );
        }
    }
}

#[test]
fn zero_length_io_is_refused() {
    let (_c, engine) = default_engine();
    let dir = disk_dir();
    let dev = engine
        .open(
            dir.path().join("z.dat"),
            OpenOptions::new().read(true).write(true).create(true),
        )
        .unwrap();
    let ran = Ran::default();
    let bio = ran.bio(endio::Op::Write, 4096, Buf::empty());
    refused(
        &dev,
        bio,
        &ran,
        SubmitErrorKind::ZeroLength,
        &["zero-length write", "Bio::nop"],
    );
}

#[test]
fn io_past_the_end_of_a_block_device_is_refused() {
    let Some(lo) = loop_device_or_skip(
        "io_past_the_end_of_a_block_device_is_refused",
        8 << 20,
        None,
    ) else {
        return;
    };
    let (_c, engine) = default_engine();
    let dev = engine
        .open(
            lo.path(),
            OpenOptions::new().read(true).write(true).direct(true),
        )
        .unwrap();
    assert_eq!(dev.size(), 8 << 20);
    let ran = Ran::default();
    let bio = ran.bio(endio::Op::Write, (8 << 20) - 4096, dev.buf(8192));
    refused(
        &dev,
        bio,
        &ran,
        SubmitErrorKind::PastEnd,
        &[
            "past the end of the device (8388608 bytes)",
            "within 8388608",
        ],
    );
    drop(dev);
}

#[test]
fn io_past_the_end_of_a_memory_device_is_refused() {
    let (_c, engine) = engine(Backend::Null, 8);
    let dir = disk_dir();
    let dev = engine
        .open(
            dir.path().join("mem"),
            OpenOptions::new()
                .read(true)
                .create(true)
                .write(true)
                .size(1 << 20),
        )
        .unwrap();
    let ran = Ran::default();
    let bio = ran.bio(endio::Op::Read, 1 << 20, Buf::zeroed(512, 512));
    refused(&dev, bio, &ran, SubmitErrorKind::PastEnd, &["past the end"]);
}

#[test]
fn an_exclusive_open_of_a_held_block_device_is_refused() {
    let Some(lo) = loop_device_or_skip(
        "an_exclusive_open_of_a_held_block_device_is_refused",
        1 << 20,
        None,
    ) else {
        return;
    };
    let (_c, engine) = default_engine();
    let held = engine
        .open(lo.path(), OpenOptions::new().read(true).exclusive(true))
        .unwrap();
    let e = open_err(
        &engine,
        lo.path(),
        OpenOptions::new().read(true).exclusive(true),
    );
    assert!(matches!(e, OpenError::Busy { .. }), "{e}");
    assert!(e.to_string().contains("exclusive(true)"), "{e}");
    drop(held);
    // Released: it can be held again.
    drop(
        engine
            .open(lo.path(), OpenOptions::new().read(true).exclusive(true))
            .unwrap(),
    );
}

#[test]
fn exclusive_is_for_block_devices_only() {
    let (_c, engine) = default_engine();
    let dir = disk_dir();
    let e = open_err(
        &engine,
        &dir.path().join("x"),
        OpenOptions::new().write(true).create(true).exclusive(true),
    );
    assert!(e.to_string().contains("block devices"), "{e}");
}

#[test]
fn an_atomic_submit_with_every_slot_taken_is_refused_not_blocked() {
    // One slot per lane and a slow null device: the second bio finds every
    // slot taken; from atomic context (or try_submit) it comes back Busy.
    let completer = Completer::builder().build().unwrap();
    let engine = Engine::builder(completer)
        .backend(Backend::Null)
        .queue_depth(1)
        .null_latency(Duration::from_millis(300))
        .build()
        .unwrap();
    let dir = disk_dir();
    let dev = engine
        .open(
            dir.path().join("m"),
            OpenOptions::new()
                .read(true)
                .create(true)
                .write(true)
                .size(1 << 20),
        )
        .unwrap();
    let ran = Ran::default();
    for _ in 0..engine.lanes() {
        dev.submit(ran.bio(endio::Op::Read, 0, Buf::zeroed(512, 512)))
            .unwrap();
    }
    let bio = ran.bio(endio::Op::Read, 0, Buf::zeroed(512, 512));
    let e = {
        let _atomic = endio::context::atomic();
        dev.submit(bio).expect_err("every slot is taken")
    };
    assert_eq!(e.kind(), SubmitErrorKind::Busy, "{e}");
    assert!(e.to_string().contains("queue_depth"), "{e}");
    let e = dev.try_submit(e.into_bio()).expect_err("still taken");
    assert_eq!(e.kind(), SubmitErrorKind::Busy);
    // In task context, submit waits for a slot instead.
    dev.submit(e.into_bio()).unwrap();
    dev.drain();
    assert_eq!(ran.count(), engine.lanes() as u32 + 1);
}

#[test]
fn a_submit_after_shutdown_gives_the_bio_back() {
    let (_c, engine) = default_engine();
    let dir = disk_dir();
    let dev = engine
        .open(
            dir.path().join("s.dat"),
            OpenOptions::new().write(true).create(true),
        )
        .unwrap();
    drop(engine);
    let ran = Ran::default();
    let bio = ran.bio(endio::Op::Write, 0, Buf::zeroed(512, 512));
    refused(&dev, bio, &ran, SubmitErrorKind::ShutDown, &["shut down"]);
}

#[test]
fn engine_settings_out_of_range_are_refused_naming_the_setting_and_a_value() {
    let completer = Completer::builder().build().unwrap();
    let refused = |b: endio::EngineBuilder| match b.backend(Backend::Null).build() {
        Ok(_) => panic!("built"),
        Err(e) => e.to_string(),
    };
    let e = refused(Engine::builder(completer.clone()).queue_depth(0));
    assert!(
        e.contains("queue depth 0") && e.contains("such as 32"),
        "{e}"
    );
    for batch in [0, 4097] {
        let e = refused(Engine::builder(completer.clone()).submit_batch(batch));
        assert!(
            e.contains(&format!("submit batch {batch} is outside 1..=4096"))
                && e.contains("choose 1"),
            "{e}"
        );
    }
    let e = refused(Engine::builder(completer).threads(0));
    assert!(
        e.contains("0 pool threads") && e.contains("such as 8"),
        "{e}"
    );
}
