//! Counters declared once: from one list of fields follow the snapshot type
//! (plain `u64`s, what users read), its atomic twin (what the hot paths
//! bump, `Relaxed`), the snapshot of the one and the sum of two snapshots.

/// Declares `pub struct $snap` (the snapshot) and `pub(crate) struct
/// $atomic` (one `AtomicU64` per field) with `$atomic::snapshot()` and
/// `$snap::accumulate()`.
macro_rules! counters {
    (
        $(#[$meta:meta])*
        pub struct $snap:ident / $atomic:ident {
            $( $(#[$fmeta:meta])* $field:ident, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
        pub struct $snap {
            $( $(#[$fmeta])* pub $field: u64, )*
        }

        /// The atomic twin of the snapshot type, one counter per field.
        #[derive(Debug, Default)]
        pub(crate) struct $atomic {
            $( pub(crate) $field: ::std::sync::atomic::AtomicU64, )*
        }

        impl $atomic {
            /// Every counter, read one by one (`Relaxed`: statistics).
            #[allow(dead_code)]
            pub(crate) fn snapshot(&self) -> $snap {
                $snap {
                    $( $field: self.$field.load(::std::sync::atomic::Ordering::Relaxed), )*
                }
            }
        }

        impl $snap {
            /// Adds every counter of `other` to this one.
            pub fn accumulate(&mut self, other: &$snap) {
                $( self.$field += other.$field; )*
            }
        }
    };
}

pub(crate) use counters;
