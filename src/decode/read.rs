//! Reading a file chg is given or finds as it must be read: a regular file, bounded in size.

use super::MAX_FILE_BYTES;

/// Reads a file chg is given or finds (a change file, the policy, `--file` input) as it
/// must be read: a regular file (a FIFO would block forever, a device never end) of at most
/// [`MAX_FILE_BYTES`]. Every such read goes through here.
pub fn read_bounded(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    read_limited(path, MAX_FILE_BYTES)
}

/// [`read_bounded`] with another limit (a deployments file from a CI/CD system holds a
/// year of rows).
pub fn read_limited(path: &std::path::Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let not_regular = || Error::new(ErrorKind::InvalidInput, "not a regular file");
    let mut open = std::fs::OpenOptions::new();
    open.read(true);
    // Opening a FIFO for reading waits for a writer; without blocking it returns at once,
    // and what was opened is judged below. A regular file ignores the flag.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut open, libc::O_NONBLOCK);
    #[cfg(not(unix))]
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let file = open.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    // Sized from the stat (one read for the whole file), still bounded if it grows.
    let mut bytes = Vec::with_capacity(meta.len().min(limit) as usize + 1);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("larger than chg's limit of {limit} bytes"),
        ));
    }
    Ok(bytes)
}
