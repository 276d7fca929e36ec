//! The HTTP client both sides use to talk to upstreams: `sync` for
//! indexes and mirrored files, the daemon for remote entries of on-demand
//! releases. One place says which redirects are followed, so a file the
//! daemon fetches on demand goes where the sync that listed it would have
//! gone, and nowhere else.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::AllowedHost;

/// What a client may follow and how long it waits.
pub struct ClientRules<'a> {
    pub user_agent: &'static str,
    /// Plain-HTTP upstreams are allowed (`sync.allow_http`).
    pub allow_http: bool,
    /// Hosts a redirect may lead to besides the URL's own
    /// (`sync.allow_redirect_hosts`).
    pub redirect_hosts: &'a [AllowedHost],
    pub connect_timeout: Duration,
    /// No data for this long fails the read.
    pub read_timeout: Duration,
}

/// A client that follows at most 10 redirects, each to the same scheme,
/// host and port as the URL asked for or to an allowed host, and never
/// from HTTPS down to plain HTTP.
pub fn client(rules: &ClientRules<'_>) -> Result<reqwest::Client> {
    // rustls needs a process-wide provider; ring is the one in the build.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let allow_http = rules.allow_http;
    let hosts = rules.redirect_hosts.to_vec();
    let redirect = reqwest::redirect::Policy::custom(move |attempt| {
        let next = attempt.url().clone();
        let first = attempt.previous()[0].clone();
        if attempt.previous().len() > 10 {
            return attempt.error("more than 10 redirects");
        }
        // Plain HTTP only where the upstream itself is plain HTTP (and
        // allowed): never a step down from HTTPS.
        let scheme_ok = next.scheme() == "https"
            || (next.scheme() == "http" && first.scheme() == "http" && allow_http);
        // The same scheme, host and port as the URL asked for: another
        // port on the same host is another service.
        let same_origin = next.scheme() == first.scheme()
            && next.host_str() == first.host_str()
            && next.port_or_known_default() == first.port_or_known_default();
        if !scheme_ok {
            let why = "plain HTTP is followed only from a plain-HTTP upstream";
            attempt.error(format!("refusing a redirect from {first} to {next}: {why}"))
        } else if same_origin || hosts.iter().any(|h| h.allows(&next)) {
            attempt.follow()
        } else {
            attempt.error(format!(
                "refusing a redirect from {first} to {next}: another host or port (list it in `sync.allow_redirect_hosts` to follow it)"
            ))
        }
    });
    reqwest::Client::builder()
        .user_agent(rules.user_agent)
        .connect_timeout(rules.connect_timeout)
        .read_timeout(rules.read_timeout)
        .redirect(redirect)
        .build()
        .context("setting up the HTTP client")
}

/// An error with its causes, on one line: reqwest's own message alone
/// says "error sending request", not why. A cause the message already
/// quotes (object_store's errors quote theirs) is not repeated.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let cause = s.to_string();
        if !text.contains(&cause) {
            text += ": ";
            text += &cause;
        }
        source = s.source();
    }
    text
}

/// Whether a failed request was refused on purpose, by the TLS check of the
/// upstream's certificate or by the redirect rules, rather than failing on
/// the way (no connection, a reset): retrying cannot change the answer.
/// By the chain's text as well as its types: between reqwest, hyper-util
/// and tokio-rustls the certificate error reaches us boxed in ways a
/// downcast does not see through.
pub fn is_refusal(e: &reqwest::Error) -> bool {
    if e.is_redirect() {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        source = s.source();
    }
    let text = error_chain(e);
    text.contains("invalid peer certificate") || text.contains("refusing a redirect")
}
