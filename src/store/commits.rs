//! A sign that the database committed something, read without running a statement.
//!
//! On SQLite in WAL mode every connection of every process finds the WAL's index in shared
//! memory, the `<database>-shm` file, whose header (documented in "WAL-mode File Format",
//! <https://www.sqlite.org/walformat.html>, §2.1) changes with each transaction committed:
//! its `iChange` counter, the last valid frame `mxFrame`, the frame checksums, and the
//! salts when the WAL restarts. Reading those bytes is a `pread` of a file the page cache
//! holds; a statement on SQLite is a round trip to the connection's worker thread.
//! [`Database::commit_stamp`](super::Database::commit_stamp) reads it, so a caller that
//! read something at stamp `S` knows, while the stamp is still `S`, that nothing was
//! committed since, by this process or any other.
//!
//! SQLite writes the header twice (second copy first) and its readers take it only when
//! both copies agree; so does [`WalIndex::stamp`], and a header not initialised yet
//! (`isInit` zero: the file was just created) is no stamp either. The file is kept open
//! (opening it on every read cost ~8 % of `serve`'s CPU under ListHolders); when the last
//! connection to a database closes, SQLite deletes the file and a later connection creates
//! a new one, so after each read the kept file's link count is checked, and a deleted file
//! is reopened and read again.

use std::path::PathBuf;
use std::sync::Mutex;

/// Bytes of one copy of the wal-index header (`WalIndexHdr`).
const HEADER: usize = 48;
/// Offset of `isInit` in the header.
const IS_INIT: usize = 12;

/// The wal-index header as it was read: two equal stamps mean that no transaction
/// committed to the database in between.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CommitStamp([u8; HEADER]);

impl std::fmt::Debug for CommitStamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitStamp(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// The shared-memory index of one SQLite database, `<database>-shm`.
#[derive(Debug)]
pub(crate) struct WalIndex {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl WalIndex {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: Mutex::new(None),
        }
    }

    /// The stamp now, or `None` when there is none to trust (no such file, a header being
    /// rewritten or not initialised).
    pub(crate) fn stamp(&self) -> Option<CommitStamp> {
        let mut kept = self.file.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..2 {
            let file = match kept.as_ref() {
                Some(file) => file,
                None => kept.insert(std::fs::File::open(&self.path).ok()?),
            };
            let read = read_header(file);
            if still_linked(file) {
                return stamp_of(&read?);
            }
            // Deleted (every connection closed); the next one made a new file, if any.
            *kept = None;
        }
        None
    }
}

#[cfg(unix)]
fn read_header(file: &std::fs::File) -> Option<[u8; 2 * HEADER]> {
    use std::os::unix::fs::FileExt;
    let mut bytes = [0u8; 2 * HEADER];
    file.read_exact_at(&mut bytes, 0).ok()?;
    Some(bytes)
}

#[cfg(unix)]
fn still_linked(file: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    file.metadata().is_ok_and(|m| m.nlink() > 0)
}

/// Elsewhere there is no stamp (a kept file's deletion cannot be told): callers ask the
/// database.
#[cfg(not(unix))]
fn read_header(_kept: &std::fs::File) -> Option<[u8; 2 * HEADER]> {
    None
}

#[cfg(not(unix))]
fn still_linked(_file: &std::fs::File) -> bool {
    true
}

fn stamp_of(bytes: &[u8; 2 * HEADER]) -> Option<CommitStamp> {
    let (first, second) = bytes.split_at(HEADER);
    if first != second || first[IS_INIT] == 0 {
        return None;
    }
    Some(CommitStamp(first.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The stamp in the file at `shm`, opened for this read.
    fn read_stamp(shm: &Path) -> Option<CommitStamp> {
        WalIndex::new(shm.to_path_buf()).stamp()
    }

    #[test]
    fn a_header_counts_only_when_both_copies_agree_and_it_is_initialised() {
        let mut bytes = [0u8; 2 * HEADER];
        assert_eq!(stamp_of(&bytes), None, "not initialised");
        bytes[IS_INIT] = 1;
        bytes[HEADER + IS_INIT] = 1;
        bytes[8] = 7;
        bytes[HEADER + 8] = 7;
        let stamp = stamp_of(&bytes).expect("a valid header");
        bytes[HEADER + 8] = 8;
        assert_eq!(stamp_of(&bytes), None, "copies differ: being rewritten");
        bytes[8] = 8;
        assert_ne!(stamp_of(&bytes), Some(stamp), "a commit changed it");
        assert_eq!(read_stamp(Path::new("/nonexistent/renmian.db-shm")), None);
    }

    /// A kept file that was deleted and made anew (the last connection closed, a new one
    /// opened) is noticed: the stamp is read from the new file.
    #[cfg(unix)]
    #[test]
    fn a_deleted_file_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db-shm");
        let header = |change: u8| {
            let mut bytes = [0u8; 2 * HEADER];
            for copy in [0, HEADER] {
                bytes[copy + IS_INIT] = 1;
                bytes[copy + 8] = change;
            }
            bytes
        };
        std::fs::write(&path, header(1)).unwrap();
        let index = WalIndex::new(path.clone());
        let first = index.stamp().expect("a stamp");
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, header(2)).unwrap();
        let second = index.stamp().expect("a stamp from the new file");
        assert_ne!(first, second);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(index.stamp(), None, "no file, no stamp");
    }
}
