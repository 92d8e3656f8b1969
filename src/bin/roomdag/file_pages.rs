//! A [`PageStore`] in a file: the native CLI's `--cache-mib`.
//!
//! Rows are appended to one file; an index in memory (12 bytes a row) says
//! where each is. A truncated row's space is reused by the next write. The
//! file is a scratch file: it is removed when the store is dropped (the CLI
//! replays a fixture; nothing outlives the process).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use roomdag::pages::{PageError, PageStore, Table};

/// Rows of one table in a scratch file.
pub struct FilePages {
    file: File,
    path: PathBuf,
    /// Per key: (offset, length + 1); length 0 = absent.
    index: Vec<(u64, u32)>,
    end: u64,
}

impl FilePages {
    /// A new scratch file in `dir`.
    pub fn create_in(dir: &std::path::Path) -> std::io::Result<Self> {
        let path = dir.join(format!("roomdag-pages-{}-{}.bin", std::process::id(), nanos()));
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        Ok(Self { file, path, index: Vec::new(), end: 0 })
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

impl Drop for FilePages {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl PageStore for FilePages {
    fn get(&self, table: Table, key: u32) -> Result<Option<Vec<u8>>, PageError> {
        let Table::Pdu = table;
        let Some(&(offset, len_plus_one)) = self.index.get(key as usize) else { return Ok(None) };
        if len_plus_one == 0 {
            return Ok(None);
        }
        let mut buf = vec![0; len_plus_one as usize - 1];
        self.file.read_exact_at(&mut buf, offset).map_err(io)?;
        Ok(Some(buf))
    }

    fn put(&mut self, table: Table, key: u32, value: &[u8]) -> Result<(), PageError> {
        let Table::Pdu = table;
        let len = u32::try_from(value.len()).map_err(|_| PageError::Backend("a row over 4 GiB".into()))?;
        self.file.write_all_at(value, self.end).map_err(io)?;
        let k = key as usize;
        if self.index.len() <= k {
            self.index.resize(k + 1, (0, 0));
        }
        self.index[k] = (self.end, len + 1);
        self.end += u64::from(len);
        Ok(())
    }

    fn truncate(&mut self, table: Table, from: u32) -> Result<(), PageError> {
        let Table::Pdu = table;
        let from = from as usize;
        if from < self.index.len() {
            // Rows are written in key order, so the first removed row starts
            // the space to reuse.
            if let Some(start) = self.index[from..].iter().filter(|r| r.1 != 0).map(|r| r.0).min() {
                self.end = self.end.min(start);
            }
            self.index.truncate(from);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_truncated_space_is_reused() {
        let mut p = FilePages::create_in(&std::env::temp_dir()).unwrap();
        let path = p.path.clone();
        for k in 0..10u32 {
            p.put(Table::Pdu, k, format!("row {k}").as_bytes()).unwrap();
        }
        assert_eq!(p.get(Table::Pdu, 4).unwrap().unwrap(), b"row 4");
        assert_eq!(p.get(Table::Pdu, 10).unwrap(), None);
        let end = p.file_bytes();
        p.truncate(Table::Pdu, 8).unwrap();
        assert_eq!(p.get(Table::Pdu, 8).unwrap(), None);
        p.put(Table::Pdu, 8, b"row 8").unwrap();
        p.put(Table::Pdu, 9, b"row 9").unwrap();
        assert_eq!(p.file_bytes(), end, "the truncated space was reused");
        assert_eq!(p.get(Table::Pdu, 9).unwrap().unwrap(), b"row 9");
        drop(p);
        assert!(!path.exists(), "the scratch file is removed");
    }
}
