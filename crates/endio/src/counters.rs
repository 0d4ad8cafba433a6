//! Counters declared once: from one list of fields follow the snapshot type
//! (plain `u64`s, what users read), its atomic twin (what the hot paths
//! bump), the snapshot of the one and the sum of two snapshots.
//!
//! Two forms:
//!
//! - `pub struct Snap / Atomic { field, ... }`: one atomic twin, every field
//!   a sum, read with `Relaxed`.
//! - `pub struct Snap { Group { field: kind, ... } ... }`: the fields come in
//!   groups, one atomic struct per group (so that each can sit on the cache
//!   line of the threads that write it), and each field says how two
//!   snapshots combine: `sum` adds, `max` takes the larger. The snapshot
//!   lists the fields in declaration order, groups one after the other. Its
//!   atomics are the sync facade's, so the model checkers see them.

/// Declares the snapshot struct `$snap` with `$snap::accumulate()` and its
/// atomic side; see the module docs for the two forms.
macro_rules! counters {
    (@combine sum, $a:expr, $b:expr) => {
        $a + $b
    };
    (@combine max, $a:expr, $b:expr) => {
        ::std::cmp::max($a, $b)
    };
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
    (
        $(#[$meta:meta])*
        pub struct $snap:ident {
            $(
                $(#[$gmeta:meta])*
                $group:ident {
                    $( $(#[$fmeta:meta])* $field:ident: $kind:ident, )*
                }
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
        pub struct $snap {
            $( $( $(#[$fmeta])* pub $field: u64, )* )*
        }

        $(
            $(#[$gmeta])*
            #[derive(Debug, Default)]
            pub(crate) struct $group {
                $( pub(crate) $field: $crate::sync::AtomicU64, )*
            }

            impl $group {
                /// Reads this group's counters into `snapshot`, one by one,
                /// with Acquire: a counter its writer bumps with Release
                /// after bumping others is then never ahead of those others
                /// when they are read after it. The caller orders the groups.
                pub(crate) fn read_into(&self, snapshot: &mut $snap) {
                    $( snapshot.$field = self.$field.load($crate::sync::Ordering::Acquire); )*
                }
            }
        )*

        impl $snap {
            /// Adds `other` into this one: sums add up, maxima take the
            /// larger.
            #[allow(clippy::assign_op_pattern)]
            pub fn accumulate(&mut self, other: &$snap) {
                $( $(
                    self.$field =
                        $crate::counters::counters!(@combine $kind, self.$field, other.$field);
                )* )*
            }
        }
    };
}

pub(crate) use counters;
