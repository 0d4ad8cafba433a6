//! Explicit-state model checking of the task-context bio completion design.
//!
//! This crate will hold a breadth-first explicit-state checker of the kernel
//! design posted as "block: add task-context bio completion infrastructure"
//! (v6, the fixed v6 and the merged version) and of endio's own protocol, so
//! that the six questions of the seed's review are settled mechanically rather
//! than by argument. It is empty until that work lands.
