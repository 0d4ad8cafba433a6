//! The `endio` command.

fn main() {}
