//! The read summary in `.git/chg/summary` (issue 26, point 3): never trusted over the
//! files, rebuilt with a note when damaged or written by another chg.

use std::path::PathBuf;

use super::Store;

/// A store, whose queries ask a file-system monitor what changed when `monitor` is set
/// (`chg.fsmonitor`; Linux only, elsewhere it is not used).
fn store(monitor: bool) -> Store {
    let s = Store::new();
    if monitor {
        s.git(&["config", "chg.fsmonitor", "true"]);
    }
    s
}

/// `chg list` as CSV (no terminal defaults): every column the summary answers.
fn list(s: &Store) -> super::Run {
    s.chg("bob@example.com", &["list", "--format", "csv"]).ok()
}

/// The store's summary folder.
fn folder(s: &Store) -> PathBuf {
    let root = s.root().join(".git/chg/summary");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

/// What `chg list` shows with no summary at all: every file read.
fn from_files(s: &Store) -> String {
    std::fs::remove_dir_all(s.root().join(".git/chg/summary")).unwrap();
    list(s).stdout
}

#[test]
fn an_uncommitted_edit_is_listed_at_once_never_the_stale_summary() {
    an_uncommitted_edit_is_listed_at_once_never_the_stale_summary_with(false);
}

#[test]
fn an_uncommitted_edit_is_listed_at_once_never_the_stale_summary_with_the_monitor() {
    an_uncommitted_edit_is_listed_at_once_never_the_stale_summary_with(true);
}

fn an_uncommitted_edit_is_listed_at_once_never_the_stale_summary_with(monitor: bool) {
    let s = store(monitor);
    let id = s.new_change(&["--title", "Rotate the keys"]);
    assert!(list(&s).stdout.contains("Rotate the keys"));
    // The same size, in the same second as the summary was written: only the bytes say.
    s.rewrite(&id, |t| t.replace("Rotate the keys", "Rotate the logs"));
    let out = list(&s).stdout;
    assert!(out.contains("Rotate the logs"), "{out}");
    assert!(!out.contains("Rotate the keys"), "{out}");
    // A status changed by hand (uncommitted) is filtered by what the file says.
    s.rewrite(&id, |t| {
        t.replace("status: pending_approval", "status: draft")
    });
    let drafts = s
        .chg(
            "bob@example.com",
            &["list", "--status", "draft", "--format", "csv"],
        )
        .ok()
        .stdout;
    assert!(drafts.contains(&id), "{drafts}");
    // A file made unreadable: as reading every file says it.
    s.rewrite(&id, |_| "status: [unclosed\n\t- ]: {\n".into());
    let r = list(&s);
    assert!(!r.stdout.contains(&id), "{}", r.stdout);
    std::fs::remove_dir_all(s.root().join(".git/chg/summary")).unwrap();
    let files = list(&s);
    assert_eq!((r.stdout, r.stderr), (files.stdout, files.stderr));
}

#[test]
fn changes_added_removed_renamed_or_committed_between_runs_are_seen() {
    changes_added_removed_renamed_or_committed_between_runs_are_seen_with(false);
}

#[test]
fn changes_added_removed_renamed_or_committed_between_runs_are_seen_with_the_monitor() {
    changes_added_removed_renamed_or_committed_between_runs_are_seen_with(true);
}

fn changes_added_removed_renamed_or_committed_between_runs_are_seen_with(monitor: bool) {
    let s = store(monitor);
    let a = s.new_change(&["--title", "First"]);
    let b = s.new_change(&["--title", "Second"]);
    let before = list(&s).stdout;
    assert!(before.contains(&a) && before.contains(&b), "{before}");
    // Added by chg (a commit: HEAD moved), and approved (HEAD moved again).
    let c = s.new_change(&["--title", "Third"]);
    s.chg("em@example.com", &["approve", &c]).ok();
    let out = list(&s).stdout;
    assert!(out.contains("Third"), "{out}");
    // Removed by hand, not committed: no longer listed.
    std::fs::remove_file(s.file(&a)).unwrap();
    assert!(!list(&s).stdout.contains(&a));
    // Moved by hand to another month: listed from its new place.
    let old = s.file(&b);
    let moved = old.parent().unwrap().parent().unwrap().join("07");
    std::fs::create_dir_all(&moved).unwrap();
    std::fs::rename(&old, moved.join(old.file_name().unwrap())).unwrap();
    let json = s.chg("bob@example.com", &["list", "--json"]).ok().stdout;
    assert!(json.contains(&format!("/07/{b}.yaml")), "{json}");
    // Moved back by git (HEAD untouched, the work tree restored).
    s.git(&["checkout", "--", "."]);
    let out = list(&s).stdout;
    assert!(out.contains(&a) && out.contains(&b), "{out}");
    // Whatever happened, the summary lists what reading every file lists.
    let kept = list(&s).stdout;
    assert_eq!(kept, from_files(&s));
}

/// One way of damaging the summary.
type Damage<'a> = Box<dyn Fn() + 'a>;

#[test]
fn a_damaged_or_foreign_summary_is_rebuilt_with_a_note() {
    a_damaged_or_foreign_summary_is_rebuilt_with_a_note_with(false);
}

#[test]
fn a_damaged_or_foreign_summary_is_rebuilt_with_a_note_with_the_monitor() {
    a_damaged_or_foreign_summary_is_rebuilt_with_a_note_with(true);
}

fn a_damaged_or_foreign_summary_is_rebuilt_with_a_note_with(monitor: bool) {
    let s = store(monitor);
    s.new_change(&["--title", "First"]);
    s.new_change(&["--title", "Second"]);
    let want = list(&s).stdout;
    let dir = folder(&s);
    let rows = dir.join("rows.bin");
    let damages: [(&str, Damage); 4] = [
        (
            "truncated",
            Box::new(|| {
                let b = std::fs::read(&rows).unwrap();
                std::fs::write(&rows, &b[..b.len() / 2]).unwrap();
            }),
        ),
        (
            "garbled",
            Box::new(|| {
                let mut b = std::fs::read(&rows).unwrap();
                let i = b.len() / 3;
                b[i] ^= 0x20;
                std::fs::write(&rows, b).unwrap();
            }),
        ),
        (
            "emptied meta",
            Box::new(|| std::fs::write(dir.join("meta.json"), "").unwrap()),
        ),
        (
            "another version",
            Box::new(|| {
                // A well-formed meta file of another format: its own checksum holds.
                let text = std::fs::read_to_string(dir.join("meta.json")).unwrap();
                let json = text.lines().next().unwrap();
                let at = json.find("\"format\":").unwrap() + "\"format\":".len();
                let end = at + json[at..].find(',').unwrap();
                let json = format!("{}99{}", &json[..at], &json[end..]);
                let sum = chg::text::sha256_hex(json.as_bytes());
                std::fs::write(dir.join("meta.json"), format!("{json}\n{sum}\n")).unwrap();
            }),
        ),
    ];
    for (what, damage) in damages {
        damage();
        let r = list(&s);
        assert_eq!(r.stdout, want, "{what}");
        let note = if what == "another version" {
            "was written by chg"
        } else {
            "did not verify"
        };
        assert!(
            r.stderr.contains("read summary") && r.stderr.contains(note),
            "{what}: {}",
            r.stderr
        );
        // Rebuilt: the next run says nothing.
        let again = list(&s);
        assert_eq!(again.stdout, want, "{what}");
        assert_eq!(again.stderr, "", "{what}");
    }
}

#[test]
fn cab_and_report_read_the_summary_as_they_read_the_files() {
    cab_and_report_read_the_summary_as_they_read_the_files_with(false);
}

#[test]
fn cab_and_report_read_the_summary_as_they_read_the_files_with_the_monitor() {
    cab_and_report_read_the_summary_as_they_read_the_files_with(true);
}

fn cab_and_report_read_the_summary_as_they_read_the_files_with(monitor: bool) {
    let s = store(monitor);
    let a = s.new_change(&["--title", "First"]);
    s.schedule(&a, "2025-03-20T10:00:00Z", "2025-03-20T11:00:00Z")
        .ok();
    s.new_change(&["--title", "Second"]);
    let run = |args: &[&str]| s.chg("bob@example.com", args).ok().stdout;
    let cab = run(&["cab", "--format", "json"]);
    let report = run(&["report", "--format", "json"]);
    // Warm: the same.
    assert_eq!(run(&["cab", "--format", "json"]), cab);
    assert_eq!(run(&["report", "--format", "json"]), report);
    std::fs::remove_dir_all(s.root().join(".git/chg/summary")).unwrap();
    assert_eq!(run(&["cab", "--format", "json"]), cab);
    assert_eq!(run(&["report", "--format", "json"]), report);
}

/// The running monitor's process id, once it holds its lock.
#[cfg(target_os = "linux")]
fn monitor_pid(s: &Store) -> i32 {
    let lock = folder(s).join("monitor.lock");
    for _ in 0..100 {
        if let Some(pid) = std::fs::read_to_string(&lock)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("no monitor started");
}

/// The monitor's token kept beside the rows (`"monitor":{"instance":…,"seq":…}`).
#[cfg(target_os = "linux")]
fn kept_token(s: &Store) -> String {
    let meta = std::fs::read_to_string(folder(s).join("meta.json")).unwrap();
    let at = meta.find("\"monitor\":").expect(&meta);
    meta[at..].split('}').next().unwrap().to_owned()
}

#[cfg(target_os = "linux")]
#[test]
fn the_monitor_is_asked_believed_only_for_its_own_token_and_replaced_when_gone() {
    let s = store(true);
    let a = s.new_change(&["--title", "First"]);
    let b = s.new_change(&["--title", "Second"]);
    assert!(list(&s).stdout.contains("First"));
    let pid = monitor_pid(&s);
    // Warm, and asked: its token is kept with the rows, and moves with each answer.
    let out = list(&s).stdout;
    assert!(out.contains("First") && out.contains("Second"), "{out}");
    let token = kept_token(&s);
    assert!(token.contains("instance"), "{token}");

    // Edited in place, moved by hand into a new folder, removed: each seen at once.
    s.rewrite(&a, |t| t.replace("First", "Fifth"));
    let out = list(&s).stdout;
    assert!(out.contains("Fifth") && !out.contains("First"), "{out}");
    assert_ne!(kept_token(&s), token);
    let old = s.file(&b);
    let far = s.root().join("changes/2031/01");
    std::fs::create_dir_all(&far).unwrap();
    std::fs::rename(&old, far.join(old.file_name().unwrap())).unwrap();
    let json = s.chg("bob@example.com", &["list", "--json"]).ok().stdout;
    assert!(json.contains(&format!("2031/01/{b}.yaml")), "{json}");
    std::fs::remove_file(far.join(old.file_name().unwrap())).unwrap();
    assert!(!list(&s).stdout.contains(&b));

    // Killed: its token is another instance's, so the next run looks at every file, and
    // starts another monitor.
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.contains(") Z ") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    s.rewrite(&a, |t| t.replace("Fifth", "Sixth"));
    let out = list(&s).stdout;
    assert!(out.contains("Sixth"), "{out}");
    assert_ne!(monitor_pid(&s), pid);
    s.rewrite(&a, |t| t.replace("Sixth", "Tenth"));
    assert!(list(&s).stdout.contains("Tenth"));
    let kept = list(&s).stdout;
    assert_eq!(kept, from_files(&s));
}

#[cfg(target_os = "linux")]
#[test]
fn a_monitor_of_another_chg_is_asked_to_quit_and_replaced() {
    use std::io::{BufRead, Write};
    let s = store(false);
    s.new_change(&["--title", "First"]);
    assert!(list(&s).stdout.contains("First"));
    // Listening where the monitor would: a monitor of another version answers "quit".
    let sock = std::os::unix::net::UnixListener::bind(folder(&s).join("monitor.sock")).unwrap();
    let old = std::thread::spawn(move || {
        let (mut c, _) = sock.accept().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(&c).read_line(&mut line).unwrap();
        c.write_all(b"quit\n").unwrap();
        line
    });
    s.git(&["config", "chg.fsmonitor", "true"]);
    let out = list(&s).stdout;
    assert!(out.contains("First"), "{out}");
    let asked = old.join().unwrap();
    assert!(
        asked.starts_with(&format!("since {} ", env!("CARGO_PKG_VERSION"))),
        "{asked}"
    );
    // This chg's own took its place, and answers.
    monitor_pid(&s);
    list(&s);
    assert!(kept_token(&s).contains("instance"));
}
