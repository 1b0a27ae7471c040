//! `timeseries::aggregate` against a naive computation: for every bucket, scan all points,
//! keep those whose time is inside it, and compute the aggregation the obvious way.

use proptest::prelude::*;
use tollgate_core::timeseries::{Aggregation, Buckets, Partial, aggregate};

fn naive(points: &[(i64, f64)], b: &Buckets, agg: Aggregation) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    let mut k = 0;
    loop {
        let lo = b.start + k * b.resolution;
        if lo >= b.end {
            break;
        }
        let hi = (lo + b.resolution).min(b.end);
        let inside: Vec<(i64, f64)> = points
            .iter()
            .copied()
            .filter(|&(t, _)| lo <= t && t < hi)
            .collect();
        if !inside.is_empty() {
            let vals: Vec<f64> = inside.iter().map(|p| p.1).collect();
            let n = vals.len() as f64;
            let mean = vals.iter().sum::<f64>() / n;
            let v = match agg {
                Aggregation::First => inside.iter().min_by_key(|p| p.0).unwrap().1,
                Aggregation::Last => inside.iter().max_by_key(|p| p.0).unwrap().1,
                Aggregation::Count => n,
                Aggregation::Max => vals.iter().cloned().fold(f64::MIN, f64::max),
                Aggregation::Min => vals.iter().cloned().fold(f64::MAX, f64::min),
                Aggregation::Sum => vals.iter().sum(),
                Aggregation::Mean => mean,
                Aggregation::Median => {
                    let mut s = vals.clone();
                    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
                    let m = s.len() / 2;
                    if s.len().is_multiple_of(2) {
                        (s[m - 1] + s[m]) / 2.0
                    } else {
                        s[m]
                    }
                }
                Aggregation::StdDev => {
                    (vals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
                }
            };
            out.push((lo, v));
        }
        k += 1;
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

fn same(got: &[(i64, f64)], want: &[(i64, f64)]) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| g.0 == w.0 && close(g.1, w.1))
}

/// A window, and points with unique times scattered around (and outside) it.
fn series() -> impl Strategy<Value = (Buckets, Vec<(i64, f64)>)> {
    (0i64..10_000, 1i64..5_000, 1i64..2_000).prop_flat_map(|(start, width, resolution)| {
        let b = Buckets {
            start,
            end: start + width,
            resolution,
        };
        let times = prop::collection::btree_set(start - 500..start + width + 500, 0..200);
        (Just(b), times).prop_flat_map(|(b, times)| {
            let n = times.len();
            (
                Just(b),
                Just(times.into_iter().collect::<Vec<_>>()),
                prop::collection::vec(-1.0e6f64..1.0e6, n),
            )
                .prop_map(|(b, times, vals)| (b, times.into_iter().zip(vals).collect()))
        })
    })
}

fn any_aggregation() -> impl Strategy<Value = Aggregation> {
    prop::sample::select(Aggregation::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn aggregate_matches_the_naive_computation(
        (b, mut points) in series(),
        agg in any_aggregation(),
        seed in any::<u64>(),
    ) {
        // The input order must not matter.
        let len = points.len().max(1);
        points.rotate_left((seed as usize) % len);
        let got = aggregate(&points, &b, agg);
        let want = naive(&points, &b, agg);
        prop_assert!(same(&got, &want), "{agg}: got {got:?}, want {want:?}");
        // Never more values than buckets, and every value is a bucket start inside the window.
        prop_assert!(got.len() as i64 <= b.count());
        for (t, _) in &got {
            prop_assert!((*t - b.start) % b.resolution == 0 && *t < b.end);
        }
    }

    /// The path the store takes for COUNT/SUM/MIN/MAX/MEAN (per-bucket partials computed in
    /// SQL) gives the same values as the definition.
    #[test]
    fn partials_agree_with_aggregate((b, points) in series(), agg in any_aggregation()) {
        prop_assume!(agg.from_partial());
        let mut partials: Vec<(i64, Partial)> = Vec::new();
        for &(t, v) in &points {
            let Some(i) = b.index(t) else { continue };
            match partials.iter_mut().find(|(k, _)| *k == i) {
                Some((_, p)) => {
                    p.count += 1;
                    p.sum += v;
                    p.min = p.min.min(v);
                    p.max = p.max.max(v);
                }
                None => partials.push((i, Partial { count: 1, sum: v, min: v, max: v })),
            }
        }
        partials.sort_by_key(|p| p.0);
        let via_partials: Vec<(i64, f64)> = partials
            .iter()
            .map(|(i, p)| (b.bucket_start(*i), p.finish(agg).unwrap()))
            .collect();
        let want = aggregate(&points, &b, agg);
        prop_assert!(same(&via_partials, &want), "{agg}: {via_partials:?} vs {want:?}");
    }
}
