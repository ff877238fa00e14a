//! The allocator's own account of the process's memory, for `/metrics`: what the program
//! holds (`allocated`), the pages jemalloc has in use for it (`active`), what is resident
//! (`resident`, including jemalloc's metadata and dirty pages not yet returned) and what it
//! keeps mapped but returned (`retained`). A resident size that grows while `allocated` stays
//! flat is the allocator keeping pages (fragmentation, decay), not a leak in weir; both
//! growing is a leak. From jemalloc's `stats.*` (refreshed by `epoch` at each render).

/// Sets `weir_allocator_bytes{kind}` (allocated, active, resident, retained, mapped), bytes.
/// Nothing on platforms where weir does not use jemalloc.
pub(crate) fn publish_gauges() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use tikv_jemalloc_ctl::{epoch, stats};
        if epoch::advance().is_err() {
            return;
        }
        let read = [
            ("allocated", stats::allocated::read()),
            ("active", stats::active::read()),
            ("resident", stats::resident::read()),
            ("retained", stats::retained::read()),
            ("mapped", stats::mapped::read()),
        ];
        for (kind, value) in read {
            if let Ok(v) = value {
                metrics::gauge!("weir_allocator_bytes", "kind" => kind).set(v as f64);
            }
        }
    }
}

/// Turns transparent huge pages off for this process (`prctl(PR_SET_THP_DISABLE)`), so its
/// resident size is the pages it touches. x264 asks for huge pages on its large buffers
/// (`madvise(MADV_HUGEPAGE)`); the flag stays on those address ranges after the encoder
/// frees them, jemalloc reuses them for anything, and the kernel's khugepaged then makes
/// whole 2 MiB pages of them resident: on the default ladder the resident size climbed by
/// tens of MB an hour, session after session, while the heap stayed flat
/// (benches/soak/RESULTS.md). Logged and ignored where the kernel refuses.
pub(crate) fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!(error = %e, "transparent huge pages stay on (prctl refused)");
    }
}
