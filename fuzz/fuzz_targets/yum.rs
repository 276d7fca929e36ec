//! yum metadata: `repomd.xml` and a streamed `primary.xml`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use unimirror::sync::yum;

fuzz_target!(|bytes: &[u8]| {
    let _ = yum::parse_repomd(bytes);
    let _ = yum::parse_primary(std::io::BufReader::new(bytes));
});
