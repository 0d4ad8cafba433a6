//! Write-back errors are never lost: on a device that fails writes (a loop
//! device over a sparse file on a full filesystem, see
//! `common/failing.rs`), every mode and backend reports a write-back failure
//! to the next flush, a `WAIT_WRITEBACK` write reports its own, and nothing
//! endio does itself consumes the error. Root; skipped otherwise, with the
//! reason.

mod common;

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::failing::{DEVICE_BYTES, FREE_BYTES, FailingDevice};
use common::io_target::backends;
use endio::{Backend, Bio, BioFlags, Device, OpenError, OpenOptions};

const BS: usize = 1 << 20;
/// More than the filesystem has free: the tail of it fails.
const WRITTEN: u64 = 16 << 20;
const FILL: u8 = 0x5a;

fn failing_or_skip(test: &str, direct_io: bool) -> Option<FailingDevice> {
    match FailingDevice::new(direct_io, common::io_target::disk_dir()) {
        Ok(d) => Some(d),
        Err(why) => {
            eprintln!("skipping {test}: {why}");
            None
        }
    }
}

fn file_backends() -> Vec<Backend> {
    backends()
        .into_iter()
        .filter(|b| *b != Backend::Null)
        .collect()
}

fn flush(dev: &Device) -> std::io::Result<()> {
    let (tx, rx) = mpsc::channel();
    dev.submit(Bio::flush(move |done| {
        let _ = tx.send(done.result().map(|_| ()));
    }))
    .expect("submit the flush");
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the flush completes")
}

/// Writes `WRITTEN` bytes sequentially in `BS` bios with `flags`, waits for
/// every handler, and returns each bio's result, by offset.
fn wait_results(
    completer: &endio::Completer,
    dev: &Device,
    flags: BioFlags,
) -> Vec<(u64, std::io::Result<usize>)> {
    let results = Arc::new(Mutex::new(Vec::new()));
    for offset in (0..WRITTEN).step_by(BS) {
        let mut buf = dev.buf(BS);
        buf.fill(FILL);
        let r = Arc::clone(&results);
        let bio = Bio::write(offset, buf, move |done| {
            r.lock().unwrap().push((offset, done.result()));
        })
        .with_flags(flags | BioFlags::COMPLETE_IN_TASK);
        dev.submit(bio).expect("submit a write");
    }
    dev.drain();
    assert!(completer.wait_idle(Duration::from_secs(60)));
    std::mem::take(&mut *results.lock().unwrap())
}

#[test]
fn a_failed_write_back_is_reported_by_the_next_flush_in_every_buffered_mode() {
    const { assert!(WRITTEN <= DEVICE_BYTES && WRITTEN > 2 * FREE_BYTES) };
    for direct_io in [true, false] {
        for backend in file_backends() {
            for (name, o) in [
                ("buffered", OpenOptions::new()),
                ("dontcache", OpenOptions::new().dontcache(true)),
                (
                    "dontcache emulated",
                    OpenOptions::new().dontcache_emulated(true),
                ),
            ] {
                let what = format!("{name}, {backend}, loop direct-io {direct_io}");
                let Some(failing) = failing_or_skip(&what, direct_io) else {
                    return;
                };
                let (completer, engine) = common::io_target::engine(backend, 8);
                let dev = engine
                    .open(failing.path(), o.read(true).write(true))
                    .expect("open");
                let results = wait_results(&completer, &dev, BioFlags::empty());
                assert_eq!(results.len() as u64, WRITTEN / BS as u64, "{what}");
                let flushed = flush(&dev);
                let back = failing.read_back(WRITTEN);
                let lost = back
                    .chunks(BS)
                    .filter(|c| c.iter().any(|&b| b != FILL))
                    .count();
                assert!(
                    lost > 0,
                    "{what}: the device took everything; the test proves nothing"
                );
                assert!(
                    flushed.is_err(),
                    "{what}: {lost} MiB did not reach the device and the flush returned Ok"
                );
                let seen = dev.writeback_errors();
                assert!(
                    seen.count > 0 && seen.first_errno.is_some(),
                    "{what}: {seen:?}"
                );
                assert!(dev.check_writeback().is_err(), "{what}");
            }
        }
    }
}

#[test]
fn a_wait_writeback_write_gets_its_own_write_back_result() {
    for backend in file_backends() {
        for (name, o) in [
            ("buffered", OpenOptions::new()),
            (
                "dontcache emulated",
                OpenOptions::new().dontcache_emulated(true),
            ),
        ] {
            let what = format!("{name}, {backend}");
            let Some(failing) = failing_or_skip(&what, true) else {
                return;
            };
            let (completer, engine) = common::io_target::engine(backend, 8);
            let dev = engine
                .open(failing.path(), o.read(true).write(true))
                .expect("open");
            let results = wait_results(&completer, &dev, BioFlags::WAIT_WRITEBACK);
            let back = failing.read_back(WRITTEN);
            let mut failed = 0;
            for (offset, r) in &results {
                let on_device = back[*offset as usize..*offset as usize + BS]
                    .iter()
                    .all(|&b| b == FILL);
                match r {
                    Ok(n) => {
                        assert_eq!(*n, BS, "{what}");
                        assert!(
                            on_device,
                            "{what}: the write at {offset} reported success after its write-back, and its data is not on the device"
                        );
                    }
                    Err(_) => failed += 1,
                }
            }
            assert!(
                failed > 0,
                "{what}: no write failed; the test proves nothing"
            );
            // Reporting to the bio consumed nothing: the flush reports too.
            assert!(flush(&dev).is_err(), "{what}");
        }
    }
}

#[test]
fn a_read_only_block_device_is_refused_at_open() {
    let Some(lo) = common::io_target::loop_device_or_skip("read-only open", 1 << 20, None) else {
        return;
    };
    let ro = std::process::Command::new("blockdev")
        .arg("--setro")
        .arg(lo.path())
        .status();
    if !ro.is_ok_and(|s| s.success()) {
        eprintln!("skipping read-only open: blockdev --setro failed");
        return;
    }
    let (_completer, engine) = common::io_target::engine(Backend::Threads, 4);
    let e = engine
        .open(lo.path(), OpenOptions::new().read(true).write(true))
        .expect_err("a write open of a read-only device");
    assert!(matches!(e, OpenError::ReadOnly { .. }), "{e}");
    assert!(e.to_string().contains("read-only"), "{e}");
    engine
        .open(lo.path(), OpenOptions::new().read(true))
        .expect("a read-only open");
    let _ = std::process::Command::new("blockdev")
        .arg("--setrw")
        .arg(lo.path())
        .status();
}
