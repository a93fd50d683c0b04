//! Structured synthetic datasets on which NUDGE measurably helps, at any size:
//! what `nudge synth` writes and `nudge bench` runs on.
//!
//! Records sit around cluster centres. Each "group" of 1-3 records of one
//! cluster answers a topic; its queries are the group's mean pushed along a
//! per-group intent, along one query-style direction shared by all queries,
//! plus noise. Queries therefore miss their records in a systematic way that
//! training queries reveal, which is what NUDGE corrects. Dev and test
//! queries ask about groups that training touched.
//!
//! Every corpus row is a function of (seed, row) alone, so generation is
//! parallel, deterministic whatever the thread count, and any row can be
//! regenerated to build the queries without keeping the corpus in memory.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use crate::control::Control;
use crate::data::npy::{NpyWriter, OutDtype, write_matrix};
use crate::error::{Error, Result};

/// The size and seed of a synthetic dataset.
#[derive(Debug, Clone)]
pub struct SynthSpec {
    /// Corpus rows.
    pub records: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// Training queries.
    pub train: usize,
    /// Dev queries.
    pub dev: usize,
    /// Test queries (0 for none).
    pub test: usize,
    /// The same seed gives the same bytes, whatever the thread count.
    pub seed: u64,
}

/// Spread of records around their centre, and of queries around their group.
const RECORD_NOISE: f32 = 0.9;
const QUERY_NOISE: f32 = 2.0;
const INTENT: f32 = 0.6;
const STYLE: f32 = 0.2;

fn rng(seed: u64, stream: u64, index: u64) -> Xoshiro256PlusPlus {
    // SplitMix-style mixing so neighbouring indices get unrelated streams.
    let mut z = seed
        ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ index.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Xoshiro256PlusPlus::seed_from_u64(z ^ (z >> 31))
}

fn gaussian(r: &mut Xoshiro256PlusPlus, out: &mut [f32], scale: f32) {
    for x in out.iter_mut() {
        let v: f32 = r.sample(StandardNormal);
        *x = v * scale;
    }
}

fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

struct Generator {
    spec: SynthSpec,
    centres: Vec<f32>,
    clusters: usize,
}

impl Generator {
    fn new(spec: &SynthSpec) -> Generator {
        let clusters = (spec.records / 2000)
            .clamp(8, 4096)
            .min(spec.records.max(1));
        let d = spec.dim;
        let mut centres = vec![0.0; clusters * d];
        for (c, row) in centres.chunks_mut(d).enumerate() {
            gaussian(&mut rng(spec.seed, 1, c as u64), row, 1.0);
            unit(row);
        }
        Generator {
            spec: spec.clone(),
            centres,
            clusters,
        }
    }

    /// Corpus row `i`: its cluster centre plus noise, at a norm between 0.5
    /// and 2 (nudge normalises the corpus; the data should make it).
    fn record(&self, i: usize, out: &mut [f32]) {
        let d = self.spec.dim;
        let mut r = rng(self.spec.seed, 2, i as u64);
        gaussian(&mut r, out, RECORD_NOISE / (d as f32).sqrt());
        let c = i % self.clusters;
        for (x, m) in out.iter_mut().zip(&self.centres[c * d..(c + 1) * d]) {
            *x += m;
        }
        unit(out);
        let scale: f32 = r.random_range(0.5..2.0);
        out.iter_mut().for_each(|x| *x *= scale);
    }
}

/// What was written, for the command's summary.
pub struct Written {
    /// Answer groups (topics).
    pub groups: usize,
    /// Clusters the records sit around.
    pub clusters: usize,
}

/// Writes a dataset folder (`corpus.npy`, `queries.npy`, `qrels/*.tsv`) of
/// `spec`'s size to `dir`.
pub fn write(dir: &Path, spec: &SynthSpec, control: &Control) -> Result<Written> {
    if spec.records == 0 || spec.dim == 0 || spec.train == 0 || spec.dev == 0 {
        return Err(Error::invalid(
            "records, dim, train and dev must each be at least 1",
        ));
    }
    std::fs::create_dir_all(dir.join("qrels"))
        .map_err(|e| Error::io(dir, "create directory", e))?;
    let g = Generator::new(spec);
    let d = spec.dim;

    // Corpus: blocks generated in parallel, written in order.
    let block = 4096;
    let mut w = NpyWriter::create(&dir.join("corpus.npy"), spec.records, d, OutDtype::F32)?;
    let progress = control.phase("corpus", spec.records as u64, "rows");
    let batch = block * rayon::current_num_threads().max(1) * 2;
    let mut start = 0;
    while start < spec.records {
        control.check()?;
        let end = (start + batch).min(spec.records);
        let mut rows = vec![0.0f32; (end - start) * d];
        rows.par_chunks_mut(d)
            .enumerate()
            .for_each(|(i, row)| g.record(start + i, row));
        w.write_rows(&rows)?;
        start = end;
        progress.set(start as u64);
    }
    drop(progress);
    w.finish()?;

    // Groups of 1-3 records of one cluster; about two training queries each.
    let groups = (spec.train / 2).clamp(1, spec.records);
    let mut members: Vec<Vec<usize>> = Vec::with_capacity(groups);
    for gi in 0..groups {
        let mut r = rng(spec.seed, 3, gi as u64);
        let anchor = r.random_range(0..spec.records);
        let size = r.random_range(1..=3usize);
        let mut m = vec![anchor];
        for _ in 1..size {
            // Another record of the anchor's cluster (rows i, i + C, i + 2C...).
            let steps = (spec.records - 1 - anchor) / g.clusters;
            let back = anchor / g.clusters;
            let k = r.random_range(0..=steps + back) as isize - back as isize;
            let other = (anchor as isize + k * g.clusters as isize) as usize;
            if !m.contains(&other) {
                m.push(other);
            }
        }
        members.push(m);
    }
    let mut style = vec![0.0; d];
    gaussian(&mut rng(spec.seed, 4, 0), &mut style, 1.0);
    unit(&mut style);

    // Queries: train t asks about group t % groups; dev and test ask about
    // random groups, all of which training touched.
    let total = spec.train + spec.dev + spec.test;
    let mut queries = vec![0.0f32; total * d];
    let mut group_of = Vec::with_capacity(total);
    for qi in 0..total {
        group_of.push(if qi < spec.train {
            qi % groups
        } else {
            rng(spec.seed, 5, qi as u64).random_range(0..groups)
        });
    }
    queries.par_chunks_mut(d).enumerate().for_each(|(qi, q)| {
        let gi = group_of[qi];
        let mut tmp = vec![0.0; d];
        for &m in &members[gi] {
            g.record(m, &mut tmp);
            unit(&mut tmp);
            q.iter_mut()
                .zip(&tmp)
                .for_each(|(a, b)| *a += b / members[gi].len() as f32);
        }
        let mut intent = vec![0.0; d];
        gaussian(&mut rng(spec.seed, 6, gi as u64), &mut intent, 1.0);
        unit(&mut intent);
        gaussian(
            &mut rng(spec.seed, 7, qi as u64),
            &mut tmp,
            QUERY_NOISE / (d as f32).sqrt(),
        );
        for j in 0..d {
            q[j] += INTENT * intent[j] + STYLE * style[j] + tmp[j];
        }
        unit(q);
    });
    write_matrix(&dir.join("queries.npy"), &queries, d, OutDtype::F32)?;

    let splits = [
        ("train", 0, spec.train),
        ("dev", spec.train, spec.train + spec.dev),
        ("test", spec.train + spec.dev, total),
    ];
    for (name, from, to) in splits {
        if from == to {
            continue;
        }
        let mut text = String::from("query-id\tcorpus-id\tscore\n");
        for (qi, gi) in group_of.iter().enumerate().take(to).skip(from) {
            for &m in &members[*gi] {
                text.push_str(&format!("{qi}\t{m}\t1\n"));
            }
        }
        crate::data::atomic_write(
            &dir.join("qrels").join(format!("{name}.tsv")),
            text.as_bytes(),
        )?;
    }
    Ok(Written {
        groups,
        clusters: g.clusters,
    })
}
