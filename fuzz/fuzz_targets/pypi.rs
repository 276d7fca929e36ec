//! PyPI simple pages: PEP 503 HTML and PEP 691 JSON, and where their file
//! links may point.
#![no_main]
use libfuzzer_sys::fuzz_target;
use unimirror::sync::pypi::{self, FileHosts};

fuzz_target!(|bytes: &[u8]| {
    let page = reqwest::Url::parse("https://pypi.example/simple/demo/").expect("a valid URL");
    let hosts = FileHosts::new(&page, &["files.example:8443".to_string()]).expect("valid hosts");
    let mut dists = pypi::parse_json(bytes, &page).unwrap_or_default();
    if let Ok(text) = std::str::from_utf8(bytes) {
        dists.extend(pypi::parse_html(text, &page).unwrap_or_default());
    }
    for d in dists {
        if hosts.check(&d.url).is_ok() {
            let u = &d.url;
            let origin = (u.scheme(), u.host_str(), u.port_or_known_default());
            assert!(
                origin == ("https", Some("pypi.example"), Some(443))
                    || (u.host_str() == Some("files.example")
                        && u.port_or_known_default() == Some(8443)),
                "a link to {u} passed"
            );
        }
    }
});
