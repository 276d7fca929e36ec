//! An origin on an S3-compatible store (AWS S3, Ceph RGW, SeaweedFS…).
//!
//! This is the store's client and nothing more: keys in, bytes out, and
//! the two conditional writes the release protocol stands on (create only
//! if absent, replace only if unchanged). Which keys a volume has, and in
//! which order they are written, is `volume::s3`'s business.
//!
//! The client runs on a runtime of its own, on two threads that live as
//! long as the process: the updater's code and the daemon's release loads
//! are blocking code (some of it called from inside the sync's runtime),
//! and a blocking call here sends the request to that thread and waits
//! for its answer, which is safe from any thread. The daemon's fills
//! await the same requests from its own runtime.

use std::future::Future;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{
    ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, UpdateVersion,
};

use crate::config::{S3Location, S3Settings};
use crate::digest::Sha256Digest;

/// Objects up to this size are PUT in one request (their bytes held in
/// memory for it); larger ones are uploaded in parts of this size.
pub const SINGLE_PUT_MAX: u64 = 64 << 20;

/// A connection to the bucket and prefix of an `s3://` origin.
pub struct S3Origin {
    store: Arc<AmazonS3>,
    location: S3Location,
    /// What the one request object_store cannot make (listing multipart
    /// uploads) is signed and sent with.
    lister: UploadLister,
    runtime: tokio::runtime::Handle,
    /// `s3.single_writer`: the store's conditions are not relied upon.
    pub single_writer: bool,
}

impl std::fmt::Debug for S3Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Origin({})", self.location)
    }
}

/// What a read of a key found.
#[derive(Debug, Clone)]
pub struct Got {
    pub bytes: Bytes,
    pub etag: Option<String>,
}

/// What a conditional read found.
#[derive(Debug)]
pub enum IfChanged {
    /// The key still has the ETag given.
    Same,
    Changed(Got),
    Missing,
}

/// What a create-only write found.
#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    /// The object is ours, with this ETag.
    New(Option<String>),
    /// Something was there already (maybe our own earlier attempt, whose
    /// answer was lost): read it back to know.
    Existed,
}

/// What a compare-and-swap write found.
#[derive(Debug, PartialEq, Eq)]
pub enum Swapped {
    Done(Option<String>),
    /// The key's ETag was not the one given (or the key was gone).
    Stale,
}

impl S3Origin {
    /// Builds the client (no request is made). Credentials come from the
    /// files `s3.*_file` name, or else from the environment; `timeout`
    /// bounds each request with its retries.
    pub fn connect(
        settings: &S3Settings,
        location: &S3Location,
        timeout: Duration,
    ) -> Result<Arc<S3Origin>> {
        let (key_id, secret) = credentials(settings)?;
        let lister = UploadLister {
            endpoint: settings
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", settings.region)),
            region: settings.region.clone(),
            path_style: settings.path_style,
            key_id: key_id.clone(),
            secret: secret.clone(),
            token: std::env::var("AWS_SESSION_TOKEN").ok(),
            timeout,
        };
        // object_store builds its own reqwest client, which takes the
        // process's default TLS provider: ring, as everywhere else here.
        // (Already installed is fine.)
        let _ = rustls::crypto::ring::default_provider().install_default();
        // A request may take as long as its body does (a large object),
        // but never stalls: each read of the answer must make progress
        // within the timeout, as `origin_timeout` promises.
        let mut options = ClientOptions::new()
            .with_connect_timeout(timeout.min(Duration::from_secs(5)))
            .with_timeout_disabled()
            .with_read_timeout(timeout);
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&location.bucket)
            .with_region(&settings.region)
            .with_access_key_id(key_id)
            .with_secret_access_key(secret)
            .with_virtual_hosted_style_request(!settings.path_style)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: timeout,
                ..RetryConfig::default()
            });
        if let Ok(token) = std::env::var("AWS_SESSION_TOKEN") {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &settings.endpoint {
            // An http:// endpoint is the operator's explicit choice.
            options = options.with_allow_http(endpoint.starts_with("http://"));
            let endpoint = endpoint.trim_end_matches('/');
            // object_store takes a virtual-hosted endpoint with the bucket
            // already in its host name.
            let endpoint = match (settings.path_style, endpoint.split_once("://")) {
                (false, Some((scheme, host))) => {
                    format!("{scheme}://{}.{host}", location.bucket)
                }
                _ => endpoint.to_string(),
            };
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder
            .with_client_options(options)
            .build()
            .with_context(|| format!("setting up the client of {location}"))?;
        Ok(Arc::new(S3Origin {
            lister,
            store: Arc::new(store),
            location: location.clone(),
            runtime: client_runtime()?,
            single_writer: settings.single_writer,
        }))
    }

    pub fn location(&self) -> &S3Location {
        &self.location
    }

    /// The full key of `rel`, a key relative to the origin's prefix.
    pub fn key(&self, rel: &str) -> Key {
        match self.location.prefix.is_empty() {
            true => Key::from(rel),
            false => Key::from(format!("{}/{rel}", self.location.prefix)),
        }
    }

    /// `rel` as a URL, for messages.
    pub fn url(&self, rel: &str) -> String {
        format!("{}/{rel}", self.location)
    }

    /// Runs `f` on the client's runtime and waits for it: callable from
    /// any thread, including a runtime's (it then blocks that thread).
    fn block<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv()
            .expect("the S3 client's runtime lives as long as the process")
    }

    /// Reads `rel` whole; `None` when it does not exist.
    pub fn get(&self, rel: &str) -> Result<Option<Got>> {
        match self.get_if_changed(rel, None)? {
            IfChanged::Changed(got) => Ok(Some(got)),
            IfChanged::Missing => Ok(None),
            IfChanged::Same => unreachable!("no ETag was given"),
        }
    }

    /// Reads `rel` whole unless its ETag is still `etag` (a 304 costs
    /// the store next to nothing: how daemons poll a pointer).
    pub fn get_if_changed(&self, rel: &str, etag: Option<&str>) -> Result<IfChanged> {
        let (store, key) = (self.store.clone(), self.key(rel));
        let options = GetOptions {
            if_none_match: etag.map(str::to_string),
            ..GetOptions::default()
        };
        let found = self.block(async move {
            let got = store.get_opts(&key, options).await?;
            let etag = got.meta.e_tag.clone();
            let bytes = got.bytes().await?;
            Ok::<_, object_store::Error>(Got { bytes, etag })
        });
        match found {
            Ok(got) => Ok(IfChanged::Changed(got)),
            Err(object_store::Error::NotModified { .. }) => Ok(IfChanged::Same),
            Err(object_store::Error::NotFound { .. }) => Ok(IfChanged::Missing),
            Err(e) => Err(self.failed("reading", rel, e)),
        }
    }

    /// The size of `rel`, or `None` when it does not exist.
    pub fn head(&self, rel: &str) -> Result<Option<u64>> {
        let (store, key) = (self.store.clone(), self.key(rel));
        match self.block(async move { store.head(&key).await }) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed("looking up", rel, e)),
        }
    }

    /// How long ago `rel` was last written, or `None` when it does not
    /// exist.
    pub fn age(&self, rel: &str) -> Result<Option<Duration>> {
        let (store, key) = (self.store.clone(), self.key(rel));
        match self.block(async move { store.head(&key).await }) {
            Ok(meta) => {
                let now = crate::volume::unix(std::time::SystemTime::now()) as i64;
                let age = now.saturating_sub(meta.last_modified.timestamp()).max(0);
                Ok(Some(Duration::from_secs(age as u64)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed("looking up", rel, e)),
        }
    }

    /// Writes `bytes` at `rel` only if nothing is there (`If-None-Match:
    /// *`).
    pub fn create(&self, rel: &str, bytes: Bytes) -> Result<Created> {
        self.put(rel, bytes, PutMode::Create)
            .map(|r| r.map_or(Created::Existed, Created::New))
    }

    /// Replaces `rel` only if its ETag is still `etag` (`If-Match`).
    pub fn swap(&self, rel: &str, bytes: Bytes, etag: &str) -> Result<Swapped> {
        let mode = PutMode::Update(UpdateVersion {
            e_tag: Some(etag.to_string()),
            version: None,
        });
        self.put(rel, bytes, mode)
            .map(|r| r.map_or(Swapped::Stale, Swapped::Done))
    }

    /// Writes without a condition: only where nothing depends on it
    /// (`s3.single_writer`, the probe's own key).
    pub fn overwrite(&self, rel: &str, bytes: Bytes) -> Result<()> {
        self.put(rel, bytes, PutMode::Overwrite).map(|_| ())
    }

    /// A PUT; `Ok(None)` when its condition did not hold.
    fn put(&self, rel: &str, bytes: Bytes, mode: PutMode) -> Result<Option<Option<String>>> {
        let (store, key) = (self.store.clone(), self.key(rel));
        let conditional = !matches!(mode, PutMode::Overwrite);
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        let put =
            self.block(async move { store.put_opts(&key, PutPayload::from(bytes), options).await });
        // Only a conditional write's own refusal is "the condition did not
        // hold"; anything else (a missing bucket is a 404) is an error,
        // never taken for another writer's work.
        match (put, conditional) {
            (Ok(r), _) => Ok(Some(r.e_tag)),
            (
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ),
                true,
            ) => Ok(None),
            (Err(e), _) => Err(self.failed("writing", rel, e)),
        }
    }

    /// Uploads the file `path` as the object `rel`, which must hash to
    /// `sha` and be `size` bytes long: checked as it is read, before the
    /// upload completes, so the store never holds an object under a name
    /// its bytes do not have. Content-addressed, so a concurrent upload of
    /// the same object writes the same bytes: no condition is needed, and
    /// a large one goes up in parts.
    pub fn upload_file(&self, rel: &str, path: &Path, sha: Sha256Digest, size: u64) -> Result<()> {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let changed = |got: Sha256Digest, n: u64| {
            anyhow!(
                "{} changed while it was being released (hashed {sha}, {size} bytes; uploaded {got}, {n} bytes); run the release again",
                path.display()
            )
        };
        if size <= SINGLE_PUT_MAX {
            let mut bytes = Vec::with_capacity(size as usize);
            (&mut file)
                .take(size + 1)
                .read_to_end(&mut bytes)
                .with_context(|| format!("reading {}", path.display()))?;
            let got = Sha256Digest::of(&bytes);
            if got != sha || bytes.len() as u64 != size {
                return Err(changed(got, bytes.len() as u64));
            }
            self.put(rel, bytes.into(), PutMode::Overwrite)?;
            return Ok(());
        }
        let (store, key) = (self.store.clone(), self.key(rel));
        let mut upload = self
            .block(async move { store.put_multipart(&key).await })
            .map_err(|e| self.failed("starting the upload of", rel, e))?;
        let mut hasher = sha2::Sha256::default();
        let mut total = 0u64;
        let mut read_part = |file: &mut std::fs::File| -> Result<Vec<u8>> {
            let mut part = Vec::with_capacity(SINGLE_PUT_MAX as usize);
            file.take(SINGLE_PUT_MAX)
                .read_to_end(&mut part)
                .with_context(|| format!("reading {}", path.display()))?;
            sha2::Digest::update(&mut hasher, &part);
            total += part.len() as u64;
            Ok(part)
        };
        let result = (|| -> Result<()> {
            loop {
                let part = read_part(&mut file)?;
                if part.is_empty() {
                    break;
                }
                let sent = upload.put_part(PutPayload::from(part));
                self.block(sent)
                    .map_err(|e| self.failed("uploading a part of", rel, e))?;
                crate::fault::point(crate::fault::S3_PART_UPLOADED);
            }
            Ok(())
        })();
        let got = Sha256Digest::from_hasher(hasher);
        let result = result.and_then(|()| match got == sha && total == size {
            true => Ok(()),
            false => Err(changed(got, total)),
        });
        match result {
            Ok(()) => {
                let done = self.block(async move { upload.complete().await });
                done.map(|_| ())
                    .map_err(|e| self.failed("completing the upload of", rel, e))
            }
            Err(e) => {
                // Left to gc (or the bucket's lifecycle rule) if this fails.
                let _ = self.block(async move { upload.abort().await });
                Err(e)
            }
        }
    }

    /// The names under `rel/` (one level, relative to it; `""`: the
    /// origin's prefix): objects and common prefixes alike, sorted.
    pub fn list(&self, rel: &str) -> Result<Vec<String>> {
        let store = self.store.clone();
        let key = match (rel, self.location.prefix.as_str()) {
            ("", "") => None,
            ("", prefix) => Some(Key::from(prefix)),
            (rel, _) => Some(self.key(rel)),
        };
        let listed = self.block(async move { store.list_with_delimiter(key.as_ref()).await });
        let listed = listed.map_err(|e| self.failed("listing", rel, e))?;
        let mut names: Vec<String> = listed
            .objects
            .iter()
            .map(|o| &o.location)
            .chain(&listed.common_prefixes)
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every key under `rel/`, at any depth, relative to the origin's
    /// prefix, with its size and age.
    pub fn list_all(&self, rel: &str) -> Result<Vec<(String, u64, Duration)>> {
        let (store, key) = (self.store.clone(), self.key(rel));
        let listed = self.block(async move {
            store
                .list(Some(&key))
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
        });
        let listed = listed.map_err(|e| self.failed("listing", rel, e))?;
        let strip = match self.location.prefix.is_empty() {
            true => String::new(),
            false => format!("{}/", self.location.prefix),
        };
        let now = crate::volume::unix(std::time::SystemTime::now()) as i64;
        Ok(listed
            .into_iter()
            .filter_map(|o| {
                let name = o.location.as_ref().strip_prefix(&strip)?.to_string();
                let age = now.saturating_sub(o.last_modified.timestamp()).max(0);
                Some((name, o.size, Duration::from_secs(age as u64)))
            })
            .collect())
    }

    pub fn delete(&self, rel: &str) -> Result<()> {
        let (store, key) = (self.store.clone(), self.key(rel));
        match self.block(async move { store.delete(&key).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed("removing", rel, e)),
        }
    }

    /// Multipart uploads under the origin's prefix begun more than `age`
    /// ago: (key, upload id). An updater killed in the middle of a large
    /// object's upload leaves one, whose parts the store keeps (and bills)
    /// until it is aborted.
    pub fn stale_uploads(&self, age: Duration) -> Result<Vec<(String, String)>> {
        let lister = self.lister.clone();
        let bucket = self.location.bucket.clone();
        // Only objects are uploaded in parts: other software's uploads
        // in the same bucket are not ours to abort.
        let prefix = match self.location.prefix.is_empty() {
            true => "objects/".to_string(),
            false => format!("{}/objects/", self.location.prefix),
        };
        let listed = self.block(async move { lister.list(&bucket, &prefix).await });
        let listed = listed
            .with_context(|| format!("listing the multipart uploads of {}", self.location))?;
        let now = std::time::SystemTime::now();
        Ok(listed
            .into_iter()
            .filter(|u| {
                humantime::parse_rfc3339_weak(u.initiated.trim_end_matches('Z'))
                    .is_ok_and(|t| now.duration_since(t).is_ok_and(|a| a >= age))
            })
            .map(|u| (u.key, u.id))
            .collect())
    }

    /// Aborts the multipart upload `id` of `key` (a full key, as
    /// [`S3Origin::stale_uploads`] gives it): its parts are removed.
    pub fn abort_upload(&self, key: &str, id: &str) -> Result<()> {
        use object_store::multipart::MultipartStore;
        let (store, path, id) = (self.store.clone(), Key::from(key), id.to_string());
        let done = self.block(async move { store.abort_multipart(&path, &id).await });
        match done {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(anyhow!(
                "aborting the upload {key} ({}): {}",
                "multipart",
                crate::upstream::error_chain(&e)
            )),
        }
    }

    /// Opens `rel` for reading as a stream, from the runtime it is
    /// awaited on (fills), with its size.
    pub async fn open(&self, rel: &str) -> Result<(u64, ByteStream), OpenError> {
        // On the caller's runtime, not the client's: a fill's request and
        // its body then stay on one runtime. Handed across, every request
        // and chunk woke a thread of the other one: under 2,000 cold small
        // fills, perf found a sixth of the daemon's time switching tasks.
        let opened = self.store.get(&self.key(rel)).await;
        match opened {
            Ok(got) => Ok((got.meta.size, got.into_stream())),
            Err(object_store::Error::NotFound { .. }) => Err(OpenError::Missing),
            Err(e) => Err(OpenError::Failed(crate::upstream::error_chain(&e))),
        }
    }

    /// `rel` as a blocking reader, with its size (manifest copies).
    pub fn reader(&self, rel: &str) -> Result<(u64, BlockingStream<'_>)> {
        let (store, key) = (self.store.clone(), self.key(rel));
        let got = self.block(async move { store.get(&key).await });
        let got = got.map_err(|e| self.failed("reading", rel, e))?;
        Ok((
            got.meta.size,
            BlockingStream {
                origin: self,
                stream: Some(got.into_stream()),
                pending: Bytes::new(),
            },
        ))
    }

    /// What `check-config` says of the store: it answers, and what the
    /// prefix holds. Reads only (a daemon's credentials may not write).
    pub fn survey(&self) -> Result<String> {
        let marker = self.get("format")?;
        let names = self.list("")?;
        let volumes: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !matches!(*n, "format" | "objects" | ".probe"))
            .collect();
        Ok(match marker {
            None if volumes.is_empty() => {
                format!(
                    "{}: reachable, empty (the first release creates it)",
                    self.location
                )
            }
            None => format!(
                "{}: reachable, but it has no format marker (not a unimirror origin?): {}",
                self.location,
                volumes.join(", ")
            ),
            Some(m) => format!(
                "{}: reachable, {:?}, volumes: {}",
                self.location,
                String::from_utf8_lossy(&m.bytes).trim(),
                if volumes.is_empty() {
                    "none".into()
                } else {
                    volumes.join(", ")
                }
            ),
        })
    }

    /// Checks that the store enforces both conditions the release protocol
    /// needs, with a key of its own (`.probe`): a second create of it must
    /// fail, and so must a swap with a wrong ETag. A store that ignores
    /// them (Garage 2.x does) would let two updaters both publish.
    pub fn probe(&self) -> Result<()> {
        // A key of this run's own: updaters probing at once (syncs of
        // several volumes) must not take each other's key for a store
        // that ignores the conditions.
        let now = std::time::SystemTime::now();
        let nanos = now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let rel = &format!(".probe/{}-{nanos}", std::process::id());
        let first = self.create(rel, Bytes::from("first create\n"))?;
        let Created::New(etag) = first else {
            bail!(
                "{}: a create-only PUT of a new key was refused; the store does not handle If-None-Match as S3 does",
                self.url(rel)
            );
        };
        let mut ignored = Vec::new();
        if self.create(rel, Bytes::from("second create\n"))? != Created::Existed {
            ignored.push("If-None-Match: * (a second create-only PUT of one key succeeded)");
        }
        let wrong = match etag.as_deref() {
            Some("\"0\"") => "\"1\"",
            _ => "\"0\"",
        };
        if self.swap(rel, Bytes::from("wrong etag\n"), wrong)? != Swapped::Stale {
            ignored.push("If-Match (a PUT with a wrong ETag succeeded)");
        }
        self.delete(rel)?;
        if !ignored.is_empty() {
            bail!(
                "{} does not enforce {}: two updaters could both publish a release. Use a store that does (AWS S3, Ceph RGW, SeaweedFS, MinIO), or set s3.single_writer = true if exactly one updater ever writes this origin (dangerous: see docs/operations.md)",
                self.location,
                ignored.join(", nor ")
            );
        }
        Ok(())
    }

    fn failed(&self, doing: &str, rel: &str, e: object_store::Error) -> anyhow::Error {
        anyhow!(
            "{doing} {}: {}",
            self.url(rel),
            crate::upstream::error_chain(&e)
        )
    }
}

/// Lists a bucket's multipart uploads (`GET /?uploads`), the one request
/// object_store has no call for, signed here with AWS Signature V4.
#[derive(Clone)]
struct UploadLister {
    endpoint: String,
    region: String,
    path_style: bool,
    key_id: String,
    secret: String,
    token: Option<String>,
    timeout: Duration,
}

/// One multipart upload in progress.
#[derive(Debug, Default)]
struct Upload {
    key: String,
    id: String,
    initiated: String,
}

impl UploadLister {
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<Upload>> {
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .context("setting up an HTTP client")?;
        let mut uploads = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = vec![
                ("prefix".to_string(), prefix.to_string()),
                ("uploads".to_string(), String::new()),
            ];
            if let Some((key, id)) = &markers {
                query.push(("key-marker".into(), key.clone()));
                query.push(("upload-id-marker".into(), id.clone()));
            }
            let (url, headers) = self.sign(bucket, &mut query)?;
            let mut request = client.get(&url);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let response = request.send().await.with_context(|| format!("GET {url}"))?;
            let status = response.status();
            let body = response
                .bytes()
                .await
                .with_context(|| format!("GET {url}"))?;
            if !status.is_success() {
                bail!("GET {url}: {status}: {}", String::from_utf8_lossy(&body));
            }
            let page = parse_uploads(&body)?;
            uploads.extend(page.uploads);
            match page.next {
                // A store repeating its markers would list forever.
                Some(next) if page.truncated && markers.as_ref() != Some(&next) => {
                    markers = Some(next)
                }
                _ => return Ok(uploads),
            }
        }
    }

    /// The URL of a GET of the bucket with `query`, and the headers that
    /// sign it (SigV4, payload unsigned).
    fn sign(
        &self,
        bucket: &str,
        query: &mut [(String, String)],
    ) -> Result<(String, Vec<(String, String)>)> {
        let base = self.endpoint.trim_end_matches('/');
        let (scheme, authority) = base
            .split_once("://")
            .context("an endpoint with a scheme")?;
        let (host, path) = match self.path_style {
            true => (authority.to_string(), format!("/{bucket}")),
            false => (format!("{bucket}.{authority}"), "/".to_string()),
        };
        query.sort();
        let canonical_query = query
            .iter()
            .map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .replace(['-', ':'], "");
        let date = &stamp[..8];
        let payload = "UNSIGNED-PAYLOAD";
        let mut headers = vec![
            ("host".to_string(), host.clone()),
            ("x-amz-content-sha256".to_string(), payload.to_string()),
            ("x-amz-date".to_string(), stamp.clone()),
        ];
        if let Some(t) = &self.token {
            headers.push(("x-amz-security-token".to_string(), t.clone()));
        }
        let signed: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        let canonical = format!(
            "GET\n{path}\n{canonical_query}\n{}\n{}\n{payload}",
            headers
                .iter()
                .map(|(n, v)| format!("{n}:{v}\n"))
                .collect::<String>(),
            signed.join(";")
        );
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
            Sha256Digest::of(canonical.as_bytes()).hex()
        );
        let hmac = |key: &[u8], data: &str| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
            ring::hmac::sign(&key, data.as_bytes()).as_ref().to_vec()
        };
        let mut key = hmac(format!("AWS4{}", self.secret).as_bytes(), date);
        for part in [self.region.as_str(), "s3", "aws4_request"] {
            key = hmac(&key, part);
        }
        let signature = hex::encode(hmac(&key, &to_sign));
        headers.push((
            "authorization".to_string(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
                self.key_id,
                signed.join(";")
            ),
        ));
        // reqwest sets Host itself, from the URL.
        headers.retain(|(n, _)| n != "host");
        Ok((
            format!("{scheme}://{host}{path}?{canonical_query}"),
            headers,
        ))
    }
}

/// SigV4's encoding of a query name or value: everything but the
/// unreserved characters is %-escaped, in upper-case hex.
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One page of a `ListMultipartUploads` answer.
#[derive(Debug, Default)]
struct UploadsPage {
    uploads: Vec<Upload>,
    truncated: bool,
    /// `NextKeyMarker` and `NextUploadIdMarker`.
    next: Option<(String, String)>,
}

fn parse_uploads(xml: &[u8]) -> Result<UploadsPage> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut page = UploadsPage::default();
    let (mut next_key, mut next_id) = (None, None);
    let mut current: Option<Upload> = None;
    let mut element = Vec::new();
    let mut buf = Vec::new();
    loop {
        match reader
            .read_event_into(&mut buf)
            .context("reading the list of uploads")?
        {
            Event::Start(e) => {
                element = e.local_name().as_ref().to_vec();
                if element == b"Upload" {
                    current = Some(Upload::default());
                }
            }
            Event::End(e) => {
                if e.local_name().as_ref() == b"Upload" {
                    page.uploads.extend(current.take());
                }
                element.clear();
            }
            Event::Text(t) => {
                let text = t
                    .decode()
                    .context("reading the list of uploads")?
                    .into_owned();
                match (element.as_slice(), current.as_mut()) {
                    (b"Key", Some(u)) => u.key = text,
                    (b"UploadId", Some(u)) => u.id = text,
                    (b"Initiated", Some(u)) => u.initiated = text,
                    (b"IsTruncated", None) => page.truncated = text == "true",
                    (b"NextKeyMarker", None) => next_key = Some(text),
                    (b"NextUploadIdMarker", None) => next_id = Some(text),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    page.next = next_key.zip(next_id);
    Ok(page)
}

/// Why an object could not be opened for a fill.
#[derive(Debug)]
pub enum OpenError {
    Missing,
    Failed(String),
}

/// An object's bytes as they arrive.
pub type ByteStream = BoxStream<'static, Result<Bytes, object_store::Error>>;

/// A stream read from blocking code, through the client's runtime.
pub struct BlockingStream<'o> {
    origin: &'o S3Origin,
    stream: Option<ByteStream>,
    pending: Bytes,
}

impl Read for BlockingStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() {
            let Some(mut stream) = self.stream.take() else {
                return Ok(0);
            };
            let (next, stream) = self.origin.block(async move {
                let next = stream.next().await;
                (next, stream)
            });
            match next {
                Some(Ok(chunk)) => {
                    self.pending = chunk;
                    self.stream = Some(stream);
                }
                Some(Err(e)) => {
                    return Err(std::io::Error::other(crate::upstream::error_chain(&e)));
                }
                None => return Ok(0),
            }
        }
        let n = self.pending.len().min(buf.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}

/// The access key id and secret: from the files the config names, or from
/// the environment.
fn credentials(settings: &S3Settings) -> Result<(String, String)> {
    if let (Some(id), Some(secret)) = (
        &settings.access_key_id_file,
        &settings.secret_access_key_file,
    ) {
        let read = |p: &Path, key: &str| -> Result<String> {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("s3.{key}: cannot read {}", p.display()))?;
            let text = text.trim().to_string();
            if text.is_empty() {
                bail!("s3.{key}: {} is empty", p.display());
            }
            Ok(text)
        };
        return Ok((
            read(id, "access_key_id_file")?,
            read(secret, "secret_access_key_file")?,
        ));
    }
    let var = |name: &str| {
        std::env::var(name).map_err(|_| {
            anyhow!(
                "no S3 credentials: set {name} (and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), or name files in s3.access_key_id_file and s3.secret_access_key_file"
            )
        })
    };
    Ok((var("AWS_ACCESS_KEY_ID")?, var("AWS_SECRET_ACCESS_KEY")?))
}

/// The one runtime every S3 client of this process shares, on a thread
/// of its own that never ends.
fn client_runtime() -> Result<tokio::runtime::Handle> {
    static HANDLE: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("s3-client")
        .enable_all()
        .build()
        .context("starting the S3 client's runtime")?;
    let handle = runtime.handle().clone();
    // Never dropped: dropping a runtime from inside another one panics,
    // and the daemon's fills hold streams of this one until the end.
    std::mem::forget(runtime);
    Ok(HANDLE.get_or_init(|| handle).clone())
}
