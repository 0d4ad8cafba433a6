//! A real block device: a loop device over a sparse temporary file (root
//! only; skipped with the reason otherwise), on every backend, `O_DIRECT`
//! and buffered, with the geometry read from the kernel.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::io_target::{backends, engine, loop_device_or_skip};
use endio::{Bio, BioFlags, DeviceKind, OpenOptions, SubmitErrorKind, Verifier};

const SIZE: u64 = 32 << 20;

#[test]
fn a_loop_device_round_trips_on_every_backend_direct_and_buffered() {
    let Some(lo) = loop_device_or_skip("a_loop_device_round_trips", SIZE, None) else {
        return;
    };
    for backend in backends() {
        for direct in [true, false] {
            let (completer, engine) = engine(backend, 32);
            let dev = engine
                .open(
                    lo.path(),
                    OpenOptions::new().read(true).write(true).direct(direct),
                )
                .unwrap();
            let what = format!("{backend} direct={direct}");
            assert_eq!(dev.size(), SIZE, "{what}");
            assert_eq!(dev.logical_block_size(), 512, "{what}");
            let kind = if backend == endio::Backend::Null {
                DeviceKind::Memory
            } else {
                DeviceKind::BlockDevice
            };
            assert_eq!(dev.kind(), kind);
            let bs = 64 * 1024;
            let blocks = SIZE / bs as u64;
            let seed = u64::from(direct) << 8 | backend as u64;
            let verifier = Arc::new(Verifier::new(bs, seed));
            let ok = Arc::new(AtomicU64::new(0));
            for i in 0..blocks {
                let mut buf = dev.buf(bs);
                verifier.fill(&mut buf, i * bs as u64);
                let ok = Arc::clone(&ok);
                let bio = Bio::write(i * bs as u64, buf, move |e| {
                    assert!(!endio::context::in_atomic());
                    if e.result().ok() == Some(bs) {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .with_flags(BioFlags::COMPLETE_IN_TASK);
                dev.submit(bio).unwrap();
            }
            dev.submit(Bio::flush(|e| assert_eq!(e.result().unwrap(), 0)))
                .unwrap();
            dev.drain();
            assert!(completer.wait_idle(Duration::from_secs(60)));
            assert_eq!(ok.load(Ordering::Relaxed), blocks, "{what}: writes");
            for i in 0..blocks {
                let v = Arc::clone(&verifier);
                let bio = Bio::read(i * bs as u64, dev.buf(bs), move |e| {
                    assert_eq!(e.result().unwrap(), bs);
                    let _ = v.check(e.buf(), e.offset());
                })
                .with_flags(BioFlags::COMPLETE_IN_TASK);
                dev.submit(bio).unwrap();
            }
            dev.drain();
            assert!(completer.wait_idle(Duration::from_secs(60)));
            let stats = verifier.stats();
            assert_eq!(
                (stats.checked_bytes, stats.errors),
                (SIZE, 0),
                "{what}: {:?}",
                verifier.errors()
            );
        }
    }
}

#[test]
fn a_4k_sector_loop_device_reports_4096_and_refuses_512_byte_direct_io() {
    let Some(lo) = loop_device_or_skip("a_4k_sector_loop_device", 8 << 20, Some(4096)) else {
        return;
    };
    let (_completer, engine) = engine(endio::Backend::Threads, 8);
    let dev = engine
        .open(lo.path(), OpenOptions::new().read(true).direct(true))
        .unwrap();
    assert_eq!(dev.logical_block_size(), 4096);
    assert!(dev.buf_align() >= 4096);
    let e = dev
        .submit(Bio::read(512, dev.buf(4096), |_| panic!("must not run")))
        .expect_err("512 is not a multiple of 4096");
    assert_eq!(e.kind(), SubmitErrorKind::UnalignedOffset);
    assert!(e.to_string().contains("logical block size 4096"), "{e}");
    let (tx, rx) = std::sync::mpsc::channel();
    dev.submit(Bio::read(4096, dev.buf(4096), move |e| {
        tx.send(e.result().ok()).unwrap()
    }))
    .unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        Some(4096)
    );
}
