//! The PyPI pull-through volume (`proxy = { type = "pypi", … }`) against a
//! PyPI-layout upstream served by a real HTTP server that logs every
//! request: an index on one port, and a file host on another whose paths
//! are the files' BLAKE2b-256 (as files.pythonhosted.org's are). pip and
//! uv install through it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use blake2::Digest;
use unimirror::volume::manifest::Sha256Digest;

use crate::common::*;
use crate::sync::{
    greet_installs, greet_installs_with_hashes_and_pulls_its_dependency, home_block, pypi_upstream,
    set_upstream,
};

/// The fixture: the wheels and sdist `pypi_upstream` builds, laid out on a
/// file host by their BLAKE2b-256, and an index linking them there.
struct PypiUpstream {
    /// The built files (`<name>` and `<name>.metadata`).
    built: PathBuf,
    index_root: PathBuf,
    files_root: PathBuf,
    index: Upstream,
    files: Upstream,
}

impl PypiUpstream {
    fn new(dir: &Path) -> PypiUpstream {
        let built = pypi_upstream(&dir.join("build")).join("files");
        let (files_root, index_root) = (dir.join("filehost"), dir.join("index"));
        fs::create_dir_all(&files_root).unwrap();
        fs::create_dir_all(&index_root).unwrap();
        // Both serve what is on disk at each request: the pages are
        // written once the file host's port is known.
        let up = PypiUpstream {
            files: Upstream::logged(&files_root, &dir.join("files.log")),
            index: Upstream::logged(&index_root, &dir.join("index.log")),
            built,
            index_root,
            files_root,
        };
        up.write_index(&["greet", "greet-lib"], "5");
        up
    }

    /// The sdist's name (`greet-lib-1.0.tar.gz` or `greet_lib-1.0.tar.gz`,
    /// by the setuptools that built it).
    fn sdist(&self) -> String {
        fs::read_dir(&self.built)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .find(|n| n.ends_with(".tar.gz"))
            .expect("the fixture has an sdist")
    }

    /// The file host path of a built file.
    fn path_of(&self, name: &str) -> String {
        let bytes = fs::read(self.built.join(name)).unwrap();
        let hex = hex::encode(blake2::Blake2b::<blake2::digest::consts::U32>::digest(
            &bytes,
        ));
        format!("packages/{}/{}/{}/{name}", &hex[..2], &hex[2..4], &hex[4..])
    }

    /// Writes each project's page (HTML, as a static server gives it) with
    /// its `serial`, linking the file host; copies the files there.
    fn write_index(&self, projects: &[&str], serial: &str) {
        let mut names: Vec<String> = fs::read_dir(&self.built)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".metadata"))
            .collect();
        names.sort();
        for project in projects {
            let prefix = project.replace('-', "_");
            let mut html = String::from("<!DOCTYPE html><html><body>\n");
            for f in names.iter().filter(|f| {
                let stem = f.replace('-', "_");
                stem.starts_with(&format!("{prefix}_1.0"))
                    || stem.starts_with(&format!("{prefix}-1.0"))
            }) {
                let path = self.path_of(f);
                let at = self.files_root.join(&path);
                fs::create_dir_all(at.parent().unwrap()).unwrap();
                fs::copy(self.built.join(f), &at).unwrap();
                let sha = Sha256Digest::of(&fs::read(self.built.join(f)).unwrap());
                let mut attrs = " data-requires-python=\"&gt;=3.8\"".to_string();
                let meta = self.built.join(format!("{f}.metadata"));
                if meta.exists() {
                    fs::copy(&meta, self.files_root.join(format!("{path}.metadata"))).unwrap();
                    let msha = Sha256Digest::of(&fs::read(&meta).unwrap());
                    attrs += &format!(" data-dist-info-metadata=\"sha256={msha}\"");
                }
                html += &format!(
                    "<a href=\"{}{path}#sha256={sha}\"{attrs}>{f}</a><br>\n",
                    self.files.url()
                );
            }
            html += "</body></html>\n";
            let dir = self.index_root.join("simple").join(project);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("index.html"), html).unwrap();
            fs::write(dir.join("serial"), serial).unwrap();
        }
    }

    /// Config lines of a proxy volume `pypi` of this upstream.
    fn volume(&self, extra: &str) -> String {
        format!(
            "\n[volumes.pypi]\nproxy = {{ type = \"pypi\", url = \"{}simple/\", files_url = \"{}\", verify = \"blake2b-path\"{extra} }}\n",
            self.index.url(),
            self.files.url()
        )
    }
}

/// An env with the proxy volume `pypi` (its table's `extra` keys added).
fn proxy_env(up: &PypiUpstream, extra: &str) -> Env {
    let env = Env::new();
    let text = fs::read_to_string(env.config()).unwrap();
    fs::write(env.config(), text + &up.volume(extra)).unwrap();
    env
}

#[test]
fn pip_and_uv_install_through_the_proxy_each_upstream_file_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let up = PypiUpstream::new(dir.path());
    let env = proxy_env(&up, "");
    let d = Daemon::start(&env);
    let index = format!("http://{}/pypi/simple/", d.addr);

    greet_installs_with_hashes_and_pulls_its_dependency(&env, &index, &up.built);
    // uv, the second client, from the same proxy.
    uv_installs_greet(env.path(), &index);
    // The home page's pip.conf for the proxy, used as it is.
    let conf = env.path().join("pip.conf");
    fs::write(&conf, home_block(&d.get("/").text(), "pypi")).unwrap();
    greet_installs(&env, "site-conf", &conf, &[]);

    // Each page and each file was read from the upstream once, for both
    // clients and every install.
    for page in ["/simple/greet/", "/simple/greet-lib/"] {
        assert_eq!(up.index.requests("GET", page), 1, "{page}");
    }
    for wheel in [
        "greet-1.0-py3-none-any.whl",
        "greet_lib-1.0-py3-none-any.whl",
    ] {
        assert_eq!(up.files.requests("GET", &format!("/{wheel}")), 1, "{wheel}");
    }
    // Nothing went to the origin.
    assert!(!env.origin().join("pypi").exists());
    assert!(
        d.metric(
            "unimirror_fills_total",
            &[("volume", "pypi"), ("source", "upstream")]
        ) >= 2.0
    );

    // The root page lists nothing, and says so.
    let root = d.get("/pypi/simple/");
    assert_eq!(root.status, 200);
    assert!(root.text().contains("not listed"), "{}", root.text());
    // A name that is not normalized is redirected to the one that is.
    let r = d.get("/pypi/simple/Greet_Lib/");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/pypi/simple/greet-lib/"));
}

#[test]
fn a_file_is_verified_by_its_path_alone_and_a_corrupt_one_never_served_whole() {
    let dir = tempfile::tempdir().unwrap();
    let up = PypiUpstream::new(dir.path());
    let env = proxy_env(&up, "");
    let d = Daemon::start(&env);
    let sdist = up.sdist();
    let path = up.path_of(&sdist);
    let good = fs::read(up.built.join(&sdist)).unwrap();

    // No page was asked for: the path's BLAKE2b-256 is the check.
    let r = d.get(&format!("/pypi/{path}"));
    assert_eq!((r.status, r.body == good), (200, true));
    assert_eq!(up.index.requests("GET", "/simple/greet-lib/"), 0);
    assert_eq!(up.files.requests("GET", &format!("/{sdist}")), 1);
    let again = d.get(&format!("/pypi/{path}"));
    assert_eq!(again.body, good);
    assert_ne!(again.header("x-cache"), Some("miss"));
    assert_eq!(up.files.requests("GET", &format!("/{sdist}")), 1);

    // The wheel, replaced on the file host by other bytes of its size.
    let wheel = "greet-1.0-py3-none-any.whl";
    let wpath = up.path_of(wheel);
    let wgood = fs::read(up.built.join(wheel)).unwrap();
    let mut bad = wgood.clone();
    bad[wgood.len() / 2] ^= 0x55;
    fs::write(up.files_root.join(&wpath), &bad).unwrap();
    for attempt in 1..=2 {
        let r = d.get(&format!("/pypi/{wpath}"));
        assert!(
            !(r.status == 200 && r.complete()),
            "attempt {attempt}: a file not matching its path was served whole"
        );
    }
    assert_eq!(
        up.files.requests("GET", &format!("/{wheel}")),
        2,
        "nothing cached"
    );
    assert_eq!(
        d.metric("unimirror_integrity_failures_total", &[("where", "origin")]),
        2.0
    );
    // A path whose digest names no file the host has: 404.
    let missing = format!("packages/00/11/{}/nothing-1.0.tar.gz", "2".repeat(60));
    assert_eq!(d.get(&format!("/pypi/{missing}")).status, 404);
}

#[test]
fn with_page_sha256_a_file_is_fetched_only_once_its_page_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let up = PypiUpstream::new(dir.path());
    let env = proxy_env(&up, "");
    let text = fs::read_to_string(env.config()).unwrap();
    fs::write(
        env.config(),
        text.replace("verify = \"blake2b-path\"", "verify = \"page-sha256\""),
    )
    .unwrap();
    let d = Daemon::start(&env);
    let wheel = "greet-1.0-py3-none-any.whl";
    // Asked for first: its project's page is fetched, names it, and the
    // file is checked against the page's sha256.
    let r = d.get(&format!("/pypi/{}", up.path_of(wheel)));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, fs::read(up.built.join(wheel)).unwrap());
    assert_eq!(up.index.requests("GET", "/simple/greet/"), 1);
    // A path no page names is not fetched at all, whatever its shape.
    let stray = format!(
        "packages/00/11/{}/greet-9.9-py3-none-any.whl",
        "2".repeat(60)
    );
    assert_eq!(d.get(&format!("/pypi/{stray}")).status, 404);
    assert_eq!(up.files.requests("GET", "greet-9.9-py3-none-any.whl"), 0);
    assert_eq!(up.files.requests("HEAD", "greet-9.9-py3-none-any.whl"), 0);
}

/// Waits out a page's freshness: the passing of time is what is tested.
fn let_expire(ttl: Duration) {
    std::thread::sleep(ttl + Duration::from_millis(100));
}

#[test]
fn pages_are_revalidated_refuse_older_serials_and_are_served_stale_while_the_upstream_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = PypiUpstream::new(dir.path());
    let ttl = Duration::from_secs(1);
    let env = proxy_env(&up, ", revalidate_after = \"1s\", stale_if_error = \"3s\"");
    let d = Daemon::start(&env);
    let page = "/pypi/simple/greet-lib/";
    let sdist = &up.sdist();

    let first = d.get(page);
    assert_eq!((first.status, first.header("x-cache")), (200, Some("miss")));
    assert!(first.text().contains(sdist));
    assert_eq!(first.header("x-pypi-last-serial"), Some("5"));
    let hot = d.get(page);
    assert_eq!(hot.header("x-cache"), Some("hit-memory"));
    assert_eq!(up.index.requests("GET", "/simple/greet-lib/"), 1);
    // PEP 691 JSON from the same upstream fetch, links at this volume.
    let json = d.request(
        "GET",
        page,
        &[("accept", "application/vnd.pypi.simple.v1+json")],
    );
    assert_eq!(
        json.header("content-type"),
        Some("application/vnd.pypi.simple.v1+json")
    );
    let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    let urls: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["url"].as_str().unwrap())
        .collect();
    assert!(
        urls.iter().all(|u| u.starts_with("/pypi/packages/")),
        "{urls:?}"
    );
    assert_eq!(up.index.requests("GET", "/simple/greet-lib/"), 1);

    // Past its freshness: asked again conditionally, answered 304.
    let_expire(ttl);
    let r = d.get(page);
    assert_eq!((r.status, r.body == first.body), (200, true));
    let log = fs::read_to_string(up.index.log.as_ref().unwrap()).unwrap();
    assert!(log.contains("GET /simple/greet-lib/ 304"), "{log}");

    // A stale CDN copy: the sdist gone and a lower serial. Refused.
    let html = up.index_root.join("simple/greet-lib/index.html");
    let text = fs::read_to_string(&html).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.contains(sdist))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&html, &without).unwrap();
    fs::write(up.index_root.join("simple/greet-lib/serial"), "3").unwrap();
    touch_later(&html);
    let_expire(ttl);
    let r = d.get(page);
    assert!(
        r.text().contains(sdist),
        "the older page replaced the kept one"
    );
    assert_eq!(r.header("x-unimirror-stale"), Some("upstream-serial-older"));
    assert_eq!(
        d.metric(
            "unimirror_proxy_pages_refused_total",
            &[("volume", "pypi"), ("reason", "older-serial")]
        ),
        1.0
    );
    // A newer serial is taken.
    fs::write(up.index_root.join("simple/greet-lib/serial"), "7").unwrap();
    touch_later(&html);
    let_expire(ttl);
    let r = d.get(page);
    assert!(!r.text().contains(sdist), "{}", r.text());
    assert_eq!(r.header("x-pypi-last-serial"), Some("7"));

    // Upstream down: the kept page, marked stale, within stale_if_error;
    // then 502.
    let wheel = "greet_lib-1.0-py3-none-any.whl";
    let cached = d.get(&format!("/pypi/{}", up.path_of(wheel)));
    assert_eq!(cached.status, 200);
    up.index.stop();
    up.files.stop();
    let_expire(ttl);
    let r = d.get(page);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-unimirror-stale"), Some("upstream-unreachable"));
    assert_eq!(r.header("x-cache"), Some("stale"));
    // A cached file is still served; an uncached one is a 502.
    assert_eq!(d.get(&format!("/pypi/{}", up.path_of(wheel))).status, 200);
    let other = d.get(&format!(
        "/pypi/{}",
        up.path_of("greet-1.0-py3-none-any.whl")
    ));
    assert_eq!(other.status, 502, "{}", other.text());
    // Past stale_if_error (3 s after the page went stale).
    std::thread::sleep(Duration::from_secs(3));
    let r = d.get(page);
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("upstream"), "{}", r.text());
}

/// Sets a file's mtime 10 s later than now, so an `If-Modified-Since` of
/// the earlier copy does not match it.
fn touch_later(path: &Path) {
    let later = std::time::SystemTime::now() + Duration::from_secs(10);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(later)
        .unwrap();
}

#[test]
fn a_kept_page_survives_a_restart_in_a_pack_of_the_disk_tier_checked_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let up = PypiUpstream::new(dir.path());
    let env = proxy_env(&up, "");
    // Pages an earlier build kept one file each are removed at start.
    let old = env.path().join("cache/docs-v1/ab/cd/ef");
    fs::create_dir_all(old.parent().unwrap()).unwrap();
    fs::write(&old, b"p1 an old page").unwrap();
    let d = Daemon::start(&env);
    assert!(!env.path().join("cache/docs-v1").exists());
    let first = d.get("/pypi/simple/greet/");
    assert_eq!(first.status, 200);
    // The page is written to the disk tier after the answer, appended to
    // a pack: a record's lines, then the page.
    let cache = env.path().join("cache");
    let files_under = |sub: &str| {
        walk(&cache.join(sub))
            .into_iter()
            .filter(|p| p.is_file())
            .collect::<Vec<_>>()
    };
    let packed = |pack: &Path| fs::metadata(pack).map_or(0, |m| m.len());
    wait_for("the page in a pack", 10, || {
        files_under("docs-v2")
            .first()
            .is_some_and(|p| packed(p) > 0)
    });
    assert_eq!(
        (
            files_under("docs-v2").len(),
            files_under("plain-v1").len(),
            files_under("content-v2").len()
        ),
        (1, 0, 0)
    );
    let pack = files_under("docs-v2").pop().unwrap();
    let text = fs::read(&pack).unwrap();
    assert!(text.starts_with(b"d2 "), "{:?}", &text[..20]);
    drop(d);
    let d = Daemon::start(&env);
    let r = d.get("/pypi/simple/greet/");
    assert_eq!(
        (r.header("x-cache"), r.body == first.body),
        (Some("hit-disk"), true)
    );
    assert_eq!(up.index.requests("GET", "/simple/greet/"), 1);
    drop(d);

    // A page whose bytes no longer match its record's line is dropped, and
    // the page fetched again and kept again, in a new pack (the one found
    // at start is not appended to).
    let mut bytes = fs::read(&pack).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x20;
    fs::write(&pack, &bytes).unwrap();
    let d = Daemon::start(&env);
    let r = d.get("/pypi/simple/greet/");
    assert_eq!(
        (r.status, r.header("x-cache"), r.body == first.body),
        (200, Some("miss"), true)
    );
    assert_eq!(up.index.requests("GET", "/simple/greet/"), 2);
    wait_for("the page kept again", 10, || {
        files_under("docs-v2")
            .iter()
            .any(|p| *p != pack && packed(p) > 0)
    });
    wait_for("the dropped page logged", 10, || {
        d.log_text().contains("a kept page is not whole")
    });
}

#[test]
fn fifty_clients_on_a_cold_page_and_a_cold_file_read_the_upstream_once() {
    let dir = tempfile::tempdir().unwrap();
    let up = PypiUpstream::new(dir.path());
    let env = proxy_env(&up, "");
    let d = Daemon::start(&env);
    let addr = d.addr;
    let wheel = "greet-1.0-py3-none-any.whl";
    let want = fs::read(up.built.join(wheel)).unwrap();
    for path in [
        "/pypi/simple/greet/".to_string(),
        format!("/pypi/{}", up.path_of(wheel)),
    ] {
        let clients: Vec<_> = (0..50)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || http(addr, "GET", &path, &[]).unwrap())
            })
            .collect();
        let bodies: Vec<HttpResponse> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        assert!(
            bodies
                .iter()
                .all(|r| r.status == 200 && r.body == bodies[0].body)
        );
        if path.ends_with(".whl") {
            assert_eq!(bodies[0].body, want);
        }
    }
    assert_eq!(up.index.requests("GET", "/simple/greet/"), 1);
    assert_eq!(up.files.requests("GET", &format!("/{wheel}")), 1);
}

#[test]
fn a_released_volume_falls_back_to_the_proxy_for_what_it_lacks_and_never_shadowed() {
    let dir = tempfile::tempdir().unwrap();
    let up = PypiUpstream::new(dir.path());
    // The released volume mirrors greet-lib only, synced from the same
    // build served as an index of its own.
    let mirror = Upstream::serve(up.built.parent().unwrap());
    let env = proxy_env(&up, "");
    let text = fs::read_to_string(env.config()).unwrap();
    fs::write(
        env.config(),
        text.replace("[volumes.vol]\n", "[volumes.vol]\nfallback = \"pypi\"\n"),
    )
    .unwrap();
    set_upstream(
        &env,
        &format!(
            "type = \"pypi\"\nurl = \"{}simple/\"\nprojects = [\"greet-lib\"]",
            mirror.url()
        ),
    );
    env.update_ok(&["sync", "vol"]);
    let d = Daemon::start(&env);

    // In the release: the release answers, the proxy is not asked.
    let lib = d.get("/vol/simple/greet-lib/");
    assert_eq!(lib.status, 200);
    assert!(lib.header("x-unimirror-release").is_some());
    assert_eq!(up.index.requests("GET", "/simple/greet-lib/"), 0);
    // Not in it: the proxy answers, its links at the proxy's files.
    let greet = d.get("/vol/simple/greet/");
    assert_eq!(
        (greet.status, greet.header("x-cache")),
        (200, Some("fallback"))
    );
    assert!(greet.header("x-unimirror-release").is_none());
    assert!(
        greet.text().contains("href=\"/pypi/packages/"),
        "{}",
        greet.text()
    );
    assert_eq!(
        d.metric(
            "unimirror_requests_total",
            &[
                ("volume", "vol"),
                ("outcome", "fallback"),
                ("status", "2xx")
            ]
        ),
        1.0
    );
    // pip resolves both through the released volume's index.
    let index = format!("http://{}/vol/simple/", d.addr);
    greet_installs_with_hashes_and_pulls_its_dependency(&env, &index, &up.built);
    assert_eq!(
        up.index.requests("GET", "/simple/greet-lib/"),
        0,
        "the release was shadowed"
    );
    // What neither has is a 404.
    assert_eq!(d.get("/vol/simple/no-such-project/").status, 404);
}

/// An upstream that takes connections and never says a word.
fn silent_upstream() -> Upstream {
    let script = r#"
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(128)
print("listening on port", s.getsockname()[1], flush=True)
held = []
while True:
    held.append(s.accept()[0])
"#;
    Upstream::python(script, &[])
}

#[test]
fn a_silent_upstream_costs_a_page_or_a_file_the_origin_timeout_and_then_a_502() {
    let silent = silent_upstream();
    let env = Env::new();
    let text = fs::read_to_string(env.config()).unwrap();
    fs::write(
        env.config(),
        text + &format!(
            "\n[volumes.pypi]\nproxy = {{ type = \"pypi\", url = \"{0}simple/\", files_url = \"{0}\", verify = \"blake2b-path\" }}\n",
            silent.url()
        ),
    )
    .unwrap();
    let d = Daemon::start_with(
        &env,
        &DaemonOpts {
            daemon: "origin_timeout = \"2s\"\n".into(),
            ..DaemonOpts::default()
        },
    );
    let page = d.get("/pypi/simple/greet/");
    assert_eq!(page.status, 502, "{}", page.text());
    let why = page.text();
    assert!(
        why.contains("upstream") && (why.contains("timed out") || why.contains("no answer")),
        "{why}"
    );
    let file = format!("/pypi/packages/00/11/{}/greet-1.0.tar.gz", "2".repeat(60));
    let r = d.get(&file);
    assert_eq!(r.status, 502, "{}", r.text());
    // The daemon is still answering everything else meanwhile.
    assert_eq!(d.get("/pypi/simple/").status, 200);
}
