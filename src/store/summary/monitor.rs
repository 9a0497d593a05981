//! The read summary's file-system monitor (opt-in with `git config chg.fsmonitor true`;
//! Linux, through inotify), as git's `core.fsmonitor` is for `git status`.
//!
//! Without it every warm query `lstat`s every change file (at 100,000 files most of a
//! `chg list`). With it, one long-lived process per store watches `changes/` and answers
//! "which paths may have changed since token T": only those are looked at; every other
//! row keeps the stat it was verified with.
//!
//! What makes it safe to believe:
//! - A token is an instance (random per process) and the count of events that process had
//!   read. Another instance, a queue overflow, too many paths or anything unexpected
//!   answers "all": the caller looks at every file, as without a monitor.
//! - Before answering, the monitor creates a cookie file in a folder it also watches and
//!   reads events until the cookie's own: every edit made before the question is then
//!   counted (inotify keeps one ordered queue per instance). The caller takes the token
//!   before it looks at any file, so an edit made while it looks is in the next answer.
//! - It talks over a Unix socket inside `.git/chg/summary/<store>/` (so only those who can
//!   write the repository can answer), and it is a cache: a monitor that is gone,
//!   slow (3 s) or of another chg version is not believed, and the summary still checks
//!   every blob id it is told to look at.
//!
//! It exits when idle for an hour, when `changes/` goes, or when asked by a newer chg.

use std::fs::{self, File};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) const SOCKET: &str = "monitor.sock";
/// Held by the running monitor; holds its process id.
pub(crate) const LOCK: &str = "monitor.lock";
const COOKIES: &str = "cookies";
/// Past this many changed paths the monitor answers "all" (and forgets them).
const MAX_PATHS: usize = 100_000;
/// The longest socket path a Unix socket address holds (108 bytes on Linux, with its NUL).
const MAX_SOCKET_PATH: usize = 100;

/// Where a monitor had got to when it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Token {
    pub(crate) instance: String,
    pub(crate) seq: u64,
}

/// A monitor's answer.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Every file may have changed since the token asked about.
    All(Token),
    /// Only these store paths (files or folders, under `changes/`) may have.
    Paths(Token, Vec<String>),
    /// The monitor is of another chg and is quitting: start this chg's.
    Quit,
}

/// The socket of the monitor whose summary folder is `dir`, if its path fits a socket
/// address (a deep temporary folder may not: then there is no monitor).
pub(crate) fn socket(dir: &Path) -> Option<std::path::PathBuf> {
    let s = dir.join(SOCKET);
    (s.as_os_str().len() < MAX_SOCKET_PATH).then_some(s)
}

/// Asks the monitor of `dir` what may have changed since `since`; `None` when none
/// answers as expected.
#[cfg(unix)]
pub(crate) fn ask(dir: &Path, since: Option<&Token>) -> Option<Answer> {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::UnixStream;
    let mut s = UnixStream::connect(socket(dir)?).ok()?;
    let limit = Some(Duration::from_secs(3));
    s.set_read_timeout(limit).ok()?;
    s.set_write_timeout(limit).ok()?;
    let (instance, seq) = since.map_or(("-", 0), |t| (t.instance.as_str(), t.seq));
    writeln!(s, "since {} {instance} {seq}", env!("CARGO_PKG_VERSION")).ok()?;
    let mut r = BufReader::new(s.take(64 << 20));
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let words: Vec<&str> = line.trim_end_matches('\n').split(' ').collect();
    let token = |i: &str, s: &str| {
        Some(Token {
            instance: i.to_owned(),
            seq: s.parse().ok()?,
        })
    };
    match words[..] {
        ["quit"] => Some(Answer::Quit),
        ["all", i, s] => Some(Answer::All(token(i, s)?)),
        ["paths", i, s, n] => {
            let n: usize = n.parse().ok()?;
            let mut paths = Vec::with_capacity(n.min(MAX_PATHS));
            for _ in 0..n {
                let mut p = String::new();
                r.read_line(&mut p).ok()?;
                paths.push(p.strip_suffix('\n')?.to_owned());
            }
            Some(Answer::Paths(token(i, s)?, paths))
        }
        _ => None,
    }
}

/// Asks the monitor (see the Unix version): elsewhere there is none.
#[cfg(not(unix))]
pub(crate) fn ask(_dir: &Path, _since: Option<&Token>) -> Option<Answer> {
    None
}

/// Whether a monitor holds the lock of `dir` (a starting one may not answer yet).
pub(crate) fn running(dir: &Path) -> bool {
    let Ok(f) = File::options().write(true).open(dir.join(LOCK)) else {
        return false;
    };
    matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock))
}

/// Runs the monitor of the store at `root` whose summary folder is `dir`, until idle for
/// `idle`, `changes/` goes, or a newer chg asks it to quit. Returns at once when another
/// monitor holds `dir`.
#[cfg(target_os = "linux")]
pub fn serve(root: &Path, dir: &Path, idle: Duration) -> std::io::Result<()> {
    linux::serve(root, dir, idle)
}

/// Runs the monitor (see the Linux version): elsewhere there is none, and every query
/// looks at every file.
#[cfg(not(target_os = "linux"))]
pub fn serve(_root: &Path, _dir: &Path, _idle: Duration) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "the file-system monitor needs Linux (inotify)",
    ))
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::{HashMap, HashSet};
    use std::fs::{self, File};
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

    use super::{COOKIES, LOCK, MAX_PATHS, SOCKET};

    /// What the watched folders have seen.
    struct Watcher {
        ino: Inotify,
        root: PathBuf,
        /// Watch → its folder, relative to the store (`changes/2025/03`).
        dirs: HashMap<i32, (WatchDescriptor, String)>,
        cookies: i32,
        /// Events read; `reset`: the first count from which `changed` is complete.
        seq: u64,
        reset: u64,
        changed: HashMap<String, u64>,
        cookies_seen: HashSet<String>,
        /// `changes/` itself went (deleted, moved, unmounted).
        gone: bool,
    }

    fn mask() -> WatchMask {
        WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MODIFY
            | WatchMask::ATTRIB
            | WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR
            | WatchMask::DONT_FOLLOW
            | WatchMask::EXCL_UNLINK
    }

    impl Watcher {
        /// Watches `rel` and every folder under it (not those whose name starts with a dot,
        /// which listing skips too).
        fn add_tree(&mut self, rel: &str) -> std::io::Result<()> {
            let mut todo = vec![rel.to_owned()];
            while let Some(rel) = todo.pop() {
                let abs = self.root.join(&rel);
                let wd = match self.ino.watches().add(&abs, mask()) {
                    Ok(wd) => wd,
                    // Gone or not a folder by now: its parent's events said so.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                self.dirs
                    .insert(wd.get_watch_descriptor_id(), (wd, rel.clone()));
                let Ok(entries) = fs::read_dir(&abs) else {
                    continue;
                };
                for e in entries.flatten() {
                    let name = e.file_name();
                    let Some(name) = name.to_str() else { continue };
                    if !name.starts_with('.') && e.file_type().is_ok_and(|t| t.is_dir()) {
                        todo.push(format!("{rel}/{name}"));
                    }
                }
            }
            Ok(())
        }

        /// Stops watching `rel` and the folders under it (moved or deleted).
        fn unwatch_under(&mut self, rel: &str) {
            let under = format!("{rel}/");
            let gone: Vec<i32> = self
                .dirs
                .iter()
                .filter(|(_, (_, p))| p == rel || p.starts_with(&under))
                .map(|(id, _)| *id)
                .collect();
            for id in gone {
                if let Some((wd, _)) = self.dirs.remove(&id) {
                    let _ = self.ino.watches().remove(wd);
                }
            }
        }

        fn forget(&mut self) {
            self.reset = self.seq;
            self.changed.clear();
        }

        /// Reads every queued event.
        fn drain(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
            loop {
                let events: Vec<(i32, EventMask, Option<String>, bool)> =
                    match self.ino.read_events(buf) {
                        Ok(events) => events
                            .map(|e| {
                                let name = e.name.map(|n| n.to_str().map(str::to_owned));
                                let odd = matches!(name, Some(None));
                                (e.wd.get_watch_descriptor_id(), e.mask, name.flatten(), odd)
                            })
                            .collect(),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) => return Err(e),
                    };
                if events.is_empty() {
                    return Ok(());
                }
                for (wd, mask, name, odd) in events {
                    self.event(wd, mask, name, odd)?;
                }
            }
        }

        fn event(
            &mut self,
            wd: i32,
            mask: EventMask,
            name: Option<String>,
            odd: bool,
        ) -> std::io::Result<()> {
            self.seq += 1;
            if mask.contains(EventMask::Q_OVERFLOW) {
                self.forget();
                return Ok(());
            }
            if wd == self.cookies {
                if mask.contains(EventMask::IGNORED) {
                    self.gone = true;
                } else if let Some(n) = name
                    && mask.contains(EventMask::CREATE)
                {
                    self.cookies_seen.insert(n);
                }
                return Ok(());
            }
            let Some((_, rel)) = self.dirs.get(&wd) else {
                return Ok(());
            };
            let rel = rel.clone();
            if mask.intersects(EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF) {
                if mask.contains(EventMask::IGNORED) {
                    self.dirs.remove(&wd);
                }
                // A sub-folder's own move or deletion is its parent's event too.
                if rel == "changes" {
                    self.gone = true;
                }
                return Ok(());
            }
            if odd {
                // A name that is not UTF-8: listing skips it, but its folder may hold files.
                self.forget();
                return Ok(());
            }
            let Some(name) = name else { return Ok(()) };
            if name.contains('\n') {
                self.forget();
                return Ok(());
            }
            let path = format!("{rel}/{name}");
            if mask.contains(EventMask::ISDIR) {
                if mask.intersects(EventMask::MOVED_FROM | EventMask::DELETE) {
                    self.unwatch_under(&path);
                }
                if mask.intersects(EventMask::MOVED_TO | EventMask::CREATE)
                    && !name.starts_with('.')
                {
                    self.add_tree(&path)?;
                }
            }
            self.changed.insert(path, self.seq);
            if self.changed.len() > MAX_PATHS {
                self.forget();
            }
            Ok(())
        }
    }

    /// Waits until `fds` can be read or `timeout` passes; which of them can.
    fn poll(fds: &[i32], timeout: Duration) -> std::io::Result<Vec<bool>> {
        let mut p: Vec<libc::pollfd> = fds
            .iter()
            .map(|fd| libc::pollfd {
                fd: *fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `p` is a live, correctly sized array of pollfd for the whole call.
        let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(vec![false; fds.len()]);
            }
            return Err(e);
        }
        Ok(p.iter().map(|p| p.revents != 0).collect())
    }

    enum Next {
        Go,
        Stop,
    }

    pub(super) fn serve(root: &Path, dir: &Path, idle: Duration) -> std::io::Result<()> {
        let mut lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(()),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        lock.set_len(0)?;
        writeln!(lock, "{}", std::process::id())?;

        let ino = Inotify::init()?;
        let cookies = dir.join(COOKIES);
        let _ = fs::remove_dir_all(&cookies);
        fs::create_dir_all(&cookies)?;
        let cookie_wd = ino
            .watches()
            .add(&cookies, WatchMask::CREATE | WatchMask::DELETE_SELF)?;
        let mut w = Watcher {
            ino,
            root: root.to_path_buf(),
            dirs: HashMap::new(),
            cookies: cookie_wd.get_watch_descriptor_id(),
            seq: 0,
            reset: 0,
            changed: HashMap::new(),
            cookies_seen: HashSet::new(),
            gone: false,
        };
        if !root.join("changes").is_dir() {
            return Ok(());
        }
        w.add_tree("changes")?;

        let sock = dir.join(SOCKET);
        let _ = fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock)?;
        listener.set_nonblocking(true)?;
        let instance = format!(
            "{:016x}",
            std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0)
        );
        let mut buf = vec![0u8; 64 << 10];
        let mut asked = 0u64;
        let fds = [w.ino.as_raw_fd(), listener.as_raw_fd()];
        let stop = loop {
            let ready = poll(&fds, idle)?;
            if !ready.iter().any(|r| *r) {
                break Ok(());
            }
            w.drain(&mut buf)?;
            if w.gone {
                break Ok(());
            }
            if ready[1] {
                match listener.accept() {
                    Ok((s, _)) => {
                        asked += 1;
                        match answer(&mut w, &mut buf, s, &cookies, &instance, asked) {
                            Ok(Next::Go) | Err(_) => {}
                            Ok(Next::Stop) => break Ok(()),
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => break Err(e),
                }
            }
            if w.gone {
                break Ok(());
            }
        };
        let _ = fs::remove_file(&sock);
        let _ = fs::remove_dir_all(&cookies);
        stop
    }

    /// Answers one question (see the module's text for the protocol).
    fn answer(
        w: &mut Watcher,
        buf: &mut [u8],
        s: UnixStream,
        cookies: &Path,
        instance: &str,
        n: u64,
    ) -> std::io::Result<Next> {
        s.set_nonblocking(false)?;
        let limit = Some(Duration::from_secs(2));
        s.set_read_timeout(limit)?;
        s.set_write_timeout(limit)?;
        let mut line = String::new();
        BufReader::new((&s).take(4096)).read_line(&mut line)?;
        let words: Vec<&str> = line.trim_end_matches('\n').split(' ').collect();
        let ["since", version, since, seq] = words[..] else {
            return Ok(Next::Go);
        };
        let mut out = std::io::BufWriter::new(&s);
        if version != env!("CARGO_PKG_VERSION") {
            writeln!(out, "quit")?;
            return Ok(Next::Stop);
        }
        let seq: u64 = seq.parse().unwrap_or(0);

        // Every event queued before the question is read before the cookie's.
        let cookie = format!("{}-{n}", std::process::id());
        File::create(cookies.join(&cookie))?;
        let deadline = Instant::now() + Duration::from_secs(1);
        while !w.cookies_seen.remove(&cookie) {
            if Instant::now() > deadline || w.gone {
                let _ = fs::remove_file(cookies.join(&cookie));
                return Ok(Next::Go);
            }
            poll(&[w.ino.as_raw_fd()], Duration::from_millis(50))?;
            w.drain(buf)?;
        }
        let _ = fs::remove_file(cookies.join(&cookie));

        if since != instance || seq < w.reset || w.gone {
            writeln!(out, "all {instance} {}", w.seq)?;
        } else {
            let mut paths: Vec<&String> = w
                .changed
                .iter()
                .filter(|(_, at)| **at > seq)
                .map(|(p, _)| p)
                .collect();
            paths.sort();
            writeln!(out, "paths {instance} {} {}", w.seq, paths.len())?;
            for p in paths {
                writeln!(out, "{p}")?;
            }
        }
        out.flush()?;
        Ok(Next::Go)
    }
}
