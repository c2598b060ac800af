//! Records made of lines: multi-line events (a stack trace is one record) and the include/exclude
//! filters applied to whole records. Pure: lines go in with the file range they cover, records come
//! out through a callback. The tailer keeps the first line of an unfinished record as the file's
//! position, so that a crash re-reads the record from its first line and never sends half of it.
//!
//! The grouping modes are Vector's (`condition_pattern` with `mode`), plus Filebeat's simplest
//! form (`start_pattern` alone: a record begins at each line that matches) and presets.

use std::sync::Arc;
use std::time::Duration;

use regex::bytes::Regex;

use super::reader::Flow;
use crate::config::connector::{MultilineConfig, MultilineMode, MultilinePreset};

/// How lines group into records, compiled.
#[derive(Debug)]
pub struct Multiline {
    /// When no record is open: a line that does not match is a record of its own (Vector's
    /// `start_pattern`). `None`: every line opens a record.
    start: Option<Regex>,
    condition: Regex,
    negate: bool,
    mode: MultilineMode,
    /// Python: an exception's last line (`ValueError: ...`) continues a record only right after
    /// an indented line (the traceback's last frame).
    after_indented: Option<Regex>,
    pub max_lines: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// What the lines of a preset look like.
struct Preset {
    condition: &'static str,
    after_indented: Option<&'static str>,
}

fn preset(p: MultilinePreset) -> Preset {
    match p {
        // `\tat ...`, `    ... 12 more`, `Caused by: ...`, `Suppressed: ...`
        // and the exception's own first line (`java.lang.IllegalStateException: ...`), which
        // follows the log line that reported it.
        MultilinePreset::Java => Preset {
            condition: r"^(\s|Caused by:|Suppressed:|[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)+(Exception|Error|Throwable)\b)",
            after_indented: None,
        },
        MultilinePreset::Python => Preset {
            condition: r"^(\s|$|Traceback \(most recent call last\):|During handling of the above exception|The above exception was the direct cause)",
            after_indented: Some(r"^[A-Za-z_][\w.]*(Error|Exception|Warning|Exit|Interrupt|Iteration)\b"),
        },
        // `panic: ...`, blank lines, `goroutine 1 [running]:`, `main.main()`, `\t/src/x.go:5 +0x1d`,
        // `created by ...`, `exit status 2`.
        MultilinePreset::Go => Preset {
            condition: r"^(\s|$|goroutine \d+ \[|created by |exit status \d+|[\w./*()\[\]-]+\(.*\)$)",
            after_indented: None,
        },
        MultilinePreset::Indented => Preset { condition: r"^\s", after_indented: None },
    }
}

/// A pattern that did not compile, and the key it came from.
#[derive(Debug)]
pub struct BadPattern {
    pub key: &'static str,
    pub error: regex::Error,
}

fn compile(key: &'static str, pattern: &str) -> Result<Regex, BadPattern> {
    Regex::new(pattern).map_err(|error| BadPattern { key, error })
}

impl Multiline {
    pub fn new(c: &MultilineConfig) -> Result<Multiline, BadPattern> {
        let start = c.start_pattern.as_deref().map(|p| compile("start_pattern", p)).transpose()?;
        let (condition, mode, after_indented, start) = match (c.preset, &c.condition_pattern) {
            (Some(p), _) => {
                let p = preset(p);
                let after = p.after_indented.map(|a| compile("preset", a)).transpose()?;
                (compile("preset", p.condition)?, MultilineMode::ContinueThrough, after, start)
            }
            (None, Some(cond)) => {
                (compile("condition_pattern", cond)?, c.mode.unwrap_or_default(), None, start)
            }
            // `start_pattern` alone: a record begins at each matching line, the others join it.
            (None, None) => match start {
                Some(s) => (s, MultilineMode::HaltBefore, None, None),
                None => (compile("start_pattern", "^")?, MultilineMode::HaltBefore, None, None),
            },
        };
        Ok(Multiline {
            start,
            condition,
            negate: c.negate,
            mode,
            after_indented,
            max_lines: c.max_lines.max(1),
            max_bytes: usize::try_from(c.max_bytes).unwrap_or(usize::MAX).max(1),
            timeout: c.timeout,
        })
    }
}

/// Include/exclude patterns over whole records.
#[derive(Debug, Default)]
pub struct Filter {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

/// Which filter dropped a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// It matched none of `include_lines`.
    NotIncluded,
    /// It matched one of `exclude_lines`.
    Excluded,
}

impl Filter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Filter, BadPattern> {
        Ok(Filter {
            include: include.iter().map(|p| compile("include_lines", p)).collect::<Result<_, _>>()?,
            exclude: exclude.iter().map(|p| compile("exclude_lines", p)).collect::<Result<_, _>>()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Why `record` is dropped, if it is.
    pub fn drops(&self, record: &[u8]) -> Option<Dropped> {
        if !self.include.is_empty() && !self.include.iter().any(|r| r.is_match(record)) {
            return Some(Dropped::NotIncluded);
        }
        self.exclude.iter().any(|r| r.is_match(record)).then_some(Dropped::Excluded)
    }
}

/// A source's record rules: grouping and filters (both optional).
#[derive(Debug, Default)]
pub struct Rules {
    pub multiline: Option<Multiline>,
    pub filter: Filter,
}

impl Rules {
    /// Whether lines are handed out as they are (no grouping, no filter).
    pub fn plain(&self) -> bool {
        self.multiline.is_none() && self.filter.is_empty()
    }
}

/// Why a record ended before its rule said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    MaxLines,
    MaxBytes,
    /// Nothing more came for `timeout` (the writer may have died mid-trace, or the file was
    /// rotated away): sent as it is.
    Timeout,
}

/// A complete record: its lines joined by `\n`, and the file range they cover.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub payload: &'a [u8],
    /// The first line's first byte (the record's `macklake.offset`).
    pub start: u64,
    /// Just after the last line's terminator (the position once it is delivered).
    pub end: u64,
    pub lines: usize,
    pub cut: Option<Cut>,
}

/// The record being put together.
#[derive(Debug)]
struct Open {
    buf: Vec<u8>,
    start: u64,
    end: u64,
    lines: usize,
    last_indented: bool,
}

/// Groups one file's lines into records. Its state is only what `offer` has accepted (returned
/// `Continue` for): a line whose record could not be handed out (`emit` said `Stop`) leaves it
/// unchanged, to be offered again.
#[derive(Debug, Default)]
pub struct Assembler {
    rules: Arc<Rules>,
    open: Option<Open>,
}

impl Assembler {
    pub fn new(rules: Arc<Rules>) -> Assembler {
        Assembler { rules, open: None }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Where the unfinished record begins, if one is open: the file's position until it is
    /// handed out.
    pub fn open_since(&self) -> Option<u64> {
        self.open.as_ref().map(|o| o.start)
    }

    /// Forgets the unfinished record (the file was truncated or is read from elsewhere now).
    pub fn reset(&mut self) {
        self.open = None;
    }

    /// Bytes dropped by the long-line policy inside an open record: the record covers them.
    /// Returns false if no record is open (the caller accounts for them itself).
    pub fn cover(&mut self, end: u64) -> bool {
        match self.open.as_mut() {
            Some(o) => {
                o.end = o.end.max(end);
                true
            }
            None => false,
        }
    }

    /// Offers the line `content` (without its terminator) covering `start..end`; every record it
    /// completes goes to `emit`, in file order.
    pub fn offer(
        &mut self,
        content: &[u8],
        start: u64,
        end: u64,
        emit: &mut impl FnMut(Record<'_>) -> Flow,
    ) -> Flow {
        // (Split borrows: the rules are read while the open record changes.)
        let Assembler { rules, open: slot } = self;
        let Some(ml) = rules.multiline.as_ref() else {
            return emit(Record { payload: content, start, end, lines: 1, cut: None });
        };
        let Some(open) = slot.as_ref() else {
            return first(slot, ml, content, start, end, emit);
        };
        let matched = ml.condition.is_match(content)
            || (open.last_indented && ml.after_indented.as_ref().is_some_and(|r| r.is_match(content)));
        let matched = matched != ml.negate;
        let (joins, ends_with_it) = match ml.mode {
            MultilineMode::ContinueThrough => (matched, false),
            MultilineMode::HaltBefore => (!matched, false),
            MultilineMode::ContinuePast => (true, !matched),
            MultilineMode::HaltWith => (true, matched),
        };
        let cut = if !joins {
            None
        } else if open.lines >= ml.max_lines {
            Some(Cut::MaxLines)
        } else if open.buf.len() + 1 + content.len() > ml.max_bytes {
            Some(Cut::MaxBytes)
        } else {
            None
        };
        if !joins || cut.is_some() {
            if emit_open(slot, cut, emit) == Flow::Stop {
                return Flow::Stop;
            }
            return first(slot, ml, content, start, end, emit);
        }
        let Some(o) = slot.as_mut() else { return Flow::Continue }; // (checked above)
        let before = o.buf.len();
        o.buf.push(b'\n');
        o.buf.extend_from_slice(content);
        if !ends_with_it {
            o.lines += 1;
            o.end = end;
            o.last_indented = indented(content);
            return Flow::Continue;
        }
        let record = Record { payload: &o.buf, start: o.start, end, lines: o.lines + 1, cut: None };
        if emit(record) == Flow::Stop {
            o.buf.truncate(before);
            return Flow::Stop;
        }
        *slot = None;
        Flow::Continue
    }

    /// Hands out the open record as it is: nothing more came for `timeout`, or its file ended.
    pub fn flush(&mut self, emit: &mut impl FnMut(Record<'_>) -> Flow) -> Flow {
        emit_open(&mut self.open, Some(Cut::Timeout), emit)
    }
}

/// A line with no record open: it opens one (in `slot`), or is a record by itself.
fn first(
    slot: &mut Option<Open>,
    ml: &Multiline,
    content: &[u8],
    start: u64,
    end: u64,
    emit: &mut impl FnMut(Record<'_>) -> Flow,
) -> Flow {
    let alone = || Record { payload: content, start, end, lines: 1, cut: None };
    if ml.start.as_ref().is_some_and(|s| !s.is_match(content)) {
        return emit(alone());
    }
    let matched = ml.condition.is_match(content) != ml.negate;
    let complete = match ml.mode {
        MultilineMode::ContinuePast => !matched,
        MultilineMode::HaltWith => matched,
        MultilineMode::ContinueThrough | MultilineMode::HaltBefore => false,
    };
    if complete || ml.max_lines == 1 {
        return emit(alone());
    }
    *slot = Some(Open { buf: content.to_vec(), start, end, lines: 1, last_indented: indented(content) });
    Flow::Continue
}

/// Hands out the record open in `slot` (its rule did not end it: `cut` says why it ends now).
fn emit_open(slot: &mut Option<Open>, cut: Option<Cut>, emit: &mut impl FnMut(Record<'_>) -> Flow) -> Flow {
    let Some(o) = slot.as_ref() else { return Flow::Continue };
    let record = Record { payload: &o.buf, start: o.start, end: o.end, lines: o.lines, cut };
    if emit(record) == Flow::Stop {
        return Flow::Stop;
    }
    *slot = None;
    Flow::Continue
}

fn indented(line: &[u8]) -> bool {
    matches!(line.first(), Some(b' ' | b'\t'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::connector::MultilineConfig;

    /// Feeds `text` line by line, then flushes; returns the records as strings with their ranges.
    fn records(c: MultilineConfig, text: &str) -> Vec<(String, u64, u64, Option<Cut>)> {
        let rules =
            Rules { multiline: Some(Multiline::new(&c).expect("compiles")), filter: Filter::default() };
        let mut a = Assembler::new(Arc::new(rules));
        let mut out = Vec::new();
        let mut push = |r: Record<'_>| {
            out.push((String::from_utf8_lossy(r.payload).into_owned(), r.start, r.end, r.cut));
            Flow::Continue
        };
        let mut at = 0u64;
        for line in text.split_inclusive('\n') {
            let end = at + line.len() as u64;
            assert_eq!(a.offer(line.trim_end_matches('\n').as_bytes(), at, end, &mut push), Flow::Continue);
            at = end;
        }
        a.flush(&mut push);
        out
    }

    fn cfg() -> MultilineConfig {
        MultilineConfig::default()
    }

    const JAVA: &str = "2026-12-03 ERROR boom\n\
java.lang.IllegalStateException: bad\n\
\tat a.B.c(B.java:1)\n\
\tat a.B.d(B.java:2)\n\
Caused by: java.io.IOException: disk\n\
\t... 2 more\n\
2026-12-03 INFO fine\n";

    #[test]
    fn a_java_stack_trace_is_one_record_with_its_first_lines_offset() {
        let c = MultilineConfig { preset: Some(MultilinePreset::Java), ..cfg() };
        let got = records(c, JAVA);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].0.starts_with("2026-12-03 ERROR boom\njava.lang.IllegalStateException: bad\n\tat a.B.c")
        );
        assert!(got[0].0.ends_with("Caused by: java.io.IOException: disk\n\t... 2 more"), "{got:?}");
        assert_eq!((got[0].1, got[0].3), (0, None));
        assert_eq!(got[0].2, got[1].1, "records cover the file without gaps");
        assert_eq!(got[1], ("2026-12-03 INFO fine".into(), got[0].2, JAVA.len() as u64, Some(Cut::Timeout)));
    }

    #[test]
    fn start_pattern_alone_begins_a_record_at_each_match() {
        let c = MultilineConfig { start_pattern: Some(r"^\d{4}-".into()), ..cfg() };
        let got = records(c, JAVA);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0.lines().count(), 6);
        assert_eq!(got[1].0, "2026-12-03 INFO fine");
    }

    #[test]
    fn a_python_traceback_ends_with_its_exception_line() {
        let text = "ERROR failed\nTraceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n    f()\nValueError: boom\nValueError: a new record\n";
        let c = MultilineConfig { preset: Some(MultilinePreset::Python), ..cfg() };
        let got = records(c, text);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].0.ends_with("    f()\nValueError: boom"), "{got:?}");
        assert_eq!(got[1].0, "ValueError: a new record");
    }

    #[test]
    fn continue_past_and_halt_with_include_the_line_that_ends_the_record() {
        let text = "a \\\nb \\\nc\nd\n";
        let c = MultilineConfig {
            condition_pattern: Some(r"\\$".into()),
            mode: Some(MultilineMode::ContinuePast),
            ..cfg()
        };
        let got: Vec<String> = records(c, text).into_iter().map(|r| r.0).collect();
        assert_eq!(got, ["a \\\nb \\\nc", "d"]);
        let text = "BEGIN\nx\nEND;\nBEGIN\ny;\n";
        let c = MultilineConfig {
            condition_pattern: Some(";$".into()),
            mode: Some(MultilineMode::HaltWith),
            ..cfg()
        };
        let got: Vec<String> = records(c, text).into_iter().map(|r| r.0).collect();
        assert_eq!(got, ["BEGIN\nx\nEND;", "BEGIN\ny;"]);
    }

    #[test]
    fn negate_and_start_pattern_follow_vector() {
        // halt_before on lines that do NOT start with a space = a record starts at each
        // unindented line; with start_pattern, a line that does not match it stands alone.
        let c = MultilineConfig {
            condition_pattern: Some(r"^\s".into()),
            negate: true,
            mode: Some(MultilineMode::HaltBefore),
            start_pattern: Some("^E".into()),
            ..cfg()
        };
        let got: Vec<String> = records(c, "E1\n x\nI2\n y\nE3\n").into_iter().map(|r| r.0).collect();
        assert_eq!(got, ["E1\n x", "I2", " y", "E3"]);
    }

    #[test]
    fn max_lines_and_max_bytes_cut_the_record_and_say_so() {
        let c = MultilineConfig { preset: Some(MultilinePreset::Indented), max_lines: 3, ..cfg() };
        let got = records(c, "a\n 1\n 2\n 3\n 4\nb\n");
        let texts: Vec<&str> = got.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(texts, ["a\n 1\n 2", " 3\n 4", "b"]);
        assert_eq!(got[0].3, Some(Cut::MaxLines));
        assert_eq!(got[1].3, None);
        let c = MultilineConfig { preset: Some(MultilinePreset::Indented), max_bytes: 6, ..cfg() };
        let got = records(c, "a\n 1\n 2\n");
        assert_eq!(got[0], ("a\n 1".into(), 0, 5, Some(Cut::MaxBytes)));
    }

    #[test]
    fn a_refused_record_leaves_the_state_as_it_was() {
        let c = MultilineConfig {
            condition_pattern: Some(";$".into()),
            mode: Some(MultilineMode::HaltWith),
            ..cfg()
        };
        let rules =
            Rules { multiline: Some(Multiline::new(&c).expect("compiles")), filter: Filter::default() };
        let mut a = Assembler::new(Arc::new(rules));
        let mut got: Vec<String> = Vec::new();
        let mut accept = |r: Record<'_>| {
            got.push(String::from_utf8_lossy(r.payload).into_owned());
            Flow::Continue
        };
        assert_eq!(a.offer(b"x", 0, 2, &mut accept), Flow::Continue);
        assert_eq!(a.offer(b"y;", 2, 5, &mut |_| Flow::Stop), Flow::Stop);
        assert_eq!(a.open_since(), Some(0), "still open, without y;");
        assert_eq!(a.offer(b"y;", 2, 5, &mut accept), Flow::Continue);
        assert_eq!(got, ["x\ny;"]);
        assert_eq!(a.open_since(), None);
    }

    #[test]
    fn filters_keep_what_is_included_and_not_excluded() {
        let f = Filter::new(&["ERROR".into(), "WARN".into()], &["healthcheck".into()]).expect("compiles");
        assert_eq!(f.drops(b"ERROR disk full"), None);
        assert_eq!(f.drops(b"INFO fine"), Some(Dropped::NotIncluded));
        assert_eq!(f.drops(b"WARN healthcheck slow"), Some(Dropped::Excluded));
        assert!(Filter::new(&[], &[]).expect("empty").drops(b"anything").is_none());
        let bad = Filter::new(&["(".into()], &[]).expect_err("does not compile");
        assert_eq!(bad.key, "include_lines");
    }
}
