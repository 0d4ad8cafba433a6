//! A block device open both `O_DIRECT` and buffered in one process (a loop
//! device; root, skipped with the reason otherwise), on the thread-pool
//! backend:
//!
//! * a direct write to a range the buffered handle has cached writes back
//!   and drops that range first (task context): afterwards the range is
//!   out of the page cache and the buffered handle reads the direct data;
//! * a direct read of a range dirty in the cache first writes it back: it
//!   reads the buffered data;
//! * in atomic context (and from `try_submit`) such a direct I/O is refused
//!   with `MixedCache`, the bio handed back; a direct read of a range that
//!   is only clean in the cache is not;
//! * once the buffered handle is closed, direct I/O is no longer held up.

mod common;

use std::fs::File;
use std::sync::mpsc;
use std::time::Duration;

use common::io_target::{engine, loop_device_or_skip};
use endio::{Backend, Bio, Device, Op, OpenOptions, SubmitErrorKind, context};

const SIZE: u64 = 64 << 20;
const LEN: usize = 64 << 10;
const AT: u64 = 1 << 20;

fn io(dev: &Device, op: Op, offset: u64, fill: u8) -> Vec<u8> {
    let (tx, rx) = mpsc::channel();
    let mut buf = dev.buf(LEN);
    buf.fill(fill);
    let bio = Bio::new(op, offset, buf, move |e| {
        assert_eq!(e.result().unwrap(), LEN, "short I/O");
        tx.send(e.into_buf().to_vec()).unwrap();
    });
    dev.submit(bio).unwrap();
    rx.recv_timeout(Duration::from_secs(30)).unwrap()
}

fn cached(path: &std::path::Path) -> u64 {
    let f = File::open(path).unwrap();
    endio::residency(&f, AT..AT + LEN as u64)
        .unwrap()
        .cached_bytes
}

#[test]
fn direct_io_to_a_device_also_open_buffered_settles_the_range_first() {
    let Some(lo) = loop_device_or_skip(
        "direct_io_to_a_device_also_open_buffered_settles_the_range_first",
        SIZE,
        None,
    ) else {
        return;
    };
    let (_c, engine) = engine(Backend::Threads, 8);
    let rw = OpenOptions::new().read(true).write(true);
    let buffered = engine.open(lo.path(), rw).unwrap();
    let direct = engine.open(lo.path(), rw.direct(true)).unwrap();

    // The buffered handle caches the range (clean).
    io(&buffered, Op::Write, AT, 0x11);
    let f = File::open(lo.path()).unwrap();
    f.sync_all().unwrap();
    assert_eq!(io(&buffered, Op::Read, AT, 0), vec![0x11; LEN]);
    assert!(
        cached(lo.path()) > 0,
        "the buffered read left the range cached"
    );

    // A direct read of a clean cached range goes ahead, even in atomic context.
    let (tx, rx) = mpsc::channel();
    {
        let _atomic = context::atomic();
        direct
            .submit(Bio::read(AT, direct.buf(LEN), move |e| {
                tx.send(e.into_buf().to_vec()).unwrap()
            }))
            .expect("a clean cached range does not hold up a direct read");
    }
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(30)).unwrap(),
        vec![0x11; LEN]
    );

    // A direct write to it in atomic context is refused, the bio handed back.
    let mut buf = direct.buf(LEN);
    buf.fill(0x22);
    let bio = Bio::write(AT, buf, |_| panic!("a refused bio's handler ran"));
    let err = {
        let _atomic = context::atomic();
        direct.submit(bio).unwrap_err()
    };
    assert_eq!(err.kind(), SubmitErrorKind::MixedCache, "{}", err.message());
    assert!(err.message().contains("task context"), "{}", err.message());
    let bio = err.into_bio();
    assert_eq!((bio.op(), bio.offset()), (Op::Write, AT));
    let err = direct.try_submit(bio).unwrap_err();
    assert_eq!(err.kind(), SubmitErrorKind::MixedCache, "{}", err.message());
    assert!(cached(lo.path()) > 0, "a refused write drops nothing");
    drop(err);

    // In task context the range is written back and dropped first.
    io(&direct, Op::Write, AT, 0x22);
    assert_eq!(
        cached(lo.path()),
        0,
        "the direct write left the range cached"
    );
    assert_eq!(io(&buffered, Op::Read, AT, 0), vec![0x22; LEN]);

    // A buffered write leaves the range dirty: a direct read writes it back first ...
    io(&buffered, Op::Write, AT, 0x33);
    let dirty = endio::residency(&f, AT..AT + LEN as u64).unwrap();
    if dirty.source == endio::CacheStatSource::Cachestat {
        assert!(dirty.dirty_bytes > 0, "{dirty:?}");
    }
    let (tx, rx) = mpsc::channel();
    let err = {
        let _atomic = context::atomic();
        direct
            .submit(Bio::read(AT, direct.buf(LEN), move |e| {
                tx.send(e.into_buf().to_vec()).unwrap()
            }))
            .unwrap_err()
    };
    assert_eq!(err.kind(), SubmitErrorKind::MixedCache, "{}", err.message());
    assert!(err.message().contains("dirty"), "{}", err.message());
    direct.submit(err.into_bio()).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(30)).unwrap(),
        vec![0x33; LEN]
    );
    let after = endio::residency(&f, AT..AT + LEN as u64).unwrap();
    assert_eq!(after.dirty_bytes, 0, "{after:?}");

    // Without a buffered handle nothing holds a direct write up.
    io(&buffered, Op::Read, AT, 0);
    assert!(cached(lo.path()) > 0);
    buffered.drain();
    drop(buffered);
    let mut buf = direct.buf(LEN);
    buf.fill(0x44);
    let (tx, rx) = mpsc::channel();
    {
        let _atomic = context::atomic();
        direct
            .submit(Bio::write(AT, buf, move |e| {
                tx.send(e.result().map_err(|e| e.to_string())).unwrap()
            }))
            .expect("no buffered open is left");
    }
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), Ok(LEN));
    direct.drain();
}

#[test]
fn a_direct_only_device_is_never_held_up() {
    let Some(lo) = loop_device_or_skip("a_direct_only_device_is_never_held_up", SIZE, None) else {
        return;
    };
    let (_c, engine) = engine(Backend::Threads, 8);
    let direct = engine
        .open(
            lo.path(),
            OpenOptions::new().read(true).write(true).direct(true),
        )
        .unwrap();
    // The page cache of the device holds the range, through a plain
    // descriptor outside endio: endio does not see it and does not wait.
    let f = File::open(lo.path()).unwrap();
    let mut plain = vec![0u8; LEN];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut plain, AT).unwrap();
    assert!(cached(lo.path()) > 0);
    let mut buf = direct.buf(LEN);
    buf.fill(0x55);
    let (tx, rx) = mpsc::channel();
    {
        let _atomic = context::atomic();
        direct
            .submit(Bio::write(AT, buf, move |e| {
                tx.send(e.result().is_ok()).unwrap()
            }))
            .expect("no buffered endio open of this device");
    }
    assert!(rx.recv_timeout(Duration::from_secs(30)).unwrap());
}
