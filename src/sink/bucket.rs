//! Time buckets of a directory sink: which directory a record's time puts a partition's active
//! file in (`layout`), and which clock-aligned period (`rotate_aligned`).
//!
//! The rule (ARCHITECTURE.md): a partition's active file belongs to the bucket of the highest
//! record time the partition has seen (`hi`). A record whose bucket differs and whose time is
//! above `hi` starts a later bucket: the active file is sealed first. Any other record whose
//! bucket differs is late: it goes into the active bucket and is counted. The bucket never moves
//! back, so rotated files' buckets increase with offsets within a partition.

use std::time::{Duration, SystemTime};

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use crate::config::layout::{self, Template};

/// Where a record time puts a partition's active file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The bucket directory, relative to the sink directory.
    pub dir: String,
    /// The clock-aligned period (`rotate_aligned` with a time layout), else `None`.
    pub period: Option<i64>,
}

/// What a record's time means for the active file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Same bucket and period as the active file (`hi` may move up).
    Same,
    /// A later bucket or period: seal the active file, then start this one.
    Later(Place),
    /// An earlier bucket or period: written into the active bucket, counted.
    Late,
}

#[derive(Debug, Clone)]
pub struct Buckets {
    template: Template,
    tz: TimeZone,
    /// `rotate_aligned`: the interval, dividing a day.
    aligned: Option<Duration>,
    /// The last place computed, by topic, partition and second of record time: records come in
    /// runs of the same second, and formatting the time for each costs (see `scripts/bench
    /// --cases layout`). `None` when a time format shows fractions of a second.
    last: Option<Option<(String, i32, i64, Place)>>,
}

impl Buckets {
    pub fn new(template: Template, tz: TimeZone, aligned: Option<Duration>) -> Buckets {
        let whole_seconds = template.whole_seconds();
        Buckets { template, tz, aligned, last: whole_seconds.then_some(None) }
    }

    /// Today's layout (`{topic}`), no alignment: what every archive had before layouts.
    pub fn plain() -> Buckets {
        Buckets::new(Template::default(), TimeZone::UTC, None)
    }

    /// True if record times decide where files go (a time field in the layout); then aligned
    /// rotation also follows record time.
    pub fn by_record_time(&self) -> bool {
        self.template.has_time()
    }

    /// The aligned period of the wall clock now (`rotate_aligned` without a time layout).
    pub fn wall_period(&self, now: SystemTime) -> Option<i64> {
        let interval = self.aligned.filter(|_| !self.by_record_time())?;
        let zoned = Timestamp::try_from(now).ok()?.to_zoned(self.tz.clone());
        Some(layout::period(&zoned, interval))
    }

    /// The bucket of a layout without a time field (one per topic-partition).
    pub fn fixed(&self, topic: &str, partition: i32) -> Result<Place, String> {
        Ok(Place { dir: self.template.expand(topic, partition, None)?, period: None })
    }

    /// Where a record time (ms since the epoch) puts the active file.
    pub fn place(&mut self, topic: &str, partition: i32, ms: i64) -> Result<Place, String> {
        if !self.by_record_time() {
            return self.fixed(topic, partition);
        }
        let second = ms.div_euclid(1000);
        if let Some(Some((t, p, s, place))) = &self.last
            && *s == second
            && *p == partition
            && t == topic
        {
            return Ok(place.clone());
        }
        let place = self.compute(topic, partition, ms)?;
        if let Some(last) = self.last.as_mut() {
            *last = Some((topic.to_string(), partition, second, place.clone()));
        }
        Ok(place)
    }

    /// `place` without the cache (for a one-off, such as reconciliation).
    pub fn compute(&self, topic: &str, partition: i32, ms: i64) -> Result<Place, String> {
        if !self.by_record_time() {
            return self.fixed(topic, partition);
        }
        let zoned = self.zoned(ms)?;
        Ok(Place {
            dir: self.template.expand(topic, partition, Some(&zoned))?,
            period: self.aligned.map(|interval| layout::period(&zoned, interval)),
        })
    }

    fn zoned(&self, ms: i64) -> Result<Zoned, String> {
        Timestamp::from_millisecond(ms)
            .map(|t| t.to_zoned(self.tz.clone()))
            .map_err(|e| format!("record time {ms} ms: {e}"))
    }

    /// Judges a record at `ms` against the partition's active `place` and highest time `hi`.
    /// `place: None` (nothing known yet) takes the record's bucket.
    pub fn judge(
        &mut self,
        (topic, partition): (&str, i32),
        active: Option<&Place>,
        hi: Option<i64>,
        ms: i64,
    ) -> Result<Verdict, String> {
        // The common case (the same second as the record before) compares with the cached
        // place without building one.
        if let Some(Some((t, p, s, place))) = &self.last
            && *s == ms.div_euclid(1000)
            && *p == partition
            && t == topic
        {
            return Ok(verdict(place, active, hi, ms));
        }
        let place = self.place(topic, partition, ms)?;
        Ok(verdict(&place, active, hi, ms))
    }
}

fn verdict(place: &Place, active: Option<&Place>, hi: Option<i64>, ms: i64) -> Verdict {
    match (active, hi) {
        (Some(active), _) if active == place => Verdict::Same,
        (Some(_), Some(hi)) if ms <= hi => Verdict::Late,
        _ => Verdict::Later(place.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H14: i64 = 1_796_306_400_000; // 2026-12-03T14:00:00Z
    const HOUR: i64 = 3_600_000;

    fn hourly() -> Buckets {
        Buckets::new(Template::parse("{topic}/{time:%Y/%m/%d/%H}").expect("parses"), TimeZone::UTC, None)
    }

    #[test]
    fn a_later_hour_starts_a_bucket_an_earlier_one_is_late() {
        let mut b = hourly();
        let tp = ("t", 0);
        let Verdict::Later(first) = b.judge(tp, None, None, H14 + 5).expect("judged") else {
            panic!("nothing known: the record's bucket")
        };
        assert_eq!(first.dir, "t/2026/12/03/14");
        assert_eq!(b.judge(tp, Some(&first), Some(H14 + 5), H14 + 1).expect("judged"), Verdict::Same);
        let Verdict::Later(next) = b.judge(tp, Some(&first), Some(H14 + 5), H14 + HOUR).expect("judged")
        else {
            panic!("a later hour")
        };
        assert_eq!(next.dir, "t/2026/12/03/15");
        assert_eq!(b.judge(tp, Some(&next), Some(H14 + HOUR), H14 + 10).expect("judged"), Verdict::Late);
    }

    #[test]
    fn aligned_periods_split_a_bucket() {
        let mut b = Buckets::new(
            Template::parse("{topic}/{time:%Y-%m-%d}").expect("parses"),
            TimeZone::UTC,
            Some(Duration::from_secs(3600)),
        );
        let tp = ("t", 0);
        let a = b.place("t", 0, H14).expect("placed");
        assert_eq!(b.judge(tp, Some(&a), Some(H14), H14 + HOUR - 1).expect("judged"), Verdict::Same);
        assert!(
            matches!(b.judge(tp, Some(&a), Some(H14), H14 + HOUR).expect("judged"), Verdict::Later(p) if p.dir == a.dir)
        );
    }

    #[test]
    fn the_plain_layout_has_one_bucket_and_a_wall_clock_only_when_aligned() {
        let mut b = Buckets::plain();
        assert!(!b.by_record_time());
        assert_eq!(b.place("t", 1, H14).expect("placed"), Place { dir: "t".into(), period: None });
        assert_eq!(b.wall_period(SystemTime::now()), None);
        let aligned = Buckets::new(Template::default(), TimeZone::UTC, Some(Duration::from_secs(60)));
        assert!(aligned.wall_period(SystemTime::now()).is_some());
    }

    #[test]
    fn the_cached_place_is_the_computed_one() {
        let mut cached = hourly();
        let fresh = |ms| hourly().place("t", 0, ms).expect("placed");
        for ms in [H14, H14 + 999, H14 + 1000, H14 - 1, H14 + HOUR - 1, H14 + HOUR, H14 + HOUR] {
            assert_eq!(cached.place("t", 0, ms).expect("placed"), fresh(ms), "{ms}");
            assert_eq!(cached.place("u", 1, ms).expect("placed").dir, fresh(ms).dir.replacen("t/", "u/", 1));
        }
        let fractions = Template::parse("{time:%H/%M/%S.%3f}").expect("parses");
        assert!(!fractions.whole_seconds());
        let mut b = Buckets::new(fractions, TimeZone::UTC, None);
        assert_ne!(b.place("t", 0, H14).expect("placed"), b.place("t", 0, H14 + 1).expect("placed"));
    }
}
