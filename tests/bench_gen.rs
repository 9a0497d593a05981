//! The benchmark store generator (feature `bench-tools`): it writes its git pack itself, so
//! git must accept every object, and chg must find the history it would have made.

use std::path::Path;
use std::process::Command;

fn run(program: &str, dir: &Path, home: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("CHG_NOW", "2026-01-15T12:00:00Z")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn generate(home: &Path, out: &Path, changes: &str, seed: &str) -> String {
    let (code, _, err) = run(
        env!("CARGO_BIN_EXE_chg-bench-gen"),
        home,
        home,
        &[
            "--changes",
            changes,
            "--seed",
            seed,
            "--history",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    err
}

fn git(dir: &Path, home: &Path, args: &[&str]) -> String {
    let (code, out, err) = run("git", dir, home, args);
    assert_eq!(code, 0, "git {args:?}: {err}");
    out
}

#[test]
fn the_generated_history_is_sound_git_and_audits_clean() {
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    let said = generate(home.path(), &store, "400", "7");

    // Every object well-formed and reachable, every delta resolving (chains past git's
    // depth of 50 in the top trees, which change on every commit).
    let (code, out, err) = run(
        "git",
        &store,
        home.path(),
        &["fsck", "--strict", "--full", "--no-dangling"],
    );
    let first: String = err.lines().take(5).collect::<Vec<_>>().join("\n");
    assert!(
        code == 0 && out.is_empty() && err.is_empty(),
        "{code}: {out}{first}"
    );
    assert!(git(&store, home.path(), &["status", "--porcelain"]).is_empty());
    let commits = git(&store, home.path(), &["rev-list", "--count", "HEAD"]);
    assert!(
        said.contains(&format!("wrote {} commits", commits.trim())),
        "{said}"
    );
    assert!(commits.trim().parse::<u32>().unwrap() > 1200);
    let files = git(&store, home.path(), &["ls-files", "changes"]);
    assert_eq!(files.lines().filter(|f| f.ends_with(".yaml")).count(), 400);

    let chg = env!("CARGO_BIN_EXE_chg");
    let (code, out, err) = run(chg, &store, home.path(), &["validate"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(chg, &store, home.path(), &["audit"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("0 exception(s)") || out.contains("0 exception(s)"),
        "{out}{err}"
    );
    // The history of one change is the transitions chg would have committed.
    let id = files
        .lines()
        .find(|f| f.ends_with(".yaml"))
        .and_then(|f| f.rsplit('/').next())
        .unwrap()
        .trim_end_matches(".yaml")
        .to_owned();
    let (code, out, err) = run(chg, &store, home.path(), &["log", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("new"), "{out}");
}

#[test]
fn the_generator_is_deterministic_from_its_seed() {
    let home = tempfile::tempdir().unwrap();
    let head = |name: &str, seed: &str| {
        let store = home.path().join(name);
        generate(home.path(), &store, "60", seed);
        git(&store, home.path(), &["rev-parse", "HEAD"])
    };
    let (a, b, c) = (head("a", "3"), head("b", "3"), head("c", "4"));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn the_generator_refuses_a_directory_that_holds_anything() {
    let home = tempfile::tempdir().unwrap();
    let mine = home.path().join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "keep me").unwrap();
    let (code, _, err) = run(
        env!("CARGO_BIN_EXE_chg-bench-gen"),
        home.path(),
        home.path(),
        &[
            "--changes",
            "3",
            "--history",
            "--out",
            mine.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not empty"), "{err}");
    assert!(!mine.join(".git").exists());
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "keep me"
    );
}

/// The hand-written style (issue 26: chg's fast reader must not be the only one measured)
/// has the same values as chg's own: it validates and audits clean.
#[test]
fn the_hand_style_store_is_hand_written_yaml_that_audits_clean() {
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    let (code, _, err) = run(
        env!("CARGO_BIN_EXE_chg-bench-gen"),
        home.path(),
        home.path(),
        &[
            "--changes",
            "150",
            "--history",
            "--style",
            "hand",
            "--out",
            store.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let files = git(&store, home.path(), &["ls-files", "changes"]);
    let first = files.lines().find(|f| f.ends_with(".yaml")).unwrap();
    let text = std::fs::read_to_string(store.join(first)).unwrap();
    assert!(text.starts_with("# Filed by hand"), "{text}");
    assert!(text.contains("affected_systems: ["), "{text}");
    assert!(text.contains("rollback_plan: |-\n"), "{text}");
    assert!(text.contains("title: \""), "{text}");
    let chg = env!("CARGO_BIN_EXE_chg");
    let (code, out, err) = run(chg, &store, home.path(), &["validate"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(chg, &store, home.path(), &["audit"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("0 exception(s)") || out.contains("0 exception(s)"),
        "{out}{err}"
    );
}
