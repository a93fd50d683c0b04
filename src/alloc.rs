//! The memory allocator the `nudge` binary and the benches run on: mimalloc,
//! told never to hand memory back to the kernel, with mid-sized blocks
//! placed densely.
//!
//! It exists because a small fit spends more time getting fresh memory from
//! the kernel than computing: glibc's allocator returns freed blocks and
//! faults them back in on every reuse (a third of a SciFact fit), and on a
//! system with transparent huge pages every first touch of a 2 MiB region
//! costs the kernel 2 MiB of zeroing. Library users who fit many times in
//! one process should use it too (see README, "How it is built").

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// mimalloc, with blocks of 64 KiB to 512 KiB asked for as 512 KiB + 1.
///
/// mimalloc 3 serves blocks of about 84 KiB to 512 KiB from pages of 4 MiB,
/// one page per size class and thread, and advises its arena for huge
/// pages; the first block of each such page therefore makes the kernel zero
/// a fresh 2 MiB, however little of it is used. A fit allocates a few dozen
/// blocks of that size (score blocks, packed GEMM operands, id tables), on
/// several threads: 5 of the 21 huge pages a SciFact fit had zeroed. A
/// block just over 512 KiB gets a page of its own, sized to fit and placed
/// next to the others, so those blocks share huge pages. Only address
/// space is spent on the rounding: pages that are never touched cost no
/// memory.
pub struct Allocator;

/// Blocks in `(DENSE_FROM, DENSE_TO]` bytes are asked for as `DENSE_TO + 1`.
const DENSE_FROM: usize = 64 << 10;
const DENSE_TO: usize = 512 << 10;

fn rounded(size: usize) -> usize {
    if size > DENSE_FROM && size <= DENSE_TO {
        DENSE_TO + 1
    } else {
        size
    }
}

// SAFETY: every call goes to mimalloc's aligned functions with the layout's
// alignment; `mi_free` and `mi_realloc_aligned` find a block's size
// themselves, so a block allocated larger than its layout says is freed and
// moved correctly.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { mi::mi_malloc_aligned(rounded(layout.size()), layout.align()) as *mut u8 }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { mi::mi_zalloc_aligned(rounded(layout.size()), layout.align()) as *mut u8 }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { mi::mi_free(ptr as *mut c_void) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe {
            mi::mi_realloc_aligned(ptr as *mut c_void, rounded(new_size), layout.align()) as *mut u8
        }
    }
}

/// Tells mimalloc never to return freed memory to the kernel; call it first
/// thing in `main`.
///
/// A run is short, and mimalloc purges (hands back with madvise) the pages
/// of threads that end and, at exit, everything: work for the kernel that
/// only the next allocation (faulting in zeroed pages again) or nobody
/// benefits from. That came to a sixth of a small fit's time. The cost is
/// that the resident size stays at its peak until the process ends.
pub fn keep_freed_memory() {
    // `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (the -sys crate
    // names no constant for it); -1 means never purge.
    const PURGE_DELAY: mi::mi_option_t = 15;
    // SAFETY: plain option setters, callable at any time.
    unsafe {
        // Guard against a renumbered enum: the default is a delay in ms
        // (1000 in mimalloc 3.1), an option of no other meaning would not
        // sit in this range.
        if (1..=100_000).contains(&mi::mi_option_get(PURGE_DELAY)) {
            mi::mi_option_set(PURGE_DELAY, -1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mid_sized_blocks_are_rounded_up_and_usable() {
        assert_eq!(rounded(64 << 10), 64 << 10);
        assert_eq!(rounded((64 << 10) + 1), (512 << 10) + 1);
        assert_eq!(rounded(512 << 10), (512 << 10) + 1);
        assert_eq!(rounded((512 << 10) + 1), (512 << 10) + 1);
        assert_eq!(rounded(8 << 20), 8 << 20);
        // Through the allocator itself: grow a block across the range and
        // back, keeping its contents, with an alignment above the default.
        unsafe {
            let layout = Layout::from_size_align(100, 64).unwrap();
            let p = Allocator.alloc(layout);
            assert!(!p.is_null() && (p as usize).is_multiple_of(64));
            p.write_bytes(7, 100);
            let p = Allocator.realloc(p, layout, 100 << 10);
            assert!((p as usize).is_multiple_of(64));
            assert!((0..100).all(|i| *p.add(i) == 7));
            p.add((100 << 10) - 1).write(9);
            let big = Layout::from_size_align(100 << 10, 64).unwrap();
            let p = Allocator.realloc(p, big, 10);
            assert!((0..10).all(|i| *p.add(i) == 7));
            Allocator.dealloc(p, Layout::from_size_align(10, 64).unwrap());
            let z = Allocator.alloc_zeroed(Layout::from_size_align(200 << 10, 8).unwrap());
            assert!((0..200 << 10).all(|i| *z.add(i) == 0));
            Allocator.dealloc(z, Layout::from_size_align(200 << 10, 8).unwrap());
        }
    }
}
