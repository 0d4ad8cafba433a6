//! What the examples share: reading a size from the command line.

/// A size as the examples take it: bytes, or a whole number of KiB, MiB or
/// GiB with a `k`, `m` or `g` suffix (`4k`, `1m`, `1g`).
pub(crate) fn size(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    let (digits, shift) = match lower.as_bytes().last() {
        Some(b'k') => (&lower[..lower.len() - 1], 10),
        Some(b'm') => (&lower[..lower.len() - 1], 20),
        Some(b'g') => (&lower[..lower.len() - 1], 30),
        _ => (&lower[..], 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s} is not a size (like 4096, 4k, 1m, 1g)"))
}
