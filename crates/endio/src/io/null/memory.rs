//! The bytes of the null backend's memory devices.

use crate::sync::Mutex;
use std::collections::HashMap;

/// The bytes of a memory device: sparse chunks, zero until written.
#[derive(Debug, Default)]
pub(crate) struct MemStore {
    chunks: Mutex<HashMap<u64, Box<[u8]>>>,
}

const CHUNK: u64 = 64 * 1024;

impl MemStore {
    /// Copies `buf.len()` bytes at `offset` into `buf`.
    pub(crate) fn read(&self, offset: u64, buf: &mut [u8]) {
        let chunks = self.chunks.lock();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let (index, within) = (pos / CHUNK, (pos % CHUNK) as usize);
            let n = (CHUNK as usize - within).min(buf.len() - done);
            match chunks.get(&index) {
                Some(chunk) => buf[done..done + n].copy_from_slice(&chunk[within..within + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
    }

    /// Copies `buf` to `offset`.
    pub(crate) fn write(&self, offset: u64, buf: &[u8]) {
        let mut chunks = self.chunks.lock();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let (index, within) = (pos / CHUNK, (pos % CHUNK) as usize);
            let n = (CHUNK as usize - within).min(buf.len() - done);
            let chunk = chunks
                .entry(index)
                .or_insert_with(|| vec![0u8; CHUNK as usize].into_boxed_slice());
            chunk[within..within + n].copy_from_slice(&buf[done..done + n]);
            done += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memstore_is_sparse_and_spans_chunks() {
        let m = MemStore::default();
        let mut buf = vec![7u8; 100];
        m.read(CHUNK - 50, &mut buf);
        assert!(buf.iter().all(|&b| b == 0));
        let data: Vec<u8> = (0..100u8).collect();
        m.write(CHUNK - 50, &data);
        m.read(CHUNK - 50, &mut buf);
        assert_eq!(buf, data);
        assert_eq!(m.chunks.lock().len(), 2);
    }
}
