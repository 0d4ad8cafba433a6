//! Blocking positional I/O (`write_all_at`, `read_exact_at`, `sync_data`)
//! reads back what it wrote on every backend and mode (buffered, dontcache,
//! `O_DIRECT` with unaligned slices), is refused in atomic context with
//! `WouldBlock`, and turns a refused bio into an `io::Error` that names the
//! fix and keeps the bio.

mod common;

use std::io;

use common::io_target::{backends, disk_dir, engine};
use endio::{Backend, Device, Engine, OpenOptions, SubmitError, SubmitErrorKind, context};

const SIZE: usize = 3 << 20;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i >> 12) as u8)
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Buffered,
    Dontcache,
    Direct,
}

fn open(engine: &Engine, backend: Backend, mode: Mode, dir: &std::path::Path) -> Device {
    let path = dir.join(format!("{backend}-{mode:?}"));
    let opts = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .size(16 << 20);
    let opts = match mode {
        Mode::Buffered => opts,
        Mode::Dontcache => opts.dontcache(true),
        Mode::Direct => opts.direct(true),
    };
    engine
        .open(&path, opts)
        .unwrap_or_else(|e| panic!("{backend} {mode:?}: {e}"))
}

#[test]
fn what_is_written_reads_back_in_every_mode_and_backend() {
    let dir = disk_dir();
    for backend in backends() {
        let (_c, engine) = engine(backend, 16);
        for mode in [Mode::Buffered, Mode::Dontcache, Mode::Direct] {
            let dev = open(&engine, backend, mode, dir.path());
            // More than one 8 MiB call's worth is not needed to loop: a
            // slice that starts one byte into a vector is unaligned for
            // O_DIRECT, and endio must bounce it.
            let data = pattern(SIZE + 1, backend as u8 ^ mode as u8);
            let unaligned = &data[1..];
            let offset = 1 << 20;
            dev.write_all_at(unaligned, offset)
                .unwrap_or_else(|e| panic!("{backend} {mode:?}: write: {e}"));
            dev.sync_data()
                .unwrap_or_else(|e| panic!("{backend} {mode:?}: sync_data: {e}"));
            dev.sync_all()
                .unwrap_or_else(|e| panic!("{backend} {mode:?}: sync_all: {e}"));
            let mut back = vec![0u8; SIZE + 1];
            dev.read_exact_at(&mut back[1..], offset)
                .unwrap_or_else(|e| panic!("{backend} {mode:?}: read: {e}"));
            assert!(
                back[1..] == *unaligned,
                "{backend} {mode:?}: read back differs"
            );
            // A partial read at a new place sees the same bytes.
            let mut page = vec![0u8; 4096];
            assert_eq!(dev.read_at(&mut page, offset + 8192).unwrap(), 4096);
            assert_eq!(page, unaligned[8192..8192 + 4096], "{backend} {mode:?}");
        }
    }
}

#[test]
fn a_read_past_the_end_of_a_file_is_unexpected_eof() {
    let dir = disk_dir();
    for backend in [Backend::Threads, Backend::Uring] {
        if !backends().contains(&backend) {
            continue;
        }
        let (_c, engine) = engine(backend, 8);
        let path = dir.path().join(format!("eof-{backend}"));
        let dev = engine
            .open(
                &path,
                OpenOptions::new().read(true).write(true).create(true),
            )
            .unwrap();
        dev.write_all_at(&[7u8; 1000], 0).unwrap();
        let mut buf = vec![0u8; 4096];
        assert_eq!(dev.read_at(&mut buf, 0).unwrap(), 1000, "{backend}");
        assert_eq!(&buf[..1000], &[7u8; 1000][..]);
        assert_eq!(dev.read_at(&mut buf, 1000).unwrap(), 0, "{backend}");
        let e = dev.read_exact_at(&mut buf, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{backend}: {e}");
    }
}

#[test]
fn atomic_context_is_refused_with_would_block_and_the_fix() {
    let dir = disk_dir();
    for backend in backends() {
        let (_c, engine) = engine(backend, 8);
        let dev = open(&engine, backend, Mode::Buffered, dir.path());
        let _atomic = context::atomic();
        let mut buf = [0u8; 512];
        for e in [
            dev.write_all_at(&buf, 0).unwrap_err(),
            dev.read_at(&mut buf, 0).unwrap_err(),
            dev.sync_data().unwrap_err(),
        ] {
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{backend}: {e}");
            assert!(e.to_string().contains("task context"), "{backend}: {e}");
        }
        assert_eq!(dev.in_flight(), 0, "nothing was submitted");
    }
}

#[test]
fn a_refused_bio_comes_back_inside_the_io_error() {
    let dir = disk_dir();
    for backend in backends() {
        let (_c, engine) = engine(backend, 8);
        let dev = open(&engine, backend, Mode::Direct, dir.path());
        let lbs = u64::from(dev.logical_block_size());
        // An O_DIRECT write at an offset that is not a block multiple.
        let e = dev.write_all_at(&[1u8; 4096], lbs / 2).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{backend}: {e}");
        let refused = e
            .into_inner()
            .expect("the SubmitError is inside")
            .downcast::<SubmitError>()
            .expect("a SubmitError");
        assert_eq!(refused.kind(), SubmitErrorKind::UnalignedOffset);
        assert!(refused.message().contains("logical block"), "{refused}");
        assert_eq!(refused.into_bio().offset(), lbs / 2);

        // A memory device exists only while open: reopen files only.
        if backend != Backend::Null {
            let ro = engine
                .open(dev.path(), OpenOptions::new().read(true))
                .unwrap();
            let e = ro.write_at(&[1u8; 512], 0).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{backend}: {e}");
        }
    }
}
