//! The configuration parser: any text gives a config or an error naming
//! the file, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use unimirror::config::Config;

fuzz_target!(|text: &str| {
    if let Err(e) = Config::parse(std::path::Path::new("fuzz.toml"), text) {
        assert!(e.to_string().contains("fuzz.toml"), "{e}");
    }
});
