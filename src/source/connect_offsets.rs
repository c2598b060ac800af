//! Reading a Kafka Connect standalone worker's offsets file (`offset.storage.file.filename`), so
//! that a FileStreamSource's positions can be taken over (`macklake import-offsets`).
//!
//! The file is a Java-serialized `HashMap<byte[], byte[]>` whose keys and values are JSON:
//! key `["<connector>",{"filename":"<path>"}]`, value `{"position":<bytes read>}`. Only the few
//! constructs that stream can hold are understood; anything else is refused, never guessed.

use std::path::PathBuf;

const STREAM_MAGIC: [u8; 4] = [0xAC, 0xED, 0x00, 0x05];
const TC_NULL: u8 = 0x70;
const TC_REFERENCE: u8 = 0x71;
const TC_CLASSDESC: u8 = 0x72;
const TC_OBJECT: u8 = 0x73;
const TC_ARRAY: u8 = 0x75;
const TC_BLOCKDATA: u8 = 0x77;
const TC_ENDBLOCKDATA: u8 = 0x78;

#[derive(Debug, thiserror::Error)]
#[error("not a Kafka Connect standalone offsets file (at byte {at}): {what}")]
pub struct FormatError {
    at: usize,
    what: String,
}

struct Stream<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Stream<'a> {
    fn fail<T>(&self, what: impl Into<String>) -> Result<T, FormatError> {
        Err(FormatError { at: self.at, what: what.into() })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.bytes.len() - self.at < n {
            return self.fail("truncated");
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FormatError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, FormatError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn utf(&mut self) -> Result<String, FormatError> {
        let n = self.u16()? as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }

    /// A class descriptor (new), returning its name; skips its fields and annotations.
    fn class_desc(&mut self) -> Result<String, FormatError> {
        let name = self.utf()?;
        self.take(8)?; // serialVersionUID
        self.u8()?; // flags
        let fields = self.u16()?;
        for _ in 0..fields {
            let code = self.u8()?;
            self.utf()?;
            if code == b'L' || code == b'[' {
                // An object field's type is a string (new or a reference).
                match self.u8()? {
                    0x74 => {
                        self.utf()?;
                    }
                    TC_REFERENCE => {
                        self.take(4)?;
                    }
                    other => return self.fail(format!("unexpected field type tag {other:#x}")),
                }
            }
        }
        if self.u8()? != TC_ENDBLOCKDATA {
            return self.fail("class annotations are not supported");
        }
        match self.u8()? {
            TC_NULL => {}
            other => return self.fail(format!("a superclass ({other:#x}) is not expected")),
        }
        Ok(name)
    }

    /// A `byte[]` (or null).
    fn byte_array(&mut self) -> Result<Option<Vec<u8>>, FormatError> {
        match self.u8()? {
            TC_NULL => return Ok(None),
            TC_ARRAY => {}
            other => return self.fail(format!("expected a byte array, found tag {other:#x}")),
        }
        match self.u8()? {
            TC_CLASSDESC => {
                let name = self.class_desc()?;
                if name != "[B" {
                    return self.fail(format!("expected byte[], found {name}"));
                }
            }
            TC_REFERENCE => {
                self.take(4)?;
            }
            other => return self.fail(format!("unexpected array class tag {other:#x}")),
        }
        let len = self.i32()?;
        if len < 0 {
            return self.fail("negative array length");
        }
        Ok(Some(self.take(len as usize)?.to_vec()))
    }
}

/// One raw entry: key bytes, value bytes (None: a null value).
pub type RawEntry = (Vec<u8>, Option<Vec<u8>>);

/// The raw entries of an offsets file.
pub fn read_entries(bytes: &[u8]) -> Result<Vec<RawEntry>, FormatError> {
    let mut s = Stream { bytes, at: 0 };
    if s.take(4)? != STREAM_MAGIC {
        return s.fail("no Java serialization header");
    }
    if s.u8()? != TC_OBJECT || s.u8()? != TC_CLASSDESC {
        return s.fail("expected an object");
    }
    let class = s.class_desc()?;
    if class != "java.util.HashMap" {
        return s.fail(format!("expected java.util.HashMap, found {class}"));
    }
    s.take(8)?; // loadFactor, threshold
    if s.u8()? != TC_BLOCKDATA || s.u8()? != 8 {
        return s.fail("expected HashMap's capacity and size");
    }
    s.take(4)?; // capacity
    let size = s.i32()?;
    let mut entries = Vec::new();
    for _ in 0..size {
        let Some(key) = s.byte_array()? else { return s.fail("null key") };
        let value = s.byte_array()?;
        entries.push((key, value));
    }
    Ok(entries)
}

/// The byte offset of a FileStreamSource `position`, which counts UTF-16 code units (Java
/// chars) of the lines read, not bytes; `None` unless it ends a line within `content` (the file
/// changed since, or is not UTF-8). For ASCII files both are the same.
pub fn byte_offset(content: &[u8], position: u64) -> Option<u64> {
    if position == 0 {
        return Some(0);
    }
    let text = std::str::from_utf8(content).ok().or_else(|| {
        // A partial last character past the position does not matter: decode the valid prefix.
        std::str::from_utf8(&content[..std::str::from_utf8(content).err()?.valid_up_to()]).ok()
    })?;
    let mut units = 0u64;
    for (i, c) in text.char_indices() {
        units += c.len_utf16() as u64;
        if units == position {
            return (c == '\n').then_some((i + c.len_utf8()) as u64);
        }
        if units > position {
            return None;
        }
    }
    None
}

/// One FileStreamSource position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePosition {
    pub connector: String,
    pub filename: PathBuf,
    pub position: u64,
}

/// The FileStreamSource positions in an offsets file (entries of other shapes are skipped and
/// counted in the second value).
pub fn file_positions(bytes: &[u8]) -> Result<(Vec<FilePosition>, usize), FormatError> {
    let mut positions = Vec::new();
    let mut other = 0;
    for (key, value) in read_entries(bytes)? {
        let key: Option<(String, serde_json::Value)> = serde_json::from_slice(&key).ok();
        let value: Option<serde_json::Value> = value.and_then(|v| serde_json::from_slice(&v).ok());
        let found = key.zip(value).and_then(|((connector, partition), value)| {
            Some(FilePosition {
                connector,
                filename: PathBuf::from(partition.get("filename")?.as_str()?),
                position: value.get("position")?.as_u64()?,
            })
        });
        match found {
            Some(p) => positions.push(p),
            None => other += 1,
        }
    }
    Ok((positions, other))
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Format { path: PathBuf, source: FormatError },
    #[error("{0}")]
    Refused(String),
}

/// What an import did: one line per position.
#[derive(Debug, Default)]
pub struct Imported {
    pub applied: Vec<String>,
    pub skipped: Vec<String>,
}

/// Takes the FileStreamSource positions in `offsets_file` over into the checkpoints of the
/// file-source connectors of the same name (Connect `.properties`/JSON files, or TOML ones with
/// that name). Refuses exactly-once sources (their positions live in Kafka) and sources that
/// already have checkpoints unless `force`. Run it while the daemon is stopped: the daemon
/// reads checkpoints at start-up only.
pub fn import(
    offsets_file: &std::path::Path,
    connectors: &[crate::config::ConnectorConfig],
    state_dir: &std::path::Path,
    only: Option<&str>,
    force: bool,
) -> Result<Imported, ImportError> {
    use super::checkpoint::{Checkpoints, Entry};
    use super::fingerprint::{FileId, Fingerprint};
    use crate::config::ConnectorKind;

    let bytes = std::fs::read(offsets_file)
        .map_err(|source| ImportError::Read { path: offsets_file.to_path_buf(), source })?;
    let (positions, _) = file_positions(&bytes)
        .map_err(|source| ImportError::Format { path: offsets_file.to_path_buf(), source })?;
    let mut report = Imported::default();
    let mut by_connector: std::collections::BTreeMap<&str, Vec<&FilePosition>> = Default::default();
    for p in &positions {
        if only.is_none_or(|o| o == p.connector) {
            by_connector.entry(&p.connector).or_default().push(p);
        }
    }
    if by_connector.is_empty() {
        return Err(ImportError::Refused(format!(
            "{}: no FileStreamSource positions{}",
            offsets_file.display(),
            only.map(|o| format!(" for connector `{o}`")).unwrap_or_default()
        )));
    }
    for (name, positions) in by_connector {
        let Some(connector) = connectors.iter().find(|c| c.name == name) else {
            report.skipped.extend(positions.iter().map(|p| {
                format!(
                    "{name}: {}: no connector of that name in the connectors directory",
                    p.filename.display()
                )
            }));
            continue;
        };
        let ConnectorKind::Source(cfg) = &connector.kind else {
            return Err(ImportError::Refused(format!(
                "{name} ({}) is not a file-source",
                connector.file.display()
            )));
        };
        if cfg.exactly_once {
            return Err(ImportError::Refused(format!(
                "{name} ({}) is exactly-once: its positions live in Kafka; import while exactly_once is off, run once, then switch it on",
                connector.file.display()
            )));
        }
        let path = state_dir.join("sources").join(name).join("checkpoints.json");
        let mut checkpoints =
            Checkpoints::load(&path).map_err(|source| ImportError::Read { path: path.clone(), source })?;
        if !checkpoints.entries.is_empty() && !force {
            return Err(ImportError::Refused(format!(
                "{name} already has checkpoints ({}); give --force to replace the positions of the imported files",
                path.display()
            )));
        }
        for p in positions {
            let opened = std::fs::File::open(&p.filename).and_then(|f| {
                let meta = f.metadata()?;
                let content = std::fs::read(&p.filename)?;
                Ok((FileId::of(&meta), byte_offset(&content, p.position), Fingerprint::of(&f)?))
            });
            match opened {
                Ok((_, None, _)) => report.skipped.push(format!(
                    "{name}: {}: position {} (characters, as Connect counts) does not end a line of the file as it is now: rotated or changed since; it will be read from the start",
                    p.filename.display(),
                    p.position
                )),
                Ok((id, Some(offset), fingerprint)) => {
                    checkpoints.entries.insert(
                        id,
                        Entry {
                            path: p.filename.clone(),
                            id,
                            fingerprint,
                            offset,
                            seen_at: crate::fsutil::unix_now(),
                        },
                    );
                    report.applied.push(format!("{name}: {} at byte {offset}", p.filename.display()));
                }
                Err(e) => report.skipped.push(format!("{name}: {}: {e}", p.filename.display())),
            }
        }
        checkpoints.save().map_err(|source| ImportError::Read { path: path.clone(), source })?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `ObjectOutputStream.writeObject(HashMap<byte[], byte[]>)` writes for one entry (the
    /// class descriptors as Java 17 writes them).
    fn one_entry(key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut b = vec![0xAC, 0xED, 0x00, 0x05, TC_OBJECT, TC_CLASSDESC];
        let name = b"java.util.HashMap";
        b.extend_from_slice(&(name.len() as u16).to_be_bytes());
        b.extend_from_slice(name);
        b.extend_from_slice(&[0x05, 0x07, 0xDA, 0xC1, 0xC3, 0x16, 0x60, 0xD1, 0x03, 0x00, 0x02]);
        b.extend_from_slice(&[b'F', 0x00, 0x0A]);
        b.extend_from_slice(b"loadFactor");
        b.extend_from_slice(&[b'I', 0x00, 0x09]);
        b.extend_from_slice(b"threshold");
        b.extend_from_slice(&[TC_ENDBLOCKDATA, TC_NULL]);
        b.extend_from_slice(&[0x3F, 0x40, 0, 0, 0, 0, 0, 0x0C]);
        b.extend_from_slice(&[TC_BLOCKDATA, 8, 0, 0, 0, 0x10, 0, 0, 0, 1]);
        b.extend_from_slice(&[TC_ARRAY, TC_CLASSDESC, 0x00, 0x02, b'[', b'B']);
        b.extend_from_slice(&[0xAC, 0xF3, 0x17, 0xF8, 0x06, 0x08, 0x54, 0xE0, 0x02, 0x00, 0x00]);
        b.extend_from_slice(&[TC_ENDBLOCKDATA, TC_NULL]);
        b.extend_from_slice(&(key.len() as i32).to_be_bytes());
        b.extend_from_slice(key);
        b.extend_from_slice(&[TC_ARRAY, TC_REFERENCE, 0x00, 0x7E, 0x00, 0x02]);
        b.extend_from_slice(&(value.len() as i32).to_be_bytes());
        b.extend_from_slice(value);
        b.push(TC_ENDBLOCKDATA);
        b
    }

    #[test]
    fn a_filestream_source_position_is_read() {
        let bytes =
            one_entry(br#"["local-file-source",{"filename":"/tmp/test.txt"}]"#, br#"{"position":1234}"#);
        let (positions, other) = file_positions(&bytes).expect("valid");
        assert_eq!(other, 0);
        assert_eq!(
            positions,
            vec![FilePosition {
                connector: "local-file-source".into(),
                filename: "/tmp/test.txt".into(),
                position: 1234
            }]
        );
    }

    #[test]
    fn the_file_a_real_connect_worker_wrote_is_read() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/connect-offsets/standalone.offsets"
        ))
        .expect("fixture");
        let entries = read_entries(&bytes).expect("valid");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries.iter().filter(|(_, v)| v.is_none()).count(), 1, "the reset connector's tombstone");
        let (positions, other) = file_positions(&bytes).expect("valid");
        assert_eq!(other, 1);
        let app = positions.iter().find(|p| p.connector == "app-logs").expect("app-logs");
        assert_eq!(app.position, 14);
        assert_eq!(app.filename, PathBuf::from("/tmp/macklake-connect-offsets-fixture/app.log"));
    }

    #[test]
    fn connects_character_positions_become_byte_offsets_at_line_ends() {
        // "héllo\n" is 6 characters (UTF-16 units) but 7 bytes.
        let text = "héllo\nwörld\n".as_bytes();
        assert_eq!(byte_offset(text, 6), Some(7));
        assert_eq!(byte_offset(text, 12), Some(14));
        assert_eq!(byte_offset(text, 3), None, "not at a line end");
        assert_eq!(byte_offset(text, 40), None, "past the end");
        // An emoji is two UTF-16 units.
        assert_eq!(byte_offset("😀\n".as_bytes(), 3), Some(5));
        assert_eq!(byte_offset(b"", 0), Some(0));
    }

    #[test]
    fn anything_else_is_refused() {
        assert!(file_positions(b"{\"not\":\"java\"}").is_err());
        let mut bytes = one_entry(b"[]", b"{}");
        bytes.truncate(bytes.len() - 5);
        assert!(read_entries(&bytes).is_err(), "truncated");
    }
}
