//! Opening a device and its failure modes (`src/backend/gpu/context.rs`):
//! errors rather than panics or hangs, a usage error for an adapter that is
//! not there, read-backs racing other threads' polls, the options' defaults.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::backends::gpu;
use nudge::backend::gpu::context::Context;
use nudge::{Error, Gpu, GpuOptions, Kind, Precision};

#[test]
fn device_errors_become_runtime_errors() {
    if gpu().is_none() {
        return;
    }
    let ctx = Context::new(&GpuOptions {
        adapter: None,
        precision: Precision::F32,
        ..Default::default()
    })
    .unwrap();
    // A buffer over the device's limit is a validation error in wgpu, which
    // would panic in its default handler.
    let too_big = ctx.limits.max_buffer_size.saturating_add(1 << 20);
    let err = ctx
        .scoped("allocating", || {
            // Using the failed buffer must not panic either.
            let b = ctx.storage("huge", too_big);
            ctx.write(&b, &[0u8; 16]);
            ctx.read::<f32>(&b, 16)
        })
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Runtime);
    // The message is the only place that names the step that failed.
    match &err {
        Error::Gpu { message } => assert!(message.contains("allocating"), "{message}"),
        other => panic!("not Error::Gpu: {other:?}"),
    }
    // The device is still usable afterwards.
    let b = ctx.upload("small", &[1.0f32, 2.0, 3.0, 4.0]);
    assert_eq!(ctx.read::<f32>(&b, 16).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn an_adapter_filter_that_matches_nothing_is_a_usage_error() {
    if gpu().is_none() {
        return;
    }
    let err = Gpu::new(&GpuOptions {
        adapter: Some("no such adapter 1234".into()),
        precision: Precision::F32,
        ..Default::default()
    })
    .err()
    .expect("no adapter should match");
    assert_eq!(err.kind(), Kind::Usage);
    match &err {
        Error::NoSuchAdapter { wanted, available } => {
            assert_eq!(wanted, "no such adapter 1234");
            assert!(!available.is_empty(), "{err:?}");
        }
        other => panic!("not Error::NoSuchAdapter: {other:?}"),
    }
}

#[test]
fn a_lost_device_is_an_error_not_a_panic() {
    if gpu().is_none() {
        return;
    }
    let ctx = Context::new(&GpuOptions::default()).unwrap();
    ctx.device.destroy();
    let r = ctx.scoped("reading after loss", || {
        let b = ctx.upload("x", &[1.0f32; 4]);
        ctx.read::<f32>(&b, 16)
    });
    let err = r.unwrap_err();
    assert!(matches!(err, Error::Gpu { .. }), "{err:?}");
    assert_eq!(err.kind(), Kind::Runtime);
}

/// Read-backs while other threads poll the same device, as parallel tests
/// and the scan's pipelined slots do. A map callback fires in whichever
/// thread's poll finds the copy done, so the reader's own wait can return
/// before the callback has run. An early version gave up after one extra
/// poll ("read-back never completed", about one CI run in thirty) and left
/// the buffer mapped, which failed the next submission too. Here six threads
/// do nothing but poll, so that they often win that race: the old code failed
/// this test in ten runs out of ten on a 2-core machine (lavapipe).
#[test]
fn read_backs_complete_while_other_threads_poll() {
    if gpu().is_none() {
        return;
    }
    const POLLERS: usize = 6;
    const READERS: usize = 6;
    let ctx = Context::new(&Default::default()).unwrap();
    let data: Vec<u32> = (0..16).collect();
    let buf = ctx.upload("data", &data);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..POLLERS {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    let _ = ctx.device.poll(wgpu::PollType::Poll);
                }
            });
        }
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..6000 {
                        assert_eq!(ctx.read::<u32>(&buf, 64).unwrap(), data);
                    }
                })
            })
            .collect();
        let ok = readers.into_iter().all(|r| r.join().is_ok());
        done.store(true, Ordering::Relaxed);
        assert!(ok, "a read-back failed");
    });
}

/// `Precision` parses and prints its command-line names without clap, and
/// `GpuOptions` waits 600 s by default. Needs no device.
#[test]
fn precision_names_and_option_defaults() {
    for p in [Precision::F32, Precision::F16] {
        assert_eq!(p.as_str().parse::<Precision>().unwrap(), p);
        assert_eq!(p.to_string(), p.as_str());
    }
    assert_eq!("f16".parse::<Precision>().unwrap(), Precision::F16);
    let err = "f64".parse::<Precision>().unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    assert_eq!(err.kind(), Kind::Usage);
    let opts = GpuOptions::default();
    assert_eq!(opts.timeout, std::time::Duration::from_secs(600));
    assert_eq!(opts.precision, Precision::F32);
    assert!(opts.adapter.is_none() && opts.buffer_limit.is_none() && !opts.packed_f16_only);
}
