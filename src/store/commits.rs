//! A sign that the database committed something, read without running a statement.
//!
//! On SQLite in WAL mode every connection of every process finds the WAL's index in shared
//! memory, the `<database>-shm` file, whose header (documented in "WAL-mode File Format",
//! <https://www.sqlite.org/walformat.html>, §2.1) changes with each transaction committed:
//! its `iChange` counter, the last valid frame `mxFrame`, the frame checksums, and the
//! salts when the WAL restarts. Reading those 48 bytes is an `open` and a `read` of a file
//! the page cache holds; a statement on SQLite is a round trip to the connection's worker
//! thread. [`Database::commit_stamp`](super::Database::commit_stamp) reads it, so a caller
//! that read something at stamp `S` knows, while the stamp is still `S`, that nothing was
//! committed since, by this process or any other.
//!
//! SQLite writes the header twice (second copy first) and its readers take it only when
//! both copies agree; so does [`read_stamp`], and a header not initialised yet (`isInit`
//! zero: the file was just created) is no stamp either. The file is opened afresh on every
//! read: when the last connection to a database closes, SQLite deletes the file, and a
//! descriptor kept open would go on reading the deleted one.

use std::io::Read;
use std::path::Path;

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

/// The stamp in `shm`, or `None` when there is none to trust (no such file, a header
/// being rewritten or not initialised).
pub(crate) fn read_stamp(shm: &Path) -> Option<CommitStamp> {
    let mut bytes = [0u8; 2 * HEADER];
    std::fs::File::open(shm).ok()?.read_exact(&mut bytes).ok()?;
    stamp_of(&bytes)
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
}
