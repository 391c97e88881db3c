#if canImport(Glibc)
import CMalloc
import Glibc
#endif
import Synchronization

/// How the host's C heap gives memory back, set once per process.
///
/// A run allocates and frees buffers of the same few sizes per batch (a result copied out of
/// the arena, an encoded message). glibc serves each one above its mmap threshold (128 KiB,
/// raised by the first free up to the size freed) with a fresh mapping, and returns the top
/// of a heap to the kernel once 2 × that threshold is free there, so the next batch's buffer
/// comes back as fresh pages: a page fault and a cleared page every 4 KiB, on every batch.
/// Measured on the 2-core development machine, W1 with 65,536-row batches and 2 workers
/// (512 KiB results), eight alternating runs: 148 → 175 M rows/s with these settings for the
/// host alone; the Python workers gained nothing from the same settings.
///
/// So the host keeps blocks below 32 MiB in its heaps and keeps up to 64 MiB free at a heap's
/// top. What a heap keeps is what it held at its peak (glibc has a heap per busy thread, a
/// few in a run), and the pipeline's credits and batch size bound that (README, "Memory").
///
/// The CLI applies it at start and every `WorkerPool` on creation. A user who set the
/// allocator through the environment (`GLIBC_TUNABLES` with `glibc.malloc.*`, or
/// `MALLOC_TRIM_THRESHOLD_`, `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TOP_PAD_`, `MALLOC_MMAP_MAX_`)
/// keeps their settings; a program that embeds the pool and tunes its allocator itself calls
/// `leaveAllocatorAlone()` before creating a pool.
public enum HeapPolicy {
    /// The largest block served from a heap rather than its own mapping.
    public static let mmapThreshold = 32 << 20
    /// Free bytes at a heap's top kept rather than given back.
    public static let trimThreshold = 64 << 20

    private enum State { case pending, applied, declined }
    private static let state = Mutex(State.pending)

    /// Applies the policy once (later calls do nothing). Returns whether it is in force: false
    /// when the environment sets the allocator, after `leaveAllocatorAlone()`, or off glibc.
    @discardableResult
    public static func apply() -> Bool {
        state.withLock { state in
            if state == .pending {
                state = configure() ? .applied : .declined
            }
            return state == .applied
        }
    }

    /// Keeps this process's allocator as it is: later `apply()` calls (the pool's) do nothing.
    /// Has no effect once the policy was applied.
    public static func leaveAllocatorAlone() {
        state.withLock { state in
            if state == .pending { state = .declined }
        }
    }

    private static func configure() -> Bool {
        #if canImport(Glibc)
        if userSetsAllocator({ name in getenv(name).map { String(cString: $0) } }) { return false }
        return mallopt(M_MMAP_THRESHOLD, Int32(mmapThreshold)) == 1 && mallopt(M_TRIM_THRESHOLD, Int32(trimThreshold)) == 1
        #else
        return false
        #endif
    }

    /// Whether the environment (`variable` looks a name up) configures glibc's allocator itself.
    static func userSetsAllocator(_ variable: (String) -> String?) -> Bool {
        if ["MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_"].contains(where: { variable($0) != nil }) {
            return true
        }
        return variable("GLIBC_TUNABLES")?.contains("glibc.malloc.") ?? false
    }
}
