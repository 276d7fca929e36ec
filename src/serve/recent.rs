//! Paths a release was recently asked for, and where their manifest
//! records are, so that the hot set of a busy mirror skips the index walk.
//!
//! The manifest's index (an fst) answers a lookup by walking about one node
//! per byte of the key, the largest single cost of a cache hit (figures in
//! docs/performance.md). Remembering the record's offset turns
//! a repeated lookup into one hash, one short lock and one comparison.
//!
//! The table is fixed-size and two-way set-associative: memory stays
//! bounded whatever clients ask, and a set needs one bit of bookkeeping to
//! replace the way used less recently. It is allocated on first use, so the
//! earlier releases kept for the grace period, which answer only the paths
//! the current one lacks, mostly cost nothing. Only paths the release has
//! are remembered: a stream of 404s cannot push the hot set out.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, OnceLock};

/// Sets in a table; two ways each, so this many times two paths. At about
/// 120 bytes a remembered path (the table's slot, the path itself), a full
/// table holds 2 MiB.
const SETS: usize = 8192;

/// Recently found paths of one release, and their record offsets.
pub struct RecentLookups {
    /// Keyed per table, so that no one can aim paths at one set from
    /// outside (which would only slow lookups down, but still).
    hasher: RandomState,
    sets: OnceLock<Box<[Mutex<Set>]>>,
}

#[derive(Default)]
struct Set {
    ways: [Option<(Box<[u8]>, u64)>; 2],
    /// The way used less recently: the one the next new path replaces.
    older: usize,
}

impl Default for RecentLookups {
    fn default() -> Self {
        RecentLookups {
            hasher: RandomState::new(),
            sets: OnceLock::new(),
        }
    }
}

impl std::fmt::Debug for RecentLookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentLookups")
            .field("remembered", &self.remembered())
            .finish()
    }
}

impl RecentLookups {
    /// The record offset of `path`: remembered, or found by `find` (the
    /// manifest's own lookup) and remembered if the release has the path.
    /// Errors from `find` are passed on and not remembered.
    pub fn locate<E>(
        &self,
        path: &[u8],
        find: impl FnOnce() -> Result<Option<u64>, E>,
    ) -> Result<Option<u64>, E> {
        let sets = self.sets.get_or_init(|| {
            (0..SETS)
                .map(|_| Mutex::new(Set::default()))
                .collect::<Vec<_>>()
                .into_boxed_slice()
        });
        let set = &sets[self.hasher.hash_one(path) as usize % SETS];
        {
            let mut set = lock(set);
            let hit = set
                .ways
                .iter()
                .position(|w| w.as_ref().is_some_and(|(p, _)| **p == *path));
            if let Some(i) = hit {
                set.older = 1 - i;
                return Ok(set.ways[i].as_ref().map(|(_, offset)| *offset));
            }
        }
        // The index walk happens outside the lock: two requests for the
        // same new path may both walk, and both store the same answer.
        let found = find()?;
        if let Some(offset) = found {
            let mut set = lock(set);
            if !set.ways.iter().flatten().any(|(p, _)| **p == *path) {
                let i = set.older;
                set.ways[i] = Some((path.into(), offset));
                set.older = 1 - i;
            }
        }
        Ok(found)
    }

    /// How many paths are remembered now.
    pub fn remembered(&self) -> usize {
        self.sets.get().map_or(0, |sets| {
            sets.iter()
                .map(|s| lock(s).ways.iter().flatten().count())
                .sum()
        })
    }
}

fn lock(set: &Mutex<Set>) -> std::sync::MutexGuard<'_, Set> {
    // Nothing panics while a set is locked; a poisoned one is still whole.
    set.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A stand-in index that counts its walks: path `n` is at offset `n`,
    /// paths that are not numbers are absent.
    struct Index {
        walks: Cell<usize>,
    }

    impl Index {
        fn find(&self, path: &[u8]) -> Result<Option<u64>, String> {
            self.walks.set(self.walks.get() + 1);
            Ok(std::str::from_utf8(path).unwrap().parse().ok())
        }
    }

    #[test]
    fn a_found_path_is_walked_once() {
        let (recent, index) = (
            RecentLookups::default(),
            Index {
                walks: Cell::new(0),
            },
        );
        for _ in 0..3 {
            assert_eq!(recent.locate(b"42", || index.find(b"42")), Ok(Some(42)));
        }
        assert_eq!(index.walks.get(), 1);
        assert_eq!(recent.remembered(), 1);
    }

    #[test]
    fn absent_paths_and_errors_are_not_remembered() {
        let (recent, index) = (
            RecentLookups::default(),
            Index {
                walks: Cell::new(0),
            },
        );
        for _ in 0..3 {
            assert_eq!(recent.locate(b"nope", || index.find(b"nope")), Ok(None));
        }
        assert_eq!(index.walks.get(), 3);
        let failed: Result<Option<u64>, &str> = recent.locate(b"7", || Err("damaged"));
        assert_eq!(failed, Err("damaged"));
        assert_eq!(recent.locate(b"7", || index.find(b"7")), Ok(Some(7)));
        assert_eq!(index.walks.get(), 4);
        assert_eq!(recent.remembered(), 1);
    }

    #[test]
    fn many_more_paths_than_fit_stay_bounded_and_right() {
        let (recent, index) = (
            RecentLookups::default(),
            Index {
                walks: Cell::new(0),
            },
        );
        let paths: Vec<String> = (0..SETS as u64 * 6).map(|n| n.to_string()).collect();
        for round in 0..2 {
            for (n, p) in paths.iter().enumerate() {
                let found = recent.locate(p.as_bytes(), || index.find(p.as_bytes()));
                assert_eq!(found, Ok(Some(n as u64)), "round {round}, path {p}");
            }
        }
        assert!(recent.remembered() <= 2 * SETS);
        // Three times more paths than ways: in a set, the paths met first
        // in the second round push out those met last, so most are walked
        // again; those of sets with at most two paths are not.
        let walks = index.walks.get();
        assert!(walks > paths.len() && walks < 2 * paths.len(), "{walks}");
    }

    #[test]
    fn the_way_used_less_recently_is_replaced() {
        let recent = RecentLookups::default();
        // Find three paths that share a set.
        let set_of = |p: &[u8]| recent.hasher.hash_one(p) as usize % SETS;
        let target = set_of(b"0");
        let same: Vec<String> = (1..)
            .map(|n: u64| n.to_string())
            .filter(|p| set_of(p.as_bytes()) == target)
            .take(2)
            .collect();
        let (a, b, c) = ("0", same[0].as_str(), same[1].as_str());
        let index = Index {
            walks: Cell::new(0),
        };
        let look = |p: &str| recent.locate(p.as_bytes(), || index.find(p.as_bytes()));
        look(a).unwrap();
        look(b).unwrap();
        look(a).unwrap(); // a is now the more recent
        look(c).unwrap(); // so c replaces b
        let before = index.walks.get();
        look(a).unwrap();
        look(c).unwrap();
        assert_eq!(index.walks.get(), before, "a and c are remembered");
        look(b).unwrap();
        assert_eq!(index.walks.get(), before + 1, "b was replaced");
    }
}
