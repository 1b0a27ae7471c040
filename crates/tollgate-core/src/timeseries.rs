//! Time-series bucketing and aggregation: the meaning of `data.timeSeriesQuery`.
//!
//! A query window `[start, end)` is cut into buckets of `resolution` milliseconds starting at
//! `start` (the last one may be shorter). Each bucket with at least one point yields one value
//! per attribute, named by the bucket's start time; empty buckets yield nothing.
//!
//! [`aggregate`] is the definition, over a device attribute's points. The store computes
//! COUNT, SUM, MIN, MAX and MEAN in SQL as per-bucket [`Partial`]s (one pass, no rows sent
//! back) and [`Partial::finish`] turns them into the same values; the property tests check
//! both against a naive computation.

use std::fmt;

/// The reference's aggregations (`timeSeriesQuery.json`), except `NONE` (raw points) which is
/// not an aggregation, and `TIMEATVALUE`, which this server does not implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Aggregation {
    First,
    Last,
    Count,
    Max,
    Min,
    Median,
    Mean,
    Sum,
    /// Population standard deviation (divides by n), so a single point gives 0.
    StdDev,
}

impl Aggregation {
    pub const ALL: [Aggregation; 9] = [
        Aggregation::First,
        Aggregation::Last,
        Aggregation::Count,
        Aggregation::Max,
        Aggregation::Min,
        Aggregation::Median,
        Aggregation::Mean,
        Aggregation::Sum,
        Aggregation::StdDev,
    ];

    pub fn parse(s: &str) -> Option<Aggregation> {
        Aggregation::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::First => "FIRST",
            Aggregation::Last => "LAST",
            Aggregation::Count => "COUNT",
            Aggregation::Max => "MAX",
            Aggregation::Min => "MIN",
            Aggregation::Median => "MEDIAN",
            Aggregation::Mean => "MEAN",
            Aggregation::Sum => "SUM",
            Aggregation::StdDev => "STD_DEV",
        }
    }

    /// Can this aggregation be computed from a bucket's [`Partial`] (so in SQL)?
    pub fn from_partial(self) -> bool {
        matches!(
            self,
            Aggregation::Count
                | Aggregation::Max
                | Aggregation::Min
                | Aggregation::Mean
                | Aggregation::Sum
        )
    }
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A query window cut into buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buckets {
    /// First millisecond in the window.
    pub start: i64,
    /// First millisecond after the window.
    pub end: i64,
    /// Bucket width in milliseconds (at least 1).
    pub resolution: i64,
}

impl Buckets {
    /// Number of buckets (the last may be partial).
    pub fn count(&self) -> i64 {
        let width = self.end - self.start;
        if width <= 0 {
            0
        } else {
            (width + self.resolution - 1) / self.resolution
        }
    }

    /// The bucket `time` falls in, if it is in the window.
    pub fn index(&self, time: i64) -> Option<i64> {
        (self.start..self.end)
            .contains(&time)
            .then(|| (time - self.start) / self.resolution)
    }

    /// Start time of bucket `index`.
    pub fn bucket_start(&self, index: i64) -> i64 {
        self.start + index * self.resolution
    }
}

/// What SQL can compute for a bucket in one pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Partial {
    pub count: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Partial {
    /// The value of `agg` for this bucket, for aggregations where [`Aggregation::from_partial`].
    pub fn finish(&self, agg: Aggregation) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        match agg {
            Aggregation::Count => Some(self.count as f64),
            Aggregation::Sum => Some(self.sum),
            Aggregation::Min => Some(self.min),
            Aggregation::Max => Some(self.max),
            Aggregation::Mean => Some(self.sum / self.count as f64),
            _ => None,
        }
    }
}

/// Aggregate the points `(time, value)` of one series into `buckets`: one `(bucket start,
/// value)` per non-empty bucket, in time order. Points outside the window are ignored. Times
/// within one series are unique (the store keys points by time), so FIRST and LAST are
/// well-defined; given duplicates, the one listed first (FIRST) or last (LAST) wins.
pub fn aggregate(points: &[(i64, f64)], buckets: &Buckets, agg: Aggregation) -> Vec<(i64, f64)> {
    let mut indexed: Vec<(i64, i64, f64)> = points
        .iter()
        .filter_map(|&(t, v)| buckets.index(t).map(|i| (i, t, v)))
        .collect();
    // Stable: equal times keep their input order.
    indexed.sort_by_key(|&(i, t, _)| (i, t));
    let mut out = Vec::new();
    let mut rest = indexed.as_slice();
    while let Some(&(index, _, _)) = rest.first() {
        let len = rest.iter().take_while(|p| p.0 == index).count();
        let (bucket, tail) = rest.split_at(len);
        let values: Vec<f64> = bucket.iter().map(|p| p.2).collect();
        out.push((buckets.bucket_start(index), reduce(&values, agg)));
        rest = tail;
    }
    out
}

/// `agg` over a non-empty list of values in time order.
fn reduce(values: &[f64], agg: Aggregation) -> f64 {
    let n = values.len() as f64;
    match agg {
        Aggregation::First => values[0],
        Aggregation::Last => values[values.len() - 1],
        Aggregation::Count => n,
        Aggregation::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Aggregation::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
        Aggregation::Sum => values.iter().sum(),
        Aggregation::Mean => values.iter().sum::<f64>() / n,
        Aggregation::Median => {
            let mut sorted = values.to_vec();
            sorted.sort_by(f64::total_cmp);
            let mid = sorted.len() / 2;
            if sorted.len() % 2 == 1 {
                sorted[mid]
            } else {
                (sorted[mid - 1] + sorted[mid]) / 2.0
            }
        }
        Aggregation::StdDev => {
            // Two passes: subtracting the mean first keeps large offsets from cancelling.
            let mean = values.iter().sum::<f64>() / n;
            (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_start_at_the_window_start() {
        let b = Buckets {
            start: 1000,
            end: 2000,
            resolution: 300,
        };
        assert_eq!(b.count(), 4); // 1000, 1300, 1600, 1900 (partial)
        assert_eq!(b.index(999), None);
        assert_eq!(b.index(1000), Some(0));
        assert_eq!(b.index(1299), Some(0));
        assert_eq!(b.index(1300), Some(1));
        assert_eq!(b.index(1999), Some(3));
        assert_eq!(b.index(2000), None);
        assert_eq!(b.bucket_start(3), 1900);
    }

    #[test]
    fn each_aggregation_on_a_known_bucket() {
        let b = Buckets {
            start: 0,
            end: 100,
            resolution: 50,
        };
        // Out of time order on purpose; one point in the second bucket; one outside.
        let pts = [
            (30, 4.0),
            (10, 1.0),
            (20, 7.0),
            (40, 2.0),
            (60, 10.0),
            (100, 99.0),
        ];
        let at = |agg| aggregate(&pts, &b, agg);
        assert_eq!(at(Aggregation::First), vec![(0, 1.0), (50, 10.0)]);
        assert_eq!(at(Aggregation::Last), vec![(0, 2.0), (50, 10.0)]);
        assert_eq!(at(Aggregation::Count), vec![(0, 4.0), (50, 1.0)]);
        assert_eq!(at(Aggregation::Max), vec![(0, 7.0), (50, 10.0)]);
        assert_eq!(at(Aggregation::Min), vec![(0, 1.0), (50, 10.0)]);
        assert_eq!(at(Aggregation::Sum), vec![(0, 14.0), (50, 10.0)]);
        assert_eq!(at(Aggregation::Mean), vec![(0, 3.5), (50, 10.0)]);
        assert_eq!(at(Aggregation::Median), vec![(0, 3.0), (50, 10.0)]);
        // values 1,7,4,2: mean 3.5, squared deviations 6.25+12.25+0.25+2.25 = 21, /4 = 5.25
        assert_eq!(
            at(Aggregation::StdDev),
            vec![(0, 5.25f64.sqrt()), (50, 0.0)]
        );
    }

    #[test]
    fn partials_finish_like_the_definition() {
        let p = Partial {
            count: 4,
            sum: 14.0,
            min: 1.0,
            max: 7.0,
        };
        assert_eq!(p.finish(Aggregation::Mean), Some(3.5));
        assert_eq!(p.finish(Aggregation::Count), Some(4.0));
        assert_eq!(p.finish(Aggregation::Median), None);
        assert!(
            Aggregation::ALL
                .iter()
                .all(|a| Aggregation::parse(a.as_str()) == Some(*a))
        );
    }
}
