//! A [`PageStore`] in a file: the native CLI's `--cache-mib`.
//!
//! Rows are appended to one file; an index in memory (the key and 12 bytes
//! a row) says where each is. A deleted row's space is not reused (a replay
//! deletes only the rows of PDUs dropped after their row was written). The
//! file is a scratch file, unlinked as soon as it is opened: its space goes
//! back to the system when the process ends, however it ends (the CLI never
//! drops its room: it exits instead).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use roomdag::pages::{PageError, PageStore, Table};

/// Rows of one table in a scratch file.
pub struct FilePages {
    file: File,
    /// Per key: (offset, length).
    index: HashMap<Box<str>, (u64, u32)>,
    end: u64,
}

impl FilePages {
    /// A new scratch file in `dir`.
    pub fn create_in(dir: &std::path::Path) -> std::io::Result<Self> {
        let path = dir.join(format!("roomdag-pages-{}-{}.bin", std::process::id(), nanos()));
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(Self { file, index: HashMap::new(), end: 0 })
    }

    /// Bytes written to the file.
    #[cfg(test)]
    pub fn file_bytes(&self) -> u64 {
        self.end
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn io(e: std::io::Error) -> PageError {
    PageError::Backend(e.to_string())
}

/// The index key of a row: an event ID for the PDU table (IDs start with
/// `$`), the key behind a prefix for the others.
fn row_key(table: Table, key: &str) -> std::borrow::Cow<'_, str> {
    match table {
        Table::Pdu => key.into(),
        other => format!("{}/{key}", other.name()).into(),
    }
}

impl PageStore for FilePages {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, PageError> {
        let Some(&(offset, len)) = self.index.get(&*row_key(table, key)) else { return Ok(None) };
        let mut buf = vec![0; len as usize];
        self.file.read_exact_at(&mut buf, offset).map_err(io)?;
        Ok(Some(buf))
    }

    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), PageError> {
        let len = u32::try_from(value.len()).map_err(|_| PageError::Backend("a row over 4 GiB".into()))?;
        self.file.write_all_at(value, self.end).map_err(io)?;
        self.index.insert(row_key(table, key).into(), (self.end, len));
        self.end += u64::from(len);
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &str) -> Result<(), PageError> {
        self.index.remove(&*row_key(table, key));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_the_scratch_file_is_never_left_behind() {
        let dir = std::env::temp_dir().join(format!("roomdag-file-pages-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut p = FilePages::create_in(&dir).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "unlinked once open");
        for k in 0..10u32 {
            p.put(Table::Pdu, &format!("$e{k}"), format!("row {k}").as_bytes()).unwrap();
        }
        assert_eq!(p.get(Table::Pdu, "$e4").unwrap().unwrap(), b"row 4");
        assert_eq!(p.get(Table::Pdu, "$e10").unwrap(), None);
        p.delete(Table::Pdu, "$e8").unwrap();
        assert_eq!(p.get(Table::Pdu, "$e8").unwrap(), None);
        p.put(Table::Pdu, "$e9", b"row nine").unwrap();
        assert_eq!(p.get(Table::Pdu, "$e9").unwrap().unwrap(), b"row nine");
        assert_eq!(p.file_bytes(), 10 * 5 + 8);
        drop(p);
        std::fs::remove_dir(&dir).unwrap();
    }
}
