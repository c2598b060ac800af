//! `macklake check --connector NAME --sample FILE`: what a source would make of a file, without
//! Kafka: its records with their offsets, which a filter dropped, and where records were cut. The
//! same reader, grouping and filters as the running source (the whole file read, then what is
//! left open handed out as its timeout would).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use super::events::{Assembler, Cut, Dropped, Record};
use super::reader::{Flow, Line, Reader};
use super::tailer::TailerConfig;
use crate::config::SourceConfig;

/// What the sample found, for the closing summary.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub multiline: u64,
    pub not_included: u64,
    pub excluded: u64,
    pub cuts: u64,
    /// Bytes the long-line policy dropped.
    pub dropped_bytes: u64,
}

/// Reads `path` as the source `cfg` would and writes each record to `out`.
pub fn run(cfg: &SourceConfig, path: &Path, out: &mut impl Write) -> io::Result<Summary> {
    let tailer = TailerConfig::of(cfg)
        .map_err(|b| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: {}", b.key, b.error)))?;
    let file = File::open(path)?;
    let mut reader = Reader::new(file, 0, cfg.max_line_bytes, cfg.long_lines);
    let mut assembler = Assembler::new(Arc::clone(&tailer.rules));
    let mut summary = Summary::default();
    let mut failed: Option<io::Error> = None;
    let filter = &tailer.rules.filter;
    let mut show = |r: Record<'_>, summary: &mut Summary| -> io::Result<()> {
        let what = match (filter.drops(r.payload), r.cut) {
            (Some(Dropped::NotIncluded), _) => {
                summary.not_included += 1;
                "dropped: matches no include_lines".to_string()
            }
            (Some(Dropped::Excluded), _) => {
                summary.excluded += 1;
                "dropped: matches exclude_lines".to_string()
            }
            (None, cut) => {
                summary.records += 1;
                summary.multiline += u64::from(r.lines > 1);
                let lines = if r.lines > 1 { format!(" of {} lines", r.lines) } else { String::new() };
                let cut = match cut {
                    Some(Cut::MaxLines) => ", cut at max_lines",
                    Some(Cut::MaxBytes) => ", cut at max_bytes",
                    Some(Cut::Timeout) => {
                        ", unfinished at the end of the file: sent after [multiline] timeout"
                    }
                    None => "",
                };
                summary.cuts += u64::from(matches!(cut, ", cut at max_lines" | ", cut at max_bytes"));
                format!("record{lines}{cut}")
            }
        };
        writeln!(out, "@{} {what}", r.start)?;
        for line in String::from_utf8_lossy(r.payload).split('\n') {
            writeln!(out, "    {line}")?;
        }
        Ok(())
    };
    let mut on_line = |line: Line<'_>, summary: &mut Summary| -> Flow {
        let mut record = |r: Record<'_>| match show(r, summary) {
            Ok(()) => Flow::Continue,
            Err(e) => {
                failed = Some(e);
                Flow::Stop
            }
        };
        match line.payload {
            Some(content) => assembler.offer(content, line.start, line.end, &mut record),
            None => {
                // Bytes the long-line policy dropped: part of the open record, if any; counted.
                summary.dropped_bytes += line.end - line.start;
                let _ = assembler.cover(line.end);
                Flow::Continue
            }
        }
    };
    reader.poll(usize::MAX, &[], &mut |l| on_line(l, &mut summary))?;
    reader.take_partial(&mut |l| on_line(l, &mut summary));
    let mut record = |r: Record<'_>| match show(r, &mut summary) {
        Ok(()) => Flow::Continue,
        Err(e) => {
            failed = Some(e);
            Flow::Stop
        }
    };
    assembler.flush(&mut record);
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_shows_records_drops_and_cuts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("app.log");
        std::fs::write(
            &path,
            "2026 ERROR boom\njava.lang.IllegalStateException: x\n\tat a.B(B.java:1)\n2026 INFO fine\n2026 ERROR again\n",
        )
        .expect("write");
        let text = format!(
            "name = \"s\"\nkind = \"file-source\"\npaths = [\"{}\"]\ntopic = \"t\"\ninclude_lines = [\"ERROR\"]\n[multiline]\npreset = \"java\"\n",
            path.display()
        );
        let c = crate::config::ConnectorConfig::parse(Path::new("/c/s.toml"), &text, &[]).expect("valid");
        let crate::config::ConnectorKind::Source(cfg) = &c.kind else { panic!("a source") };
        let mut out = Vec::new();
        let summary = run(cfg, &path, &mut out).expect("sample");
        let out = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            summary,
            Summary { records: 2, multiline: 1, not_included: 1, ..Summary::default() },
            "{out}"
        );
        assert!(out.starts_with("@0 record of 3 lines\n    2026 ERROR boom\n    java.lang"), "{out}");
        assert!(out.contains("@69 dropped: matches no include_lines\n    2026 INFO fine\n"), "{out}");
        assert!(out.contains("@84 record, unfinished at the end of the file"), "{out}");
    }
}
