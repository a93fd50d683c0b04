//! Per-kernel GPU time from timestamp queries.
//!
//! Why: the scan's wall time mixes reading, copying, uploading and every
//! kernel, so it cannot say which kernel to make faster, nor how far a
//! kernel is from the adapter's peak. Where the adapter has
//! `Features::TIMESTAMP_QUERY`, every dispatch (each is its own compute
//! pass) writes a timestamp at the start and at the end of its pass, and
//! the time between them is added to its kernel's total.
//!
//! How, without ever reading a query that has not been written: each timed
//! dispatch gets a *slot* (two queries, and 256 bytes of a resolve buffer,
//! the alignment `resolve_query_set` needs). The dispatch resolves its two
//! queries into its slot in the same command encoder, right after its pass,
//! so the slot holds its times as soon as that encoder has executed.
//! `Profiler::collect` copies the resolve buffer out and clears it in one
//! submission; slots that still read zero belong to encoders not yet
//! submitted (another thread may be recording one) and stay pending until a
//! later collection. A dispatch that finds no free slot runs untimed (and is
//! counted), so timing never blocks or fails a step.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Timestamp slots (two queries each; the query-set limit is 4096).
const SLOTS: u32 = 2048;
/// Bytes per slot in the resolve buffer (`QUERY_RESOLVE_BUFFER_ALIGNMENT`).
const SLOT_BYTES: u64 = wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT;

/// The measured GPU time of one kernel, summed over its dispatches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KernelTime {
    /// The kernel (its field name in the kernel table, e.g. `gemm`).
    pub name: String,
    /// Timed dispatches.
    pub calls: u64,
    /// GPU time of those dispatches, in milliseconds.
    pub ms: f64,
    /// Floating-point operations those dispatches did (0 when the kernel
    /// does not count them; the GEMM counts `2 m n d`).
    pub flops: f64,
}

impl KernelTime {
    /// GFLOP/s over the timed dispatches, when they counted any work.
    pub fn gflops(&self) -> Option<f64> {
        (self.flops > 0.0 && self.ms > 0.0).then(|| self.flops / (self.ms * 1e6))
    }
}

#[derive(Default)]
struct State {
    /// Slot -> (kernel, flops) of the dispatch waiting for its times.
    pending: BTreeMap<u32, (&'static str, f64)>,
    free: Vec<u32>,
    totals: BTreeMap<&'static str, KernelTime>,
    /// Host wall time of the scan pipeline's steps (see `Profiler::add_host`).
    host: BTreeMap<&'static str, KernelTime>,
    /// Dispatches that found no free slot.
    untimed: u64,
}

/// Timestamp queries of one device (see the module comment); inert where
/// the adapter has no `TIMESTAMP_QUERY`.
pub struct Profiler {
    queries: Option<Queries>,
    state: Mutex<State>,
    /// Held through a whole [`Profiler::collect`]: two collections at once
    /// could hand one's old times to a slot the other just freed and reused.
    collecting: Mutex<()>,
}

struct Queries {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
    /// Nanoseconds per timestamp tick.
    period_ns: f64,
}

/// The timestamp writes of one dispatch, and where to resolve them.
pub(crate) struct Slot<'p> {
    set: &'p wgpu::QuerySet,
    resolve: &'p wgpu::Buffer,
    slot: u32,
}

impl Slot<'_> {
    /// The pass's timestamp writes: query 2s at its start, 2s+1 at its end.
    pub(crate) fn writes(&self) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: self.set,
            beginning_of_pass_write_index: Some(2 * self.slot),
            end_of_pass_write_index: Some(2 * self.slot + 1),
        }
    }

    /// Records the resolve of the two queries into the slot (after the pass
    /// has ended, in the same encoder).
    pub(crate) fn resolve(&self, enc: &mut wgpu::CommandEncoder) {
        let s = self.slot;
        enc.resolve_query_set(
            self.set,
            2 * s..2 * s + 2,
            self.resolve,
            s as u64 * SLOT_BYTES,
        );
    }
}

impl Profiler {
    /// Timestamp queries on `device` when `enabled` (the device was opened
    /// with `TIMESTAMP_QUERY`); an inert profiler otherwise.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, enabled: bool) -> Profiler {
        let queries = enabled.then(|| {
            let bytes = SLOTS as u64 * SLOT_BYTES;
            Queries {
                set: device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("kernel timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2 * SLOTS,
                }),
                resolve: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timestamp resolve"),
                    size: bytes,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                staging: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timestamp read-back"),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                period_ns: queue.get_timestamp_period() as f64,
            }
        });
        let state = State {
            // Popped from the end: slot 0 first.
            free: (0..SLOTS).rev().collect(),
            ..State::default()
        };
        Profiler {
            queries,
            state: Mutex::new(state),
            collecting: Mutex::new(()),
        }
    }

    /// Whether dispatches are timed at all.
    pub fn enabled(&self) -> bool {
        self.queries.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for one dispatch of `kernel` doing `flops` operations, or
    /// `None` (untimed) when timing is off or every slot is pending.
    pub(crate) fn slot(&self, kernel: &'static str, flops: f64) -> Option<Slot<'_>> {
        let q = self.queries.as_ref()?;
        let mut st = self.lock();
        let Some(slot) = st.free.pop() else {
            st.untimed += 1;
            return None;
        };
        st.pending.insert(slot, (kernel, flops));
        Some(Slot {
            set: &q.set,
            resolve: &q.resolve,
            slot,
        })
    }

    /// Fewer than a quarter of the slots are free: time to `collect`.
    pub fn running_low(&self) -> bool {
        self.enabled() && (self.lock().free.len() as u32) < SLOTS / 4
    }

    /// Reads the times of every slot whose encoder has executed, adds them
    /// to the totals and frees those slots. `read` copies the resolve
    /// buffer into the staging buffer, clears the resolve buffer, submits,
    /// waits and returns the staging buffer's bytes (the context's one
    /// read-back path).
    pub(crate) fn collect(
        &self,
        read: impl FnOnce(&wgpu::Buffer, &wgpu::Buffer) -> crate::error::Result<Vec<u64>>,
    ) -> crate::error::Result<()> {
        let Some(q) = &self.queries else {
            return Ok(());
        };
        let _one = self.collecting.lock().unwrap_or_else(|p| p.into_inner());
        if self.lock().pending.is_empty() {
            return Ok(());
        }
        let ticks = read(&q.resolve, &q.staging)?;
        let per_slot = (SLOT_BYTES / 8) as usize;
        let mut st = self.lock();
        let done: Vec<u32> = st
            .pending
            .keys()
            .copied()
            .filter(|&s| {
                let i = s as usize * per_slot;
                ticks[i] != 0 && ticks[i + 1] != 0
            })
            .collect();
        for s in done {
            let (name, flops) = st.pending.remove(&s).expect("a pending slot");
            let i = s as usize * per_slot;
            let ns = ticks[i + 1].saturating_sub(ticks[i]) as f64 * q.period_ns;
            let t = st.totals.entry(name).or_insert_with(|| KernelTime {
                name: name.to_string(),
                ..KernelTime::default()
            });
            t.calls += 1;
            t.ms += ns / 1e6;
            t.flops += flops;
            st.free.push(s);
        }
        Ok(())
    }

    /// The totals so far (only of collected slots), by kernel name.
    pub fn totals(&self) -> Vec<KernelTime> {
        self.lock().totals.values().cloned().collect()
    }

    /// Dispatches that ran untimed because every slot was pending.
    pub fn untimed(&self) -> u64 {
        self.lock().untimed
    }

    /// Adds `time` to the host-side step `name`: wall time the feeding
    /// thread spent in one step of the scan pipeline (waiting for a ring
    /// slot, filling the upload staging, recording and submitting). Kept
    /// apart from the kernels' GPU times, which they would otherwise be
    /// summed with; recorded whether or not the adapter has timestamps.
    pub(crate) fn add_host(&self, name: &'static str, time: std::time::Duration) {
        let mut st = self.lock();
        let t = st.host.entry(name).or_insert_with(|| KernelTime {
            name: name.to_string(),
            ..KernelTime::default()
        });
        t.calls += 1;
        t.ms += time.as_secs_f64() * 1e3;
    }

    /// The host-side step totals so far, by name.
    pub fn host_totals(&self) -> Vec<KernelTime> {
        self.lock().host.values().cloned().collect()
    }

    /// Forgets the totals (not the pending slots).
    pub fn reset(&self) {
        let mut st = self.lock();
        st.totals.clear();
        st.host.clear();
        st.untimed = 0;
    }
}
