//! A directory sink's `layout`: where rotated files go, as a template of `{topic}`,
//! `{partition}` and strftime fields of the record time (`{time:%Y/%m/%d/%H}`), relative to the
//! sink directory. The default, `{topic}`, is the layout every archive had before templates.
//!
//! Parsed and checked once here (pure: no file system, no clock), expanded by the sink for each
//! time bucket. An expansion is a relative path of plain components: never empty, `.` or `..`,
//! whatever the time formats produce.

use std::fmt;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// The layout of an archive written before templates existed: `DIR/TOPIC/`.
pub const DEFAULT_LAYOUT: &str = "{topic}";

/// Longest expanded directory accepted (it goes into every commit's metadata, < 4 KiB).
const MAX_EXPANDED: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Topic,
    Partition,
    /// A strftime format of the record time.
    Time(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Default for Template {
    fn default() -> Self {
        Template::parse(DEFAULT_LAYOUT).expect("the default layout parses")
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Template {
    /// Parses and checks a template; the error says what is wrong (the caller names file and key).
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                Some(i) if rest.as_bytes()[i] == b'}' => {
                    return Err(format!("`}}` without `{{` in `{text}`"));
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Text(rest[..i].to_string()));
                    }
                    let close =
                        rest[i..].find('}').ok_or_else(|| format!("`{{` without `}}` in `{text}`"))?;
                    let field = &rest[i + 1..i + close];
                    parts.push(match field {
                        "topic" => Part::Topic,
                        "partition" => Part::Partition,
                        f if f.starts_with("time:") && f.len() > 5 => Part::Time(f[5..].to_string()),
                        f => {
                            return Err(format!(
                                "unknown field `{{{f}}}`: use {{topic}}, {{partition}} or {{time:FORMAT}} (strftime, e.g. {{time:%Y/%m/%d/%H}})"
                            ));
                        }
                    });
                    rest = &rest[i + close + 1..];
                }
                None => {
                    parts.push(Part::Text(rest.to_string()));
                    rest = "";
                }
            }
        }
        if parts.is_empty() {
            return Err("is empty: give at least `{topic}`".into());
        }
        let t = Template { source: text.to_string(), parts };
        if text.starts_with('/') {
            return Err(format!("`{text}` must be relative to the sink directory (no leading `/`)"));
        }
        // Every literal component must be a plain name; what time formats produce is checked
        // at expansion too. Two sample times (different in every field) catch a format that
        // jiff refuses or that yields `..`.
        for sample in [0_i64, 1_234_567_890_123] {
            let at = Timestamp::from_millisecond(sample).map_err(|e| e.to_string())?.to_zoned(TimeZone::UTC);
            t.expand("topic", 0, Some(&at))?;
        }
        Ok(t)
    }

    /// True if no time field shows less than a second: two times in the same second always
    /// expand alike (checked on sample times, whatever the format's spelling of fractions).
    pub fn whole_seconds(&self) -> bool {
        [1_796_306_400_000_i64, 1_234_567_890_000].iter().all(|second| {
            let expand = |ms: i64| {
                Timestamp::from_millisecond(ms)
                    .ok()
                    .and_then(|t| self.expand("t", 0, Some(&t.to_zoned(TimeZone::UTC))).ok())
            };
            [1_i64, 499, 999].iter().all(|d| expand(*second) == expand(second + d))
        })
    }

    /// True if the template has a time field (files are then bucketed by record time).
    pub fn has_time(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Time(_)))
    }

    /// The relative directory for a topic-partition at a record time (`None`: no time field, or
    /// a template without one). Errors if a time format cannot be applied or yields a path that
    /// is not a plain relative one.
    pub fn expand(&self, topic: &str, partition: i32, time: Option<&Zoned>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(s) => out.push_str(s),
                Part::Topic => out.push_str(topic),
                Part::Partition => out.push_str(&partition.to_string()),
                Part::Time(format) => {
                    let Some(time) = time else {
                        return Err("the layout has a time field and no time was given".into());
                    };
                    let text = jiff::fmt::strtime::format(format, time)
                        .map_err(|e| format!("time format `{format}`: {e}"))?;
                    out.push_str(&text);
                }
            }
        }
        if out.len() > MAX_EXPANDED {
            return Err(format!("expands to {} bytes, more than {MAX_EXPANDED}", out.len()));
        }
        if out.starts_with('/') || out.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            return Err(format!(
                "expands to `{out}`: every part of the path must be a name (no empty part, `.` or `..`)"
            ));
        }
        if out.contains('\0') {
            return Err("expands to a path with a NUL byte".into());
        }
        Ok(out)
    }
}

/// Checks a `timezone` value: `UTC` or an IANA name of the system's time zone database.
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    if name.eq_ignore_ascii_case("utc") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|e| {
        format!("`{name}` is not a known time zone (UTC or an IANA name such as Europe/Paris): {e}")
    })
}

/// For `rotate_aligned`: the interval must fit a day a whole number of times, so that every day
/// starts a new period (at local midnight).
pub fn check_aligned_interval(interval: Duration) -> Result<(), String> {
    let day = 86_400_000_u128;
    let ms = interval.as_millis();
    if ms < 1000 || ms % 1000 != 0 || day % ms != 0 {
        return Err(format!(
            "with rotate_aligned = true, rotate_interval must divide a day (1m, 5m, 15m, 1h, 6h, 1d...): {interval:?} does not"
        ));
    }
    Ok(())
}

/// The clock-aligned period a time falls in, for `rotate_aligned` (`interval` divides a day):
/// the local date and the number of whole intervals since local midnight, as one increasing
/// number.
pub fn period(time: &Zoned, interval: Duration) -> i64 {
    let date = time.date();
    let day = i64::from(date.year()) * 10_000 + i64::from(date.month()) * 100 + i64::from(date.day());
    let since_midnight = time
        .start_of_day()
        .map(|midnight| time.timestamp().as_millisecond() - midnight.timestamp().as_millisecond())
        .unwrap_or(0);
    let index = since_midnight / (interval.as_millis().max(1) as i64);
    day * 1_000_000 + index
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64, tz: &TimeZone) -> Zoned {
        Timestamp::from_millisecond(ms).expect("a time").to_zoned(tz.clone())
    }

    #[test]
    fn templates_expand_topic_partition_and_record_time() {
        let t = Template::parse("{topic}/{time:%Y/%m/%d/%H}").expect("parses");
        assert!(t.has_time());
        // 2026-12-03T14:05:00Z
        let time = at(1_796_306_700_000, &TimeZone::UTC);
        assert_eq!(t.expand("orders", 3, Some(&time)).expect("expands"), "orders/2026/12/03/14");
        let t = Template::parse("p{partition}/{topic}").expect("parses");
        assert!(!t.has_time());
        assert_eq!(t.expand("orders", 3, None).expect("expands"), "p3/orders");
        assert_eq!(Template::default().expand("orders", 0, None).expect("default"), "orders");
    }

    #[test]
    fn the_time_zone_moves_the_bucket() {
        let t = Template::parse("{time:%Y-%m-%d/%H}").expect("parses");
        let paris = time_zone("Europe/Paris").expect("the system tzdb knows Paris");
        let time = at(1_796_306_700_000, &paris);
        assert_eq!(t.expand("x", 0, Some(&time)).expect("expands"), "2026-12-03/15");
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        for (bad, why) in [
            ("", "empty"),
            ("/abs/{topic}", "relative"),
            ("{topic}/../x", "name"),
            ("{topic}//x", "name"),
            ("{nope}", "unknown field"),
            ("{topic", "without"),
            ("topic}", "without"),
            ("{time:%}", "time format"),
            ("{time:..}", "name"),
        ] {
            let err = Template::parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(time_zone("Mars/Olympus").is_err());
        assert!(time_zone("UTC").is_ok());
    }

    #[test]
    fn aligned_periods_start_at_local_midnight_and_on_the_hour() {
        let hour = Duration::from_secs(3600);
        assert!(check_aligned_interval(hour).is_ok());
        assert!(check_aligned_interval(Duration::from_secs(7 * 60)).is_err());
        assert!(check_aligned_interval(Duration::from_millis(10)).is_err());
        let utc = TimeZone::UTC;
        let p = |ms| period(&at(ms, &utc), hour);
        let base = 1_796_306_400_000; // 14:00:00Z
        assert_eq!(p(base), p(base + 3_599_999));
        assert!(p(base + 3_600_000) > p(base));
        assert!(p(base - 1) < p(base));
        // The next day starts a new period even for 1d.
        let day = Duration::from_secs(86_400);
        assert!(period(&at(base + 10 * 3_600_000, &utc), day) > period(&at(base, &utc), day));
    }
}
