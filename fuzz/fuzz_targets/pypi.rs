//! PyPI simple pages: PEP 503 HTML and PEP 691 JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;
use unimirror::sync::pypi;

fuzz_target!(|bytes: &[u8]| {
    let page = reqwest::Url::parse("https://pypi.example/simple/demo/").expect("a valid URL");
    let _ = pypi::parse_json(bytes, &page);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = pypi::parse_html(text, &page);
    }
});
