//! Software prefetch. With 100,000 users the detector's state is far larger
//! than any cache, and each event lands on a user whose state has gone
//! cold: its cost is cache misses. Asking for the lines an event will touch
//! as soon as their addresses are known lets those misses overlap instead
//! of queueing one behind the other (about 7% more events/s in
//! `detect_bench`). The same holds for the users whose windows close
//! together: `Engine::advance_to` loads a few users ahead (8-10% more on
//! average, measured as two runs side by side on the two cores, swapped,
//! since the machine's own noise is larger than that).

/// Asks the CPU to start loading the cache line at `p`. A hint only: it
/// never faults and changes nothing a program can observe.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching does not dereference `p`; any address is allowed.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
