//! The daemon's HTTP side (issue #3, being built). So far: the two parsers
//! every request goes through, request paths and the `Range` header, each
//! with exhaustive tests beside it.

pub mod path;
pub mod range;
