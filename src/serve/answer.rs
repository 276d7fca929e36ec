//! A request for a volume's path ([`Ask`]), as the lookups and `send` see
//! it, and what it ends in ([`Answer`]): a response, and what the access
//! log says about it.

use std::sync::Arc;

use hyper::Response;
use hyper::header::HeaderMap;

use super::body::Body;
use super::daemon::{Daemon, Volume};
use super::path::CleanPath;
use super::refusal::Refusal;
use crate::metrics::{Outcome, Served, Tier};

/// A response and what the access log says about it.
pub struct Answer {
    pub response: Response<Body>,
    /// The volume's counters; `None` outside any volume.
    pub volume: Option<Arc<Served>>,
    pub outcome: Outcome,
    pub tier: Tier,
    pub release: Option<u64>,
}

impl Answer {
    /// An answer outside any volume.
    pub fn plain(response: Response<Body>) -> Answer {
        Answer {
            response,
            volume: None,
            outcome: Outcome::None,
            tier: Tier::None,
            release: None,
        }
    }

    /// An answer of a volume, counted as its request.
    pub fn of(volume: &Volume, response: Response<Body>) -> Answer {
        Answer {
            volume: Some(volume.served.clone()),
            ..Answer::plain(response)
        }
    }
}

/// One request for a volume's path.
pub struct Ask<'a> {
    pub daemon: &'a Arc<Daemon>,
    pub volume: &'a Volume,
    pub path: &'a CleanPath,
    pub headers: &'a HeaderMap,
    pub head: bool,
}

impl Ask<'_> {
    /// This volume's answer of a response.
    pub fn answer(&self, response: Response<Body>) -> Answer {
        Answer::of(self.volume, response)
    }

    /// This volume's answer of a refusal.
    pub fn refused(&self, refusal: Refusal) -> Answer {
        self.answer(refusal.response())
    }
}
