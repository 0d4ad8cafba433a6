//! Verify (as fio's `verify=crc32c`): one block corrupted on disk behind the
//! engine's back must fail the read-side check, naming its offset.

mod common;

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use common::io_target::{backends, disk_dir, engine};
use endio::VerifyProblem;
use endio::{Backend, Bio, BioFlags, OpenOptions, Verifier};

const BS: usize = 4096;
const BLOCKS: u64 = 64;
const BAD: u64 = 37;

#[test]
fn one_corrupted_block_fails_verify_naming_its_offset() {
    let dir = disk_dir();
    for backend in backends() {
        if backend == Backend::Null {
            continue; // its bytes are in memory, not on disk
        }
        for direct in [false, true] {
            let what = format!("{backend} direct={direct}");
            let (completer, engine) = engine(backend, 16);
            let path = dir.path().join(format!("verify-{backend}-{direct}.dat"));
            let dev = engine
                .open(
                    &path,
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .direct(direct),
                )
                .unwrap();
            let seed = 0xdead_beef;
            let verifier = Arc::new(Verifier::new(BS, seed));
            for i in 0..BLOCKS {
                let mut buf = dev.buf(BS);
                verifier.fill(&mut buf, i * BS as u64);
                dev.submit(
                    Bio::write(i * BS as u64, buf, |e| assert_eq!(e.result().unwrap(), BS))
                        .with_flags(BioFlags::COMPLETE_IN_TASK),
                )
                .unwrap();
            }
            dev.submit(Bio::flush(|e| e.result().map(drop).unwrap()))
                .unwrap();
            dev.drain();
            assert!(completer.wait_idle(Duration::from_secs(30)));

            // Flip one byte in the payload of block BAD, behind the engine.
            let bad_offset = BAD * BS as u64;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            let mut byte = [0u8; 1];
            file.read_exact_at(&mut byte, bad_offset + 1000).unwrap();
            byte[0] ^= 0x40;
            file.write_all_at(&byte, bad_offset + 1000).unwrap();
            file.sync_all().unwrap();

            // Read everything back with the check in the (task-context) handlers.
            for i in 0..BLOCKS {
                let v = Arc::clone(&verifier);
                dev.submit(
                    Bio::read(i * BS as u64, dev.buf(BS), move |e| {
                        assert_eq!(e.result().unwrap(), BS);
                        let _ = v.check(e.buf(), e.offset());
                    })
                    .with_flags(BioFlags::COMPLETE_IN_TASK),
                )
                .unwrap();
            }
            dev.drain();
            assert!(completer.wait_idle(Duration::from_secs(30)));
            let stats = verifier.stats();
            assert_eq!(stats.checked_bytes, BLOCKS * BS as u64, "{what}");
            assert_eq!(stats.errors, 1, "{what}: {:?}", verifier.errors());
            let e = verifier.errors()[0];
            assert_eq!(e.offset, bad_offset, "{what}");
            assert_eq!(e.block, BAD);
            assert!(
                matches!(e.problem, VerifyProblem::Checksum { .. }),
                "{what}: {e}"
            );
            let msg = e.to_string();
            assert!(msg.contains(&format!("offset {bad_offset}")), "{msg}");
            assert!(msg.contains("crc32c mismatch"), "{msg}");
        }
    }
}
