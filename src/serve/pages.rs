//! The daemon's own pages: `/` (volumes and client settings), `/healthz`,
//! `/readyz`, `/metrics`, and the `/-/` namespace (`/-/keys/<volume>.gpg`:
//! the key a volume's metadata was verified with; `/-/api/v1/`: the status
//! API, in `api`).

use std::time::SystemTime;

use hyper::header::{self, HeaderMap};
use hyper::{Response, StatusCode};

use super::body::{self, Body};
use super::daemon::{Daemon, Volume, VolumeKind};
use super::path::CleanPath;
use super::reply::{OWN_PAGE_POLICY, SHORT, text};
use crate::config::{AptUpstream, Upstream, YumUpstream};
use crate::html::escape;

/// URL paths the daemon answers itself (besides `/`, the volume list); no
/// volume's prefix may take them. `/-` is the daemon's namespace for what
/// comes later (keys now; an API), so that adding a page never takes a
/// path a volume could have.
pub const OWN_PATHS: &[&str] = &["/metrics", "/healthz", "/readyz", "/-"];

/// Larger than any OpenPGP public key file (a key with many signatures is
/// tens of KiB): a path configured by mistake is not served whole.
const MAX_KEY_FILE: u64 = 1 << 20;

/// The response for one of the daemon's own paths, if `path` is one.
pub async fn own_page(
    daemon: &Daemon,
    path: &CleanPath,
    headers: &HeaderMap,
    head: bool,
) -> Option<Response<Body>> {
    // A one-segment path is its own decoded form (segments hold no `/`).
    let page = match path.as_bytes() {
        p if p == b"-" || p.starts_with(b"-/") => namespace(daemon, path).await,
        b"" => html(home(daemon, headers)),
        b"healthz" => text(StatusCode::OK, "ok\n"),
        b"readyz" => match ready(daemon).await {
            None => text(StatusCode::OK, "ready\n"),
            Some(why) => {
                // Load balancers ask often; a drain was logged once.
                if !daemon.draining() {
                    tracing::warn!("not ready: {why}");
                }
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("not ready: {why}\n"),
                )
            }
        },
        b"metrics" => {
            // Where no load balancer asks /readyz, each scrape does, so
            // that `unimirror_ready` (and its alert) follows the daemon.
            ready(daemon).await;
            daemon.cache.update_gauges();
            let m = daemon.metrics.render();
            Response::builder()
                .header(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )
                .header(header::CONTENT_LENGTH, m.len())
                .body(body::bytes(m))
                .expect("valid response")
        }
        _ => return None,
    };
    Some(if head {
        let (parts, _) = page.into_parts();
        Response::from_parts(parts, body::empty())
    } else {
        page
    })
}

/// `/-/…`: the daemon's namespace: `/-/keys/<volume>.gpg` and the status
/// API, `/-/api/v1/…`; the rest is 404.
async fn namespace(daemon: &Daemon, path: &CleanPath) -> Response<Body> {
    let segs: Vec<&[u8]> = path.segments().collect();
    if let [b"-", b"api", b"v1", rest @ ..] = &segs[..] {
        return super::api::answer(daemon, rest).await;
    }
    let name = match segs[..] {
        [b"-", b"keys", file] => file.strip_suffix(b".gpg"),
        _ => None,
    };
    let volume = name.and_then(|n| {
        daemon
            .volumes()
            .iter()
            .find(|v| v.name.as_bytes() == n)
            .cloned()
    });
    let Some(key) = volume.as_deref().and_then(verified_with) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let read = async {
        use tokio::io::AsyncReadExt;
        let mut bytes = Vec::new();
        // Bounded by the read itself: a file growing meanwhile is caught.
        tokio::fs::File::open(&key)
            .await?
            .take(MAX_KEY_FILE + 1)
            .read_to_end(&mut bytes)
            .await?;
        if bytes.len() as u64 > MAX_KEY_FILE {
            return Err(std::io::Error::other(format!(
                "more than the {MAX_KEY_FILE} bytes a key file holds"
            )));
        }
        Ok(bytes)
    };
    match read.await {
        Ok(bytes) => Response::builder()
            .header(header::CONTENT_TYPE, "application/pgp-keys")
            .header(header::CACHE_CONTROL, SHORT)
            .header(header::CONTENT_LENGTH, bytes.len())
            .body(body::bytes(bytes))
            .expect("valid response"),
        Err(e) => {
            tracing::error!(key = %key.display(), "cannot serve the volume's key: {e}");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the volume's key cannot be read\n",
            )
        }
    }
}

/// The key file a volume's signed metadata is verified with by `sync`,
/// which `/-/keys/<volume>.gpg` serves.
fn verified_with(v: &Volume) -> Option<std::path::PathBuf> {
    match &v.upstream {
        Some(Upstream::Yum(YumUpstream { key: Some(k), .. })) => Some(k.clone()),
        Some(Upstream::Apt(AptUpstream { keyring, .. })) => Some(keyring.clone()),
        _ => None,
    }
}

/// The readiness probe's verdict (`None`: ready), recorded in the
/// `unimirror_ready` gauge.
async fn ready(daemon: &Daemon) -> Option<String> {
    let why = daemon.unready().await;
    daemon.metrics.ready.set(i64::from(why.is_none()));
    why
}

fn html(page: String) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CONTENT_SECURITY_POLICY, OWN_PAGE_POLICY)
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::CONTENT_LENGTH, page.len())
        .body(body::bytes(page))
        .expect("valid response")
}

/// The status page: each volume with its release and its age, tags, last
/// sync, origin state, hit ratio and bytes served; the cache tiers
/// against their budgets; and how to point pip, apt and dnf at this host
/// (as the client named it in `Host`). One page, no scripts: the bars are
/// inline SVG, the styles inline (the page's CSP allows nothing else).
fn home(daemon: &Daemon, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or("this-host");
    let base = format!("http://{host}");
    let now = SystemTime::now();
    let mut rows = String::new();
    let mut setup = String::new();
    // The same data as the status API's `/-/api/v1/volumes`.
    // One list for both: a reload meanwhile must not pair rows wrongly.
    let list = daemon.volumes();
    let docs = super::api::volumes(&list);
    for (v, doc) in list.iter().zip(&docs) {
        let url = format!("{base}{}/", v.prefix);
        let release = match (&doc.current, doc.kind) {
            (Some(c), _) => {
                let age = crate::release::status::age(c.age_seconds);
                format!("#{} ({age} old)", c.id)
            }
            (None, "released") => "none yet".to_string(),
            (None, _) => "-".to_string(),
        };
        let tags: Vec<String> = doc
            .tags
            .iter()
            .map(|(name, id)| format!("@{name} #{id}"))
            .collect();
        let synced = match &doc.last_sync {
            Some(s) => format!(
                "{} {} ago",
                s.outcome,
                crate::release::status::age(crate::volume::unix(now).saturating_sub(s.time_unix))
            ),
            None => "-".to_string(),
        };
        let origin = match &v.kind {
            VolumeKind::Released(r) => match r.refresh_error() {
                Some(e) => Err(e),
                None if doc.current.is_some() => Ok("ok"),
                None => Ok("no release yet"),
            },
            VolumeKind::Plain(p) => match p.readable() {
                true => Ok("ok"),
                false => Err("tree not readable".to_string()),
            },
            VolumeKind::Proxy(_) => Ok("upstream"),
        };
        let origin = match origin {
            Ok(state) => state.to_string(),
            Err(e) => format!("<span class=\"bad\">{}</span>", escape(&e)),
        };
        let hits = match doc.served.hit_ratio {
            Some(r) => format!(
                "{} {:.1}% of {}",
                bar(r),
                r * 100.0,
                doc.served.object_requests
            ),
            None => "-".to_string(),
        };
        rows += &format!(
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{origin}</td><td>{hits}</td><td class=\"n\">{}</td></tr>\n",
            escape(&url),
            escape(&v.name),
            match doc.kind {
                "tree" => "plain tree",
                kind => kind,
            },
            escape(&release),
            escape(&tags.join(", ")),
            escape(&synced),
            escape(&crate::progress::bytes(doc.served.bytes_sent))
        );
        let proxied = matches!(v.kind, VolumeKind::Proxy(_));
        let hint = match v.upstream.clone().or_else(|| guess_upstream(v)) {
            _ if proxied => format!(
                "# /etc/pip.conf (or, in a virtualenv: pip config --site set global.index-url {url}simple/)\n[global]\nindex-url = {url}simple/"
            ),
            Some(Upstream::Pypi(_)) => format!(
                "# /etc/pip.conf (or, in a virtualenv: pip config --site set global.index-url {url}simple/)\n[global]\nindex-url = {url}simple/"
            ),
            Some(Upstream::Wheel(_)) => wheel_hint(&url, &top_directories(v)),
            Some(Upstream::Apt(apt)) => apt_lines(v, &base, &url, &apt),
            Some(Upstream::Yum(y)) => dnf_sections(v, &base, &url, &y),
            None => url.clone(),
        };
        setup += &format!(
            "<h3>{}</h3>\n<pre>{}</pre>\n",
            escape(&v.name),
            escape(&hint)
        );
    }
    let ready = match (daemon.draining(), daemon.metrics.ready.get()) {
        (true, _) => "<span class=\"bad\">draining</span>",
        (false, 1) => "ready",
        (false, _) => "<span class=\"bad\">not ready</span> (see the log)",
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>unimirror on {host}</title>\n<style>{STYLE}</style></head>\n<body>\n\
         <h1>unimirror on {host}</h1>\n\
         <p>Up for {up} · {ready} as of the last <a href=\"/readyz\">/readyz</a> · origin <code>{origin}</code></p>\n\
         <h2>Volumes</h2>\n<table>\n<tr><th>volume</th><th>kind</th><th>release</th><th>tags</th><th>last sync</th><th>origin</th><th>hit ratio since start</th><th>served</th></tr>\n{rows}</table>\n\
         <h2>Cache</h2>\n{cache}\
         <h2>Using this mirror</h2>\n{setup}\
         <p><a href=\"/-/api/v1/volumes\">status API</a> · <a href=\"/metrics\">metrics</a> · <a href=\"/healthz\">healthz</a> · <a href=\"/readyz\">readyz</a></p>\n\
         </body></html>\n",
        host = escape(host),
        up = humantime::format_duration(std::time::Duration::from_secs(
            now.duration_since(daemon.started)
                .unwrap_or_default()
                .as_secs()
        )),
        origin = escape(&daemon.origin_location()),
        cache = cache_table(daemon),
    )
}

/// The page's looks: inline, as its CSP allows.
const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse}th,td{padding:.25em .8em;text-align:left;border-bottom:1px solid #ddd}\
td.n{text-align:right}.bad{color:#b00;font-weight:bold}\
pre{background:#f4f4f4;padding:.6em;overflow-x:auto}svg{vertical-align:middle}";

/// A horizontal bar filled to `fraction` (0 to 1), as inline SVG.
fn bar(fraction: f64) -> String {
    const WIDTH: f64 = 100.0;
    let filled = (fraction.clamp(0.0, 1.0) * WIDTH).round();
    format!(
        "<svg width=\"{WIDTH}\" height=\"10\" role=\"img\" aria-label=\"{:.0}%\">\
         <rect width=\"{WIDTH}\" height=\"10\" fill=\"#ddd\"/><rect width=\"{filled}\" height=\"10\" fill=\"#2a7\"/></svg>",
        fraction * 100.0
    )
}

/// Each cache tier's bytes against its budget, its objects and evictions.
fn cache_table(daemon: &Daemon) -> String {
    use crate::metrics::Tier;
    daemon.cache.update_gauges();
    let m = &daemon.metrics;
    let mut out = String::from(
        "<table>\n<tr><th>tier</th><th>used</th><th>of budget</th><th></th><th>objects</th><th>evicted</th></tr>\n",
    );
    for tier in [Tier::Memory, Tier::Disk] {
        let used = m.cache_bytes(tier).get().max(0) as u64;
        let budget = m.cache_budget(tier).get().max(0) as u64;
        let fill = match budget {
            0 => "off".to_string(),
            b => format!(
                "{} {:.0}%",
                bar(used as f64 / b as f64),
                used as f64 * 100.0 / b as f64
            ),
        };
        out += &format!(
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{fill}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
            tier.as_str(),
            crate::progress::bytes(used),
            crate::progress::bytes(budget),
            m.cache_entries(tier).get(),
            m.cache_evictions(tier).get(),
        );
    }
    out += "</table>\n";
    if m.cache_disk_full.get() == 1 {
        out += "<p class=\"bad\">The cache disk is full: misses are served from the origin, uncached.</p>\n";
    }
    out
}

/// pip's settings for a wheel volume: each platform directory is an index
/// root, added beside the PyPI index on the nodes of that platform.
fn wheel_hint(url: &str, platforms: &[String]) -> String {
    if platforms.is_empty() {
        return format!(
            "# no platform released yet; on a build node of platform P, in /etc/pip.conf:\n[global]\nextra-index-url = {url}P/"
        );
    }
    platforms
        .iter()
        .map(|p| {
            format!("# /etc/pip.conf on a {p} build node\n[global]\nextra-index-url = {url}{p}/")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The directories at the top of a volume's current content.
fn top_directories(v: &Volume) -> Vec<String> {
    let names: Vec<String> = match &v.kind {
        VolumeKind::Released(r) => r
            .snapshot()
            .and_then(|s| s.current.manifest.list(b"").ok())
            .map(|l| {
                l.into_iter()
                    .filter(|(_, e)| e.kind == crate::volume::manifest::Kind::Dir)
                    .map(|(n, _)| String::from_utf8_lossy(&n).into_owned())
                    .collect()
            })
            .unwrap_or_default(),
        VolumeKind::Plain(p) => std::fs::read_dir(&p.root)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default(),
        VolumeKind::Proxy(_) => Vec::new(),
    };
    let mut names = names;
    names.sort();
    names
}

/// The apt sources of a volume: one line per suite, with the
/// architectures it mirrors (a client with another one enabled would get
/// 404s) and `signed-by` naming the archive's keyring, which this host
/// serves as the sync verified it. A volume whose upstream is guessed has
/// no known keyring: the line names the archive's own.
fn apt_lines(v: &Volume, base: &str, url: &str, apt: &AptUpstream) -> String {
    let name = &v.name;
    let (fetch, keyring) = match verified_with(v) {
        Some(k) => {
            // apt reads a keyring by its extension: `.asc` when armored.
            let armored = std::fs::File::open(&k).is_ok_and(|mut f| {
                let mut head = [0u8; 15];
                std::io::Read::read_exact(&mut f, &mut head).is_ok()
                    && head.starts_with(b"-----BEGIN PGP")
            });
            let local = format!(
                "/etc/apt/keyrings/{name}.{}",
                if armored { "asc" } else { "gpg" }
            );
            (
                format!(
                    "# the archive's keyring, as this mirror verified it:\n#   curl -fsSLo {local} {base}/-/keys/{name}.gpg\n"
                ),
                local,
            )
        }
        None => (
            String::new(),
            "/usr/share/keyrings/ARCHIVE-keyring.gpg".to_string(),
        ),
    };
    let arch = match apt.architectures.is_empty() {
        true => String::new(),
        false => format!(" arch={}", apt.architectures.join(",")),
    };
    let suites: Vec<&str> = match apt.suites.is_empty() {
        true => vec!["SUITE"],
        false => apt.suites.iter().map(String::as_str).collect(),
    };
    let components = match apt.components.is_empty() {
        true => "main".to_string(),
        false => apt.components.join(" "),
    };
    let mut out = format!("{fetch}# /etc/apt/sources.list.d/{name}.list");
    for suite in suites {
        out += &format!("\ndeb [signed-by={keyring}{arch}] {url} {suite} {components}");
    }
    out
}

/// One dnf section per repository, at its path under the volume. With a
/// key, `repo_gpgcheck` ties every metadata file to it, and `gpgkey` is
/// that key as this host serves it. Without one, `gpgkey` is the
/// upstream's own key as the distribution installs it, and
/// `repo_gpgcheck` is on where the repository has a `repomd.xml.asc`.
fn dnf_sections(v: &Volume, base: &str, url: &str, y: &YumUpstream) -> String {
    let name = &v.name;
    let mut out = match y.key {
        Some(_) => format!("# /etc/yum.repos.d/{name}.repo"),
        None => format!("# /etc/yum.repos.d/{name}.repo (gpgkey: the upstream's own signing key)"),
    };
    // A volume whose repositories are not configured (guessed from its
    // `repodata/`) is one repository at its root.
    let repos: Vec<Option<&str>> = match y.repos.is_empty() {
        true => vec![None],
        false => y.repos.iter().map(|r| Some(r.as_str())).collect(),
    };
    for repo in repos {
        // dnf section ids are letters, digits and `-_.:`; repository
        // paths are checked to hold nothing else but `/` and `~`.
        let (id, title, baseurl, dir) = match repo {
            Some(r) => (
                format!("{name}-{}", r.replace(['/', '~'], "-")),
                format!("{name} {r}"),
                format!("{url}{r}/"),
                format!("{r}/"),
            ),
            None => (
                name.to_string(),
                name.to_string(),
                url.to_string(),
                String::new(),
            ),
        };
        let (check, key) = match y.key {
            Some(_) => (true, format!("{base}/-/keys/{name}.gpg")),
            None => (
                serves(v, &format!("{dir}repodata/repomd.xml.asc")),
                format!("file:///etc/pki/rpm-gpg/RPM-GPG-KEY-{name}"),
            ),
        };
        out += &format!(
            "\n\n[{id}]\nname={title} (unimirror)\nbaseurl={baseurl}\ngpgcheck=1\nrepo_gpgcheck={}\ngpgkey={key}",
            u8::from(check)
        );
    }
    out
}

/// Whether the volume has the file `rel` in its current release (or plain
/// tree).
fn serves(v: &Volume, rel: &str) -> bool {
    holds(v, rel, false)
}

/// Whether the volume's current content has `rel`: in its release, or in
/// its plain tree as a directory (`dir`) or a file.
fn holds(v: &Volume, rel: &str, dir: bool) -> bool {
    match &v.kind {
        VolumeKind::Released(r) => r.snapshot().is_some_and(|s| {
            s.current
                .manifest
                .get(rel.as_bytes())
                .ok()
                .flatten()
                .is_some()
        }),
        VolumeKind::Plain(p) => match dir {
            true => p.root.join(rel).is_dir(),
            false => p.root.join(rel).is_file(),
        },
        VolumeKind::Proxy(_) => false,
    }
}

/// For a volume configured without an upstream, what its content looks
/// like: a PyPI index (`simple/`), an apt archive (`dists/`, with its suites)
/// or a yum repository (`repodata/`).
fn guess_upstream(v: &Volume) -> Option<Upstream> {
    let has = |name: &str| holds(v, name, true);
    if has("simple") {
        Some(Upstream::Pypi(Default::default()))
    } else if has("dists") {
        let suites = match &v.kind {
            VolumeKind::Released(r) => r
                .snapshot()
                .and_then(|s| s.current.manifest.list(b"dists").ok())
                .map(|l| {
                    l.into_iter()
                        .map(|(n, _)| String::from_utf8_lossy(&n).into_owned())
                        .collect()
                })
                .unwrap_or_default(),
            VolumeKind::Plain(p) => std::fs::read_dir(p.root.join("dists"))
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default(),
            VolumeKind::Proxy(_) => Vec::new(),
        };
        Some(Upstream::Apt(AptUpstream {
            suites,
            components: vec!["main".into()],
            ..Default::default()
        }))
    } else if has("repodata") {
        Some(Upstream::Yum(Default::default()))
    } else {
        None
    }
}
