//! One I/O as a future: 512 concurrent writes and reads under tokio's
//! multi-thread runtime read back what was written on every backend; a
//! refused I/O resolves at once with the error and its buffer; a future
//! does nothing until polled.

mod common;

use std::io;
use std::time::Duration;

use common::io_target::{backends, disk_dir, engine};
use endio::{Backend, Buf, OpenOptions};

const TASKS: u64 = 512;
const BLOCK: usize = 4096;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn block(i: u64) -> Vec<u8> {
    (0..BLOCK).map(|j| (i as u8) ^ (j as u8) ^ 0x5a).collect()
}

#[test]
fn hundreds_of_concurrent_ios_under_tokio_read_back() {
    let dir = disk_dir();
    let rt = runtime();
    for backend in backends() {
        let (_completer, engine) = engine(backend, 64);
        for direct in [false, true] {
            let path = dir.path().join(format!("async-{backend}-{direct}"));
            let dev = engine
                .open(
                    &path,
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .direct(direct)
                        .size(TASKS * BLOCK as u64),
                )
                .unwrap();
            rt.block_on(async {
                let writes: Vec<_> = (0..TASKS)
                    .map(|i| {
                        let dev = dev.clone();
                        tokio::spawn(async move {
                            let mut buf = dev.buf(BLOCK);
                            buf.copy_from_slice(&block(i));
                            let (n, buf) = dev.write_async(buf, i * BLOCK as u64).await;
                            assert_eq!(n.expect("write"), BLOCK);
                            assert_eq!(buf.len(), BLOCK, "the buffer comes back");
                        })
                    })
                    .collect();
                for w in writes {
                    w.await.expect("write task");
                }
                let (flushed, _) = dev.sync_async().await;
                flushed.expect("flush");
                let reads: Vec<_> = (0..TASKS)
                    .map(|i| {
                        let dev = dev.clone();
                        tokio::spawn(async move {
                            let (n, buf) = dev.read_async(dev.buf(BLOCK), i * BLOCK as u64).await;
                            assert_eq!(n.expect("read"), BLOCK);
                            assert!(buf[..] == block(i)[..], "block {i} differs");
                        })
                    })
                    .collect();
                for r in reads {
                    r.await.expect("read task");
                }
            });
            // A future resolves when its handler has run, which may be a
            // moment before the completing thread counts the I/O out.
            assert!(
                dev.drain_timeout(Duration::from_secs(10)),
                "{backend}: every I/O completed"
            );
        }
    }
}

#[test]
fn a_refused_io_resolves_with_the_error_and_its_buffer() {
    let dir = disk_dir();
    let rt = runtime();
    for backend in backends() {
        let (_completer, engine) = engine(backend, 8);
        let dev = engine
            .open(
                dir.path().join(format!("refused-{backend}")),
                OpenOptions::new().read(true).create(true).write(true),
            )
            .unwrap();
        let (res, buf) = rt.block_on(dev.write_async(Buf::empty(), 0));
        let e = res.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{backend}: {e}");
        assert!(e.to_string().contains("zero-length"), "{e}");
        assert!(buf.is_empty());

        // A memory device exists only while open: reopen files only.
        if backend != Backend::Null {
            let ro = engine
                .open(dev.path(), OpenOptions::new().read(true))
                .unwrap();
            let (res, buf) = rt.block_on(ro.write_async(Buf::from(vec![3u8; 512]), 0));
            assert_eq!(res.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
            assert_eq!(&buf[..], &[3u8; 512][..], "the data comes back");
        }
    }
}

#[test]
fn a_future_submits_nothing_until_polled() {
    let (_completer, engine) = engine(Backend::Null, 8);
    let dev = engine
        .open(
            "/nonexistent/endio-async",
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .size(1 << 20),
        )
        .unwrap();
    let pending = dev.write_async(Buf::from(vec![9u8; 4096]), 0);
    std::thread::sleep(Duration::from_millis(20));
    let mut back = vec![0u8; 4096];
    dev.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(
        back,
        vec![0u8; 4096],
        "an unpolled write changed the device"
    );
    let (n, _) = runtime().block_on(pending);
    assert_eq!(n.unwrap(), 4096);
    dev.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(back, vec![9u8; 4096]);
}
