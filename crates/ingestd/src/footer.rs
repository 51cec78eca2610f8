//! Bounds checks on the footers of spooled Parquet and Arrow IPC files,
//! before the Arrow / Parquet readers see them.
//!
//! Both readers size some allocations from lengths declared in the file: an
//! Arrow IPC block's `bodyLength`, a Parquet `row_groups` list's element
//! count. A hostile footer declaring terabytes makes the allocation fail,
//! which aborts the process — no `catch_unwind` helps. So every declared
//! length is checked against the bytes actually received first: Arrow blocks
//! must lie inside the file; every Parquet Thrift list, set, map and binary
//! must fit in the footer that holds it (each element takes at least one
//! byte), so what a reader reserves stays proportional to the upload.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use crate::error::IngestError;

fn bad(what: &str, why: impl std::fmt::Display) -> IngestError {
    IngestError::BadData(format!("not a valid {what} file: {why}"))
}

fn read_tail(file: &mut File, len: u64, n: u64) -> Result<Vec<u8>, IngestError> {
    let mut buf = vec![0; n as usize];
    file.seek(SeekFrom::Start(len - n))
        .and_then(|_| file.read_exact(&mut buf))
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .map_err(IngestError::Spool)?;
    Ok(buf)
}

/// Checks an Arrow IPC file's trailer, footer and block ranges.
pub fn check_arrow_file(file: &mut File, len: u64) -> Result<(), IngestError> {
    const WHAT: &str = "Arrow IPC";
    // "ARROW1", 2 bytes of padding, …, footer, footer length, "ARROW1".
    if len < 18 {
        return Err(bad(WHAT, format!("{len} bytes is too short (truncated?)")));
    }
    let trailer = read_tail(file, len, 10)?;
    if &trailer[4..] != b"ARROW1" {
        return Err(bad(WHAT, "it does not end with ARROW1 (truncated?)"));
    }
    let footer_len = i32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
    if footer_len < 0 || footer_len as u64 > len - 18 {
        return Err(bad(
            WHAT,
            format!("its footer length {footer_len} does not fit in {len} bytes"),
        ));
    }
    let tail = read_tail(file, len, footer_len as u64 + 10)?;
    let footer = arrow::ipc::root_as_footer(&tail[..footer_len as usize])
        .map_err(|e| bad(WHAT, format!("its footer is malformed ({e})")))?;
    if footer.schema().is_none() {
        return Err(bad(WHAT, "its footer has no schema"));
    }
    if let Some(kvs) = footer.custom_metadata()
        && kvs
            .iter()
            .any(|kv| kv.key().is_none() || kv.value().is_none())
    {
        return Err(bad(
            WHAT,
            "its footer has a metadata entry without key or value",
        ));
    }
    let blocks = footer
        .recordBatches()
        .into_iter()
        .flatten()
        .chain(footer.dictionaries().into_iter().flatten());
    for (i, b) in blocks.enumerate() {
        let end = [b.offset(), b.metaDataLength() as i64, b.bodyLength()]
            .into_iter()
            .try_fold(0i64, |acc, x| if x < 0 { None } else { acc.checked_add(x) });
        if end.is_none_or(|end| end as u64 > len) {
            return Err(bad(
                WHAT,
                format!(
                    "block {i} (offset {}, {} + {} bytes) lies outside the {len}-byte file",
                    b.offset(),
                    b.metaDataLength(),
                    b.bodyLength()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks a Parquet file's trailer and every length its footer declares.
pub fn check_parquet(file: &mut File, len: u64) -> Result<(), IngestError> {
    const WHAT: &str = "Parquet";
    if len < 12 {
        return Err(bad(WHAT, format!("{len} bytes is too short (truncated?)")));
    }
    let trailer = read_tail(file, len, 8)?;
    match &trailer[4..] {
        b"PAR1" => {}
        b"PARE" => return Err(bad(WHAT, "encrypted Parquet files are not supported")),
        _ => return Err(bad(WHAT, "it does not end with PAR1 (truncated?)")),
    }
    let meta_len = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes")) as u64;
    if meta_len > len - 12 {
        return Err(bad(
            WHAT,
            format!("its footer length {meta_len} does not fit in {len} bytes"),
        ));
    }
    let tail = read_tail(file, len, meta_len + 8)?;
    let mut t = Thrift {
        buf: &tail[..meta_len as usize],
        pos: 0,
    };
    t.skip(STRUCT, 0)
        .map_err(|why| bad(WHAT, format!("its footer is malformed ({why})")))
}

const STRUCT: u8 = 12;
/// Deeper nesting than any Parquet footer has; also bounds this recursion.
const MAX_DEPTH: usize = 64;

/// A walker over Thrift compact-protocol bytes that checks lengths only.
struct Thrift<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Thrift<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.buf.get(self.pos).ok_or("it ends early")?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a number is too long".to_string())
    }

    fn advance(&mut self, n: u64) -> Result<(), String> {
        if n > self.remaining() as u64 {
            return Err(format!(
                "a length of {n} runs past its end ({} bytes left)",
                self.remaining()
            ));
        }
        self.pos += n as usize;
        Ok(())
    }

    /// A count of elements, each at least one byte long.
    fn count(&mut self, n: u64) -> Result<u64, String> {
        if n > self.remaining() as u64 {
            return Err(format!(
                "it declares {n} elements with {} bytes left",
                self.remaining()
            ));
        }
        Ok(n)
    }

    /// Skips one value of compact type `ty`.
    fn skip(&mut self, ty: u8, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("it nests too deeply".to_string());
        }
        match ty {
            1 | 2 => Ok(()),
            3 => self.advance(1),
            4..=6 => self.varint().map(|_| ()),
            7 => self.advance(8),
            8 => {
                let n = self.varint()?;
                self.advance(n)
            }
            9 | 10 => {
                let h = self.byte()?;
                let n = match h >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                let n = self.count(n)?;
                let elem = h & 0x0f;
                for _ in 0..n {
                    // Booleans in collections take one byte each.
                    if matches!(elem, 1 | 2) {
                        self.advance(1)?;
                    } else {
                        self.skip(elem, depth + 1)?;
                    }
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let n = self.count(n)?;
                let kv = self.byte()?;
                for _ in 0..n {
                    for t in [kv >> 4, kv & 0x0f] {
                        if matches!(t, 1 | 2) {
                            self.advance(1)?;
                        } else {
                            self.skip(t, depth + 1)?;
                        }
                    }
                }
                Ok(())
            }
            STRUCT => loop {
                let h = self.byte()?;
                if h == 0 {
                    return Ok(());
                }
                if h >> 4 == 0 {
                    self.varint()?;
                }
                self.skip(h & 0x0f, depth + 1)?;
            },
            13 => self.advance(16),
            other => Err(format!("unknown Thrift type {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(bytes: &[u8]) -> (File, u64) {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        (f, bytes.len() as u64)
    }

    fn parquet_with_footer(footer: &[u8]) -> Vec<u8> {
        let mut v = b"PAR1".to_vec();
        v.extend_from_slice(footer);
        v.extend_from_slice(&(footer.len() as u32).to_le_bytes());
        v.extend_from_slice(b"PAR1");
        v
    }

    #[test]
    fn a_huge_declared_row_group_count_is_refused() {
        // FileMetaData { 1: version=1, 2: schema=[{4: name="s"}], 3: num_rows=0,
        //                4: row_groups=list<struct> of 0x7fffffff }
        let footer = [
            0x15, 0x02, // field 1, i32, zigzag(1)
            0x19, 0x1c, // field 2, list: 1 element of struct
            0x48, 0x01, b's', 0x00, // field 4 binary "s", stop
            0x16, 0x00, // field 3, i64 0
            0x19, 0xfc, 0xff, 0xff, 0xff, 0xff, 0x07, // field 4, list<struct> size 2^31-1
            0x00, 0x00,
        ];
        let (mut f, len) = file(&parquet_with_footer(&footer));
        let e = check_parquet(&mut f, len).unwrap_err().to_string();
        assert!(e.contains("declares 2147483647 elements"), "{e}");
    }

    /// An Arrow IPC file whose first record batch block declares `body` bytes.
    pub(crate) fn arrow_file_with_body_length(body: i64) -> Vec<u8> {
        use arrow::array::{Int64Array, RecordBatch};
        let batch = RecordBatch::try_from_iter([(
            "a",
            std::sync::Arc::new(Int64Array::from(vec![1, 2])) as _,
        )])
        .unwrap();
        let mut ipc = Vec::new();
        let mut w = arrow::ipc::writer::FileWriter::try_new(&mut ipc, &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);
        let n = ipc.len();
        let footer_len = i32::from_le_bytes(ipc[n - 10..n - 6].try_into().unwrap()) as usize;
        let start = n - 10 - footer_len;
        let b = *arrow::ipc::root_as_footer(&ipc[start..n - 10])
            .unwrap()
            .recordBatches()
            .unwrap()
            .get(0);
        // The Block struct inline: offset i64, metaDataLength i32, padding, bodyLength i64.
        let mut pattern = b.offset().to_le_bytes().to_vec();
        pattern.extend_from_slice(&b.metaDataLength().to_le_bytes());
        let at = ipc[start..]
            .windows(pattern.len())
            .position(|w| w == pattern)
            .unwrap()
            + start;
        ipc[at + 16..at + 24].copy_from_slice(&body.to_le_bytes());
        ipc
    }

    #[test]
    fn a_huge_declared_arrow_block_is_refused() {
        for body in [1 << 40, -5, i64::MAX] {
            let (mut f, len) = file(&arrow_file_with_body_length(body));
            let e = check_arrow_file(&mut f, len).unwrap_err().to_string();
            assert!(e.contains("lies outside the"), "{e}");
        }
    }

    #[test]
    fn valid_files_pass_and_truncations_fail() {
        use arrow::array::{Int64Array, RecordBatch, StringArray};
        use std::sync::Arc;
        let batch = RecordBatch::try_from_iter([
            ("a", Arc::new(Int64Array::from(vec![1, 2, 3])) as _),
            ("b", Arc::new(StringArray::from(vec!["x", "y", "z"])) as _),
        ])
        .unwrap();
        let mut pq = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut pq, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let (mut f, len) = file(&pq);
        check_parquet(&mut f, len).unwrap();
        let mut ipc = Vec::new();
        let mut w = arrow::ipc::writer::FileWriter::try_new(&mut ipc, &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);
        let (mut f, len) = file(&ipc);
        check_arrow_file(&mut f, len).unwrap();
        for cut in [1, 7, 20] {
            let (mut f, len) = file(&pq[..pq.len() - cut]);
            assert!(check_parquet(&mut f, len).is_err());
            let (mut f, len) = file(&ipc[..ipc.len() - cut]);
            assert!(check_arrow_file(&mut f, len).is_err());
        }
    }
}
