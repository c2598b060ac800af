//! Following one file: reads new bytes from an open descriptor and cuts them into lines.
//!
//! A line is the bytes before a `\n` (a `\r` before it is dropped too). A trailing partial line
//! waits for its newline; `take_partial` hands it out when the caller decides it never will come.
//! Lines longer than `max_line` follow the policy: split into several records, truncated (the rest
//! is dropped and counted), or skipped (counted). Every byte is accounted for: each piece handed
//! to the callback carries the file range it covers, with `payload: None` for dropped bytes, so
//! that checkpoints can advance past them in order.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::fingerprint::FINGERPRINT_BYTES;
use crate::config::connector::LongLinePolicy;

const CHUNK: usize = 64 * 1024;

/// One piece of the file, handed out in file order.
#[derive(Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// What to send; `None` for bytes dropped by the long-line policy.
    pub payload: Option<&'a [u8]>,
    /// File offset of the first byte covered.
    pub start: u64,
    /// File offset just after the last byte covered (the checkpoint once this is acknowledged).
    pub end: u64,
    /// Set (with `payload: None`, covering no bytes) after an over-long line has been handed out,
    /// when dead letters are asked for: its first bytes and its full length.
    pub dead_letter: Option<DeadLetter<'a>>,
}

/// An over-long line, for the dead-letter topic.
#[derive(Debug, PartialEq, Eq)]
pub struct DeadLetter<'a> {
    /// Its first `max_line` bytes.
    pub head: &'a [u8],
    /// File offset of its first byte.
    pub start: u64,
    /// Its length without the line terminator.
    pub original_len: u64,
}

/// An over-long line being handed out: where it began and its first bytes.
struct LongLine {
    start: u64,
    head: Vec<u8>,
}

/// The callback's answer: `Stop` leaves the offered piece unconsumed (offered again next time).
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Counts of what the long-line policy did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LongLineStats {
    pub split: u64,
    pub truncated: u64,
    pub skipped: u64,
}

/// How many of the last bytes read are re-checked to notice a rewrite in place.
const TAIL_BYTES: usize = 32;

pub struct Reader {
    file: File,
    /// File offset of `buf[0]`.
    buf_start: u64,
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out.
    consumed: usize,
    /// Dropping the rest of an over-long line until its newline (truncate and skip policies).
    discarding: bool,
    max_line: usize,
    policy: LongLinePolicy,
    pub stats: LongLineStats,
    /// The file's first bytes as this reader read them (when it started at offset 0): the
    /// content's identity even if the file is truncated a moment later.
    head: Vec<u8>,
    /// The last bytes read (up to `TAIL_BYTES`), ending at `read_position`: with `head`, what
    /// tells a file rewritten in place from one that grew.
    tail: Vec<u8>,
    /// Whether over-long lines are reported as dead letters.
    dead_letters: bool,
    /// See `rewritten()`.
    rewritten: bool,
    long: Option<LongLine>,
    /// A finished over-long line whose dead letter is still to be handed out.
    pending_dead_letter: Option<(LongLine, u64, u64)>,
}

impl Reader {
    pub fn new(file: File, offset: u64, max_line: u64, policy: LongLinePolicy) -> Reader {
        Reader {
            file,
            buf_start: offset,
            buf: Vec::with_capacity(CHUNK),
            consumed: 0,
            discarding: false,
            max_line: usize::try_from(max_line).unwrap_or(usize::MAX).max(1),
            policy,
            stats: LongLineStats::default(),
            head: Vec::new(),
            tail: Vec::new(),
            dead_letters: false,
            rewritten: false,
            long: None,
            pending_dead_letter: None,
        }
    }

    /// Also hand out a dead letter after every over-long line.
    pub fn with_dead_letters(mut self, on: bool) -> Reader {
        self.dead_letters = on;
        self
    }

    /// An over-long line ended at `content_end` (file offset of its last content byte + 1): its
    /// dead letter is handed out before anything else, at `at` (the end of what was consumed).
    fn finish_long(&mut self, content_end: u64, at: u64) {
        if let Some(long) = self.long.take() {
            let original_len = content_end - long.start;
            self.pending_dead_letter = Some((long, original_len, at));
        }
    }

    fn offer_dead_letter(&mut self, f: &mut impl FnMut(Line<'_>) -> Flow) -> Flow {
        let Some((long, original_len, at)) = self.pending_dead_letter.take() else { return Flow::Continue };
        let dead_letter = Some(DeadLetter { head: &long.head, start: long.start, original_len });
        if f(Line { payload: None, start: at, end: at, dead_letter }) == Flow::Stop {
            self.pending_dead_letter = Some((long, original_len, at));
            return Flow::Stop;
        }
        Flow::Continue
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// The next byte not yet handed out.
    pub fn position(&self) -> u64 {
        self.buf_start + self.consumed as u64
    }

    /// The next byte not yet read from the file.
    pub fn read_position(&self) -> u64 {
        self.buf_start + self.buf.len() as u64
    }

    /// The first bytes of the file (up to the fingerprint size) as read, if reading began at 0.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Whether the file still holds what was read from it: `prefix` (its first bytes as first
    /// seen) at 0 and the last bytes read just before `read_position`. False means it was
    /// rewritten in place — with content of the same length (a status file, fixed-width
    /// records), or longer — which neither its size nor its inode tells.
    pub fn still_holds_what_was_read(&self, prefix: &[u8]) -> io::Result<bool> {
        self.holds(prefix, &self.tail, self.read_position())
    }

    /// Whether the file holds `prefix` at 0 and `tail` just before `end`.
    fn holds(&self, prefix: &[u8], tail: &[u8], end: u64) -> io::Result<bool> {
        let differs = |bytes: &[u8], at: u64| -> io::Result<bool> {
            let mut buf = [0u8; FINGERPRINT_BYTES];
            let buf = &mut buf[..bytes.len().min(FINGERPRINT_BYTES)];
            let mut got = 0;
            while got < buf.len() {
                match self.file.read_at(&mut buf[got..], at + got as u64)? {
                    0 => break,
                    n => got += n,
                }
            }
            Ok(got < buf.len() || buf[..] != bytes[..buf.len()])
        };
        let tail_at = end - tail.len() as u64;
        Ok(!differs(prefix, 0)? && !differs(tail, tail_at)?)
    }

    /// True once a read found the file no longer holding what was read before (rewritten in
    /// place or truncated between the caller's look and the read): the bytes of that read were
    /// dropped, and nothing more is read; the caller starts over on the new content.
    pub fn rewritten(&self) -> bool {
        self.rewritten
    }

    /// True if bytes of an unterminated line are waiting.
    pub fn has_partial(&self) -> bool {
        self.consumed < self.buf.len()
    }

    /// Reads up to `budget` new bytes and offers every complete line to `f`, in order.
    /// Returns how many bytes were read from the file.
    ///
    /// `prefix` is the file's first bytes as the caller knows them (may be empty). Every read is
    /// checked afterwards against them and the last bytes read before it: a rewrite in place
    /// that happened just before the read looks like growth by its size alone. Checking after the
    /// read, not before, leaves no gap: a rewrite after the check means the bytes read were the
    /// old content's.
    pub fn poll(
        &mut self,
        budget: usize,
        prefix: &[u8],
        f: &mut impl FnMut(Line<'_>) -> Flow,
    ) -> io::Result<usize> {
        let mut read = 0;
        loop {
            if self.cut(f) == Flow::Stop {
                return Ok(read);
            }
            if read >= budget {
                return Ok(read);
            }
            let n = self.fill(prefix)?;
            if n == 0 {
                return Ok(read);
            }
            read += n;
        }
    }

    /// Hands out the unterminated last line (the file was rotated away and will not grow).
    pub fn take_partial(&mut self, f: &mut impl FnMut(Line<'_>) -> Flow) -> Flow {
        if !self.has_partial() {
            return Flow::Continue;
        }
        let start = self.position();
        let end = self.read_position();
        let payload = if self.discarding { None } else { Some(&self.buf[self.consumed..]) };
        let flow = f(Line { payload, start, end, dead_letter: None });
        if flow == Flow::Continue {
            self.consumed = self.buf.len();
            self.discarding = false;
            self.finish_long(end, end);
            return self.offer_dead_letter(f);
        }
        flow
    }

    fn fill(&mut self, prefix: &[u8]) -> io::Result<usize> {
        if self.rewritten {
            return Ok(0);
        }
        if self.consumed > 0 && self.consumed * 2 >= self.buf.len() {
            self.buf.drain(..self.consumed);
            self.buf_start += self.consumed as u64;
            self.consumed = 0;
        }
        let old = self.buf.len();
        let at = self.buf_start + old as u64;
        self.buf.resize(old + CHUNK, 0);
        let n = match self.file.read_at(&mut self.buf[old..], at) {
            Ok(n) => n,
            Err(e) => {
                self.buf.truncate(old);
                return Err(e);
            }
        };
        self.buf.truncate(old + n);
        if n == 0 {
            return Ok(0);
        }
        // The reader's own first bytes are as good as the caller's when it began at 0.
        let prefix = if prefix.len() >= self.head.len() { prefix } else { &self.head };
        if !self.holds(prefix, &self.tail, at)? {
            self.buf.truncate(old);
            self.rewritten = true;
            return Ok(0);
        }
        let new = &self.buf[old..old + n];
        self.tail.extend_from_slice(&new[n.saturating_sub(TAIL_BYTES)..]);
        if self.tail.len() > TAIL_BYTES {
            self.tail.drain(..self.tail.len() - TAIL_BYTES);
        }
        if at == self.head.len() as u64 && self.head.len() < FINGERPRINT_BYTES {
            let take = n.min(FINGERPRINT_BYTES - self.head.len());
            self.head.extend_from_slice(&self.buf[old..old + take]);
        }
        Ok(n)
    }

    /// Offers the complete lines (and over-long pieces) in `buf`.
    fn cut(&mut self, f: &mut impl FnMut(Line<'_>) -> Flow) -> Flow {
        loop {
            if self.offer_dead_letter(f) == Flow::Stop {
                return Flow::Stop;
            }
            let rest = &self.buf[self.consumed..];
            let start = self.position();
            match memchr::memchr(b'\n', rest) {
                Some(nl) => {
                    let end = start + nl as u64 + 1;
                    let mut content = &rest[..nl];
                    if content.last() == Some(&b'\r') {
                        content = &content[..content.len() - 1];
                    }
                    let content_end = start + content.len() as u64;
                    if self.discarding {
                        if f(Line { payload: None, start, end, dead_letter: None }) == Flow::Stop {
                            return Flow::Stop;
                        }
                        self.discarding = false;
                        self.finish_long(content_end, end);
                    } else if content.len() > self.max_line {
                        // Over-long but complete: handled piece by piece below.
                        if self.offer_long(f, start) == Flow::Stop {
                            return Flow::Stop;
                        }
                        continue;
                    } else if f(Line { payload: Some(content), start, end, dead_letter: None }) == Flow::Stop
                    {
                        return Flow::Stop;
                    } else {
                        // The last piece of a split over-long line, or an ordinary line.
                        self.finish_long(content_end, end);
                    }
                    self.consumed += nl + 1;
                }
                // (A trailing `\r` may be the first half of a CRLF: a line of exactly `max_line`
                // bytes whose `\n` has not arrived yet is not over-long.)
                None if (rest.len() > self.max_line
                    && !(rest.len() == self.max_line + 1 && rest.last() == Some(&b'\r')))
                    || (self.discarding && !rest.is_empty()) =>
                {
                    if self.discarding {
                        let end = start + rest.len() as u64;
                        if f(Line { payload: None, start, end, dead_letter: None }) == Flow::Stop {
                            return Flow::Stop;
                        }
                        self.consumed = self.buf.len();
                    } else if self.offer_long(f, start) == Flow::Stop {
                        return Flow::Stop;
                    }
                }
                None => return Flow::Continue,
            }
        }
    }

    /// The first `max_line` bytes of an over-long line, per the policy.
    fn offer_long(&mut self, f: &mut impl FnMut(Line<'_>) -> Flow, start: u64) -> Flow {
        let piece = &self.buf[self.consumed..self.consumed + self.max_line];
        let end = start + self.max_line as u64;
        let payload = match self.policy {
            LongLinePolicy::Split | LongLinePolicy::Truncate => Some(piece),
            LongLinePolicy::Skip => None,
        };
        if f(Line { payload, start, end, dead_letter: None }) == Flow::Stop {
            return Flow::Stop;
        }
        if self.dead_letters && self.long.is_none() {
            self.long = Some(LongLine { start, head: piece.to_vec() });
        }
        self.consumed += self.max_line;
        match self.policy {
            LongLinePolicy::Split => self.stats.split += 1,
            LongLinePolicy::Truncate => {
                self.stats.truncated += 1;
                self.discarding = true;
            }
            LongLinePolicy::Skip => {
                self.stats.skipped += 1;
                self.discarding = true;
            }
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Issue 14 finding 2: a rewrite in place is told from growth by the bytes already read,
    /// whether the new content is longer or of the same length.
    #[test]
    fn a_rewrite_in_place_is_told_from_growth() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("status.log");
        std::fs::write(&path, b"status: ok 0001\n").expect("write");
        let mut r = Reader::new(File::open(&path).expect("open"), 0, 1024, LongLinePolicy::Split);
        r.poll(1 << 20, &[], &mut |_| Flow::Continue).expect("poll");
        let prefix = r.head().to_vec();
        assert!(r.still_holds_what_was_read(&prefix).expect("check"), "nothing changed yet");
        let f = std::fs::OpenOptions::new().append(true).open(&path).expect("open for append");
        (&f).write_all(b"status: ok 0002\n").expect("append");
        assert!(r.still_holds_what_was_read(&prefix).expect("check"), "growth is not a rewrite");
        r.poll(1 << 20, &[], &mut |_| Flow::Continue).expect("poll");
        let w = std::fs::OpenOptions::new().write(true).open(&path).expect("open for rewrite");
        // The same first line, a different second one of the same length: only the tail shows it.
        w.write_all_at(b"status: ok 0001\nstatus: ko 0003\n", 0).expect("pwrite");
        assert!(!r.still_holds_what_was_read(&prefix).expect("check"), "same length, new tail");
        w.write_all_at(b"xtatus: ok 0001\nstatus: ok 0002\n", 0).expect("pwrite");
        assert!(!r.still_holds_what_was_read(&prefix).expect("check"), "same length, new head");
    }

    /// A rewrite in place that happens between the caller's look at the file and the read
    /// (emptied and refilled with more bytes than were read: the torture's `rewrite in place`,
    /// seed 94742826) must not hand out the new content's bytes past the old read position as
    /// if the old file had grown: they are sent again when the rewrite is noticed (15
    /// exactly-once duplicates in that run).
    #[test]
    fn a_rewrite_between_the_look_and_the_read_hands_out_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("app.log");
        std::fs::write(&path, b"old line 0001\nold line 0002\n").expect("write");
        let mut r = Reader::new(File::open(&path).expect("open"), 0, 1024, LongLinePolicy::Split);
        r.poll(1 << 20, &[], &mut |_| Flow::Continue).expect("poll");
        let prefix = r.head().to_vec();
        // The caller looked (nothing moved), then the writer rewrote the file, then it reads.
        std::fs::write(&path, b"new line 0003\nnew line 0004\nnew line 0005\n").expect("rewrite");
        let mut out = Vec::new();
        let read = r
            .poll(1 << 20, &prefix, &mut |l: Line<'_>| {
                out.push(l.payload.map(<[u8]>::to_vec));
                Flow::Continue
            })
            .expect("poll");
        assert_eq!(out, Vec::<Option<Vec<u8>>>::new(), "no new content handed out as growth");
        assert_eq!(read, 0);
        assert!(r.rewritten(), "the reader says what it saw");
        assert_eq!(r.position(), 28, "the position stays at the end of the old content");
        // Growth after a clean read is still growth.
        let mut g = Reader::new(File::open(&path).expect("open"), 0, 1024, LongLinePolicy::Split);
        g.poll(1 << 20, &[], &mut |_| Flow::Continue).expect("poll");
        let prefix = g.head().to_vec();
        let f = std::fs::OpenOptions::new().append(true).open(&path).expect("open for append");
        (&f).write_all(b"new line 0006\n").expect("append");
        let mut grown = Vec::new();
        g.poll(1 << 20, &prefix, &mut |l: Line<'_>| {
            grown.push(l.payload.map(<[u8]>::to_vec));
            Flow::Continue
        })
        .expect("poll");
        assert_eq!(grown, vec![Some(b"new line 0006".to_vec())]);
        assert!(!g.rewritten());
    }

    /// (payload, start, end) of each piece handed out.
    type Piece = (Option<Vec<u8>>, u64, u64);

    fn lines(content: &[u8], max: u64, policy: LongLinePolicy) -> (Vec<Piece>, Reader) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        std::fs::write(&path, content).expect("write");
        let mut r = Reader::new(File::open(&path).expect("open"), 0, max, policy);
        let mut out = Vec::new();
        r.poll(usize::MAX, &[], &mut |l: Line<'_>| {
            out.push((l.payload.map(<[u8]>::to_vec), l.start, l.end));
            Flow::Continue
        })
        .expect("poll");
        (out, r)
    }

    #[test]
    fn cuts_lines_strips_crlf_and_keeps_partials() {
        let (out, r) = lines(b"a\r\nbb\n\nccc", 100, LongLinePolicy::Split);
        assert_eq!(
            out,
            vec![(Some(b"a".to_vec()), 0, 3), (Some(b"bb".to_vec()), 3, 6), (Some(Vec::new()), 6, 7)]
        );
        assert!(r.has_partial());
        assert_eq!(r.position(), 7);
    }

    #[test]
    fn binary_bytes_pass_through_unchanged() {
        let (out, _) = lines(b"\xff\xfe\x00bin\n", 100, LongLinePolicy::Split);
        assert_eq!(out[0].0.as_deref(), Some(&b"\xff\xfe\x00bin"[..]));
    }

    #[test]
    fn long_lines_follow_the_policy_and_cover_every_byte() {
        let text = b"0123456789\nok\n";
        let (split, _) = lines(text, 4, LongLinePolicy::Split);
        let payloads: Vec<_> = split.iter().map(|l| l.0.clone().unwrap_or_default()).collect();
        assert_eq!(payloads, vec![b"0123".to_vec(), b"4567".to_vec(), b"89".to_vec(), b"ok".to_vec()]);
        let (trunc, r) = lines(text, 4, LongLinePolicy::Truncate);
        assert_eq!(trunc[0], (Some(b"0123".to_vec()), 0, 4));
        assert_eq!(trunc[1], (None, 4, 11));
        assert_eq!(trunc[2].0.as_deref(), Some(&b"ok"[..]));
        assert_eq!(r.stats.truncated, 1);
        let (skip, r) = lines(text, 4, LongLinePolicy::Skip);
        assert_eq!(skip.iter().filter(|l| l.0.is_some()).count(), 1);
        assert_eq!(skip.last().map(|l| l.2), Some(14));
        assert_eq!(r.stats.skipped, 1);
        // every byte range is covered, contiguously
        for out in [&split, &trunc, &skip] {
            for pair in out.windows(2) {
                assert_eq!(pair[0].2, pair[1].1);
            }
        }
    }

    #[test]
    fn dead_letters_follow_over_long_lines_with_their_length() {
        for policy in [LongLinePolicy::Split, LongLinePolicy::Truncate, LongLinePolicy::Skip] {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("f");
            std::fs::write(&path, b"ok\n0123456789\r\nok\n").expect("write");
            let mut r = Reader::new(File::open(&path).expect("open"), 0, 4, policy).with_dead_letters(true);
            let mut letters = Vec::new();
            let mut last_end = 0;
            r.poll(usize::MAX, &[], &mut |l: Line<'_>| {
                assert!(l.start >= last_end.min(l.start) && l.end >= l.start);
                last_end = l.end;
                if let Some(d) = l.dead_letter {
                    letters.push((d.head.to_vec(), d.start, d.original_len, l.end));
                }
                Flow::Continue
            })
            .expect("poll");
            assert_eq!(letters, vec![(b"0123".to_vec(), 3, 10, 15)], "{policy:?}");
        }
    }

    #[test]
    fn stop_offers_the_same_line_again_and_growth_is_picked_up() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"one\ntwo\n").expect("write");
        let mut r = Reader::new(File::open(&path).expect("open"), 0, 100, LongLinePolicy::Split);
        let mut seen = Vec::new();
        r.poll(usize::MAX, &[], &mut |l: Line<'_>| {
            if seen.len() == 1 {
                return Flow::Stop;
            }
            seen.push(l.payload.map(<[u8]>::to_vec));
            Flow::Continue
        })
        .expect("poll");
        assert_eq!(r.position(), 4);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open")
            .write_all(b"three\n")
            .expect("append");
        r.poll(usize::MAX, &[], &mut |l: Line<'_>| {
            seen.push(l.payload.map(<[u8]>::to_vec));
            Flow::Continue
        })
        .expect("poll");
        assert_eq!(seen, vec![Some(b"one".to_vec()), Some(b"two".to_vec()), Some(b"three".to_vec())]);
    }

    /// Issue 14 finding 7: a CRLF line of exactly `max_line` bytes whose `\n` arrives in a later
    /// read was classed as over-long when its `\r` arrived alone (and lost under `skip`).
    #[test]
    fn a_crlf_line_of_exactly_max_line_bytes_split_before_its_newline_is_not_over_long() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789\r").expect("write");
        let mut r = Reader::new(File::open(&path).expect("open"), 0, 10, LongLinePolicy::Skip);
        let mut seen = Vec::new();
        let mut collect = |l: Line<'_>| {
            seen.push((l.payload.map(<[u8]>::to_vec), l.start, l.end));
            Flow::Continue
        };
        r.poll(usize::MAX, &[], &mut collect).expect("poll");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open")
            .write_all(b"\nok\n")
            .expect("append");
        r.poll(usize::MAX, &[], &mut collect).expect("poll");
        assert_eq!(seen, vec![(Some(b"0123456789".to_vec()), 0, 12), (Some(b"ok".to_vec()), 12, 15)]);
        assert_eq!(r.stats.skipped, 0);
    }
}
