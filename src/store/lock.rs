//! The store lock: parallel chg processes queue instead of interleaving.
//!
//! libgit2 fails at once on git's own ref and index locks, so chg serialises its own work
//! with an OS file lock (`flock`) in the git directory. The OS releases it when the process
//! dies, so a lock left by a killed process never blocks anyone (no stale-lock heuristics).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Held for as long as a state-changing command runs.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// Takes the lock at `path`, waiting up to `wait`.
pub fn acquire(path: &Path, wait: Duration) -> Result<StoreLock> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("cannot open the lock {}", path.display()), e))?;
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(StoreLock { _file: file }),
            Err(TryLockError::WouldBlock) => {
                if started.elapsed() >= wait {
                    return Err(Error::Locked(wait));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::io(format!("cannot lock {}", path.display()), e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_then_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chg").join("lock");
        let first = acquire(&path, Duration::from_secs(1)).unwrap();
        let err = acquire(&path, Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, Error::Locked(_)), "{err}");
        drop(first);
        assert!(acquire(&path, Duration::from_millis(50)).is_ok());
    }
}
