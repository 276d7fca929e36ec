//! The daemon's batched log output, as the command lines set it up: it
//! lives in [`crate::serve::log`], beside the access log that writes most
//! of its lines.

pub use crate::serve::log::{Batched, LineWriter, flush, set_json};
