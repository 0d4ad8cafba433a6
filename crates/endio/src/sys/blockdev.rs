//! What the kernel says about a file or a block device: its logical block
//! size, its size, and the alignment direct I/O needs.

use std::io;
use std::os::fd::AsFd;

use rustix::fs::{AtFlags, StatxFlags};
use rustix::ioctl::{self, Getter, Opcode, opcode};

/// `BLKGETSIZE64`: `_IOR(0x12, 114, size_t)`, the size of a block device in
/// bytes (rustix and libc do not name it).
const BLKGETSIZE64: Opcode = opcode::read::<u64>(0x12, 114);

/// `BLKROGET`: `_IO(0x12, 94)`, whether a block device is read-only (an
/// `int` written by the kernel).
const BLKROGET: Opcode = opcode::none(0x12, 94);

/// Whether a block device is read-only (`BLKROGET`: `losetup -r`, a
/// write-protected disk, `blockdev --setro`).
pub fn block_device_read_only(fd: impl AsFd) -> io::Result<bool> {
    // SAFETY: BLKROGET writes one `int` through its argument pointer, which
    // the Getter provides (the opcode carries no size: `_IO(0x12, 94)`).
    let ro = unsafe {
        let getter = Getter::<BLKROGET, libc::c_int>::new();
        ioctl::ioctl(fd, getter)?
    };
    Ok(ro != 0)
}

/// The logical block size of a block device (`BLKSSZGET`): the unit of its
/// offsets and lengths under `O_DIRECT`.
pub fn logical_block_size(fd: impl AsFd) -> io::Result<u32> {
    Ok(rustix::fs::ioctl_blksszget(fd)?)
}

/// The size of a block device in bytes (`BLKGETSIZE64`).
pub fn block_device_size(fd: impl AsFd) -> io::Result<u64> {
    // SAFETY: BLKGETSIZE64 is a getter ioctl that writes one `u64` (the
    // kernel's `size_t` on the 64-bit targets endio builds for, and `u64` by
    // its definition in <linux/fs.h>) into the output the Getter provides.
    let size = unsafe {
        let getter = Getter::<BLKGETSIZE64, u64>::new();
        ioctl::ioctl(fd, getter)?
    };
    Ok(size)
}

/// Direct-I/O alignment as `statx(STATX_DIOALIGN)` reports it (Linux 6.1+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DioAlign {
    /// Required alignment of the buffer's address, in bytes.
    pub mem_align: u32,
    /// Required alignment of file offsets and lengths, in bytes.
    pub offset_align: u32,
}

/// The direct-I/O alignment of the open file `fd`, or `None` when the kernel
/// or the filesystem does not report it (older kernels, or a file that does
/// not support direct I/O at all).
pub fn dio_alignment(fd: impl AsFd) -> io::Result<Option<DioAlign>> {
    let stx = match rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN) {
        Ok(stx) => stx,
        Err(rustix::io::Errno::NOSYS | rustix::io::Errno::INVAL) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let reported = StatxFlags::from_bits_retain(stx.stx_mask).contains(StatxFlags::DIOALIGN);
    if !reported || stx.stx_dio_offset_align == 0 {
        return Ok(None);
    }
    Ok(Some(DioAlign {
        mem_align: stx.stx_dio_mem_align.max(1),
        offset_align: stx.stx_dio_offset_align,
    }))
}

#[cfg(all(test, not(loom), not(shuttle)))]
mod tests {
    use super::*;

    #[test]
    fn blkgetsize64_is_the_documented_number() {
        // <linux/fs.h>: #define BLKGETSIZE64 _IOR(0x12,114,size_t) = 0x80081272
        // on x86_64 and aarch64.
        assert_eq!(BLKGETSIZE64 as u64, 0x8008_1272);
        assert_eq!(BLKROGET as u64, 0x125e);
    }

    #[test]
    fn a_regular_file_is_not_a_block_device() {
        let file = tempfile::tempfile().unwrap();
        assert!(logical_block_size(&file).is_err());
        assert!(block_device_size(&file).is_err());
        assert!(block_device_read_only(&file).is_err());
        // Whatever the filesystem reports, an answer is well formed.
        if let Some(a) = dio_alignment(&file).unwrap() {
            assert!(a.offset_align.is_power_of_two(), "{a:?}");
            assert!(a.mem_align.is_power_of_two(), "{a:?}");
        }
    }
}
