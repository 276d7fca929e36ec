//! The daemon's memory allocator: mimalloc, asked the way the C library's
//! `malloc` is asked.
//!
//! A cache hit allocates its headers and body handles, and glibc's malloc
//! was a large share of its profile; mimalloc's per-thread free lists cost
//! a fraction of that (figures in docs/performance.md).
//! The `mimalloc` crate, though, passes every Rust allocation to
//! `mi_malloc_aligned`, even with the alignment of 8 that nearly all of them
//! have. mimalloc 3 takes its fast path there only for blocks up to 1 KiB;
//! a larger one that is not a power of two (a header map, a read buffer's
//! growth) is over-allocated by its alignment and trimmed, several times a
//! request. Plain `mi_malloc` already
//! returns blocks aligned to 16 bytes, or to their size below that, which
//! is what almost every layout needs; only the rest goes to the aligned
//! calls. (This is the rule Rust's own `System` allocator follows over
//! glibc.)

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// What `mi_malloc` guarantees: its blocks are aligned to 16 bytes
/// (`MI_MAX_ALIGN_SIZE`), or to the largest power of two dividing a
/// smaller size.
const PLAIN_ALIGN: usize = 16;

/// Whether `mi_malloc` alone gives `layout` its alignment.
fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

/// mimalloc as the global allocator (see the module documentation).
pub struct Allocator;

// SAFETY: each method hands mimalloc the request unchanged, through the
// aligned entry points whenever the plain ones would not guarantee the
// layout's alignment; `dealloc` and `realloc` get pointers mimalloc made.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain C allocation calls; a null return is passed on.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's contract).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; mimalloc
        // keeps the contents up to the smaller size.
        unsafe {
            if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes around mimalloc's size classes and the 1 KiB fast-path limit.
    const SIZES: &[usize] = &[
        1, 7, 8, 9, 15, 16, 17, 24, 40, 48, 100, 1000, 1024, 1025, 1664, 4000, 8192, 70_000,
    ];

    #[test]
    fn every_block_has_its_layouts_alignment_and_keeps_its_bytes() {
        let a = Allocator;
        for &size in SIZES {
            for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
                // Rust layouts have sizes that are multiples of the alignment.
                let size = size.next_multiple_of(align);
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero layout; every pointer is freed with it.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size}, align {align}");
                    p.write_bytes(0xa5, size);

                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "zeroed {size}, align {align}");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    a.dealloc(z, layout);

                    let bigger = size * 3;
                    let q = a.realloc(p, layout, bigger);
                    assert_eq!(q as usize % align, 0, "grown {size}, align {align}");
                    assert!(
                        std::slice::from_raw_parts(q, size)
                            .iter()
                            .all(|&b| b == 0xa5)
                    );
                    let grown = Layout::from_size_align(bigger, align).unwrap();
                    let r = a.realloc(q, grown, align);
                    assert_eq!(r as usize % align, 0, "shrunk {size}, align {align}");
                    assert_eq!(*r, 0xa5);
                    a.dealloc(r, Layout::from_size_align(align, align).unwrap());
                }
            }
        }
    }

    #[test]
    fn only_layouts_mimalloc_aligns_by_itself_take_the_plain_calls() {
        assert!(plain(8, 8));
        assert!(plain(8, 1664));
        assert!(plain(16, 16));
        assert!(!plain(16, 8));
        assert!(!plain(32, 64));
        assert!(!plain(4096, 4096));
    }
}
