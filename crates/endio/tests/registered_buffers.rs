//! An engine's registered buffer pool: `Device::buf` hands out blocks of
//! it, its rings issue I/O on them as `READ_FIXED`/`WRITE_FIXED`, data
//! round-trips, and whatever the pool cannot serve gets a heap buffer.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::io_target::disk_dir;
use endio::{Backend, Bio, Completer, Device, Engine, OpenOptions};

fn uring_or_skip(test: &str) -> bool {
    match endio::testing::probe_io_uring(std::path::Path::new("/proc")) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("{test} skipped: io_uring is unavailable: {e}");
            false
        }
    }
}

fn engine(pool_bytes: usize) -> Engine {
    let completer = Completer::builder().build().expect("completer");
    Engine::builder(completer)
        .backend(Backend::Uring)
        .registered_buffers(pool_bytes)
        .build()
        .expect("engine")
}

/// Submits `bio` and waits for its result and buffer.
fn run(
    dev: &Device,
    make: impl FnOnce(mpsc::Sender<(Result<usize, String>, endio::Buf)>) -> Bio,
) -> (Result<usize, String>, endio::Buf) {
    let (tx, rx) = mpsc::channel();
    dev.submit(make(tx)).unwrap();
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the I/O completed")
}

#[test]
fn registered_buffers_round_trip_as_fixed_io() {
    if !uring_or_skip("registered_buffers_round_trip_as_fixed_io") {
        return;
    }
    let engine = engine(1 << 20);
    let dir = disk_dir();
    for direct in [true, false] {
        let dev = engine
            .open(
                dir.path().join(format!("pool-{direct}")),
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .direct(direct)
                    .size(1 << 20),
            )
            .unwrap();
        for i in 0..64u64 {
            let mut buf = dev.buf(8192);
            assert!(buf.is_registered(), "a block of the pool");
            assert!(buf.iter().all(|&b| b == 0), "handed out zeroed");
            buf.fill(i as u8 + 1);
            let (res, _) = run(&dev, |tx| {
                Bio::write(i * 8192, buf, move |e| {
                    let _ = tx.send((e.result().map_err(|e| e.to_string()), e.into_buf()));
                })
            });
            assert_eq!(res, Ok(8192));
        }
        for i in 0..64u64 {
            let (res, buf) = run(&dev, |tx| {
                Bio::read(i * 8192, dev.buf(8192), move |e| {
                    let _ = tx.send((e.result().map_err(|e| e.to_string()), e.into_buf()));
                })
            });
            assert_eq!(res, Ok(8192));
            assert!(buf.iter().all(|&b| b == i as u8 + 1), "block {i} read back");
        }
    }
    let stats = engine.buffer_stats();
    assert_eq!(stats.pool_bytes, 1 << 20);
    assert_eq!(stats.in_use_bytes, 0, "every block went back: {stats:?}");
    if stats.rings_registered == 0 {
        eprintln!("the rings could not register the pool (locked-memory limit?): {stats:?}");
        assert_eq!(stats.fixed_ios, 0);
    } else {
        assert_eq!(stats.rings_registered, engine.lanes() as u64, "{stats:?}");
        assert!(
            stats.fixed_ios >= 256,
            "I/O on registered buffers: {stats:?}"
        );
    }
}

#[test]
fn what_the_pool_cannot_serve_is_a_heap_buffer() {
    if !uring_or_skip("what_the_pool_cannot_serve_is_a_heap_buffer") {
        return;
    }
    let engine = engine(64 << 10);
    let dir = disk_dir();
    let dev = engine
        .open(
            dir.path().join("small-pool"),
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .direct(true)
                .size(1 << 20),
        )
        .unwrap();
    let held: Vec<_> = (0..16).map(|_| dev.buf(4096)).collect();
    assert!(held.iter().all(endio::Buf::is_registered));
    let spill = dev.buf(4096);
    assert!(!spill.is_registered(), "the pool is used up");
    assert!(spill.is_aligned_to(dev.buf_align()));
    assert!(!dev.buf(16 << 20).is_registered(), "larger than any block");
    // A clone of a block is a block while the pool has one, then memory of
    // the heap, aligned as the original, and the same bytes.
    drop(held);
    let mut a = dev.buf(4096);
    a.fill(9);
    let b = a.clone();
    assert!(b.is_registered());
    assert_eq!(&a[..], &b[..]);
    let rest: Vec<_> = (0..14).map(|_| dev.buf(4096)).collect();
    let c = a.clone();
    assert!(!c.is_registered() && c.is_aligned_to(4096));
    assert_eq!(&a[..], &c[..]);
    // I/O on a heap buffer of an engine with a pool works as ever.
    let (res, _) = run(&dev, |tx| {
        Bio::write(0, c, move |e| {
            let _ = tx.send((e.result().map_err(|e| e.to_string()), e.into_buf()));
        })
    });
    assert_eq!(res, Ok(4096));
    drop(rest);
    // A block outlives its engine.
    let kept = b;
    drop(dev);
    drop(engine);
    assert!(kept.iter().all(|&x| x == 9));
}

#[test]
fn a_pool_larger_than_io_uring_registers_is_refused_naming_the_limit() {
    let completer = Completer::builder().build().expect("completer");
    let e = Engine::builder(completer)
        .registered_buffers(2 << 30)
        .build()
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("1 GiB") && msg.contains("choose"), "{msg}");
}
