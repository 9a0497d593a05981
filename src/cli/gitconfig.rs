//! Git configuration as git reads it for a command: the repository's (or the user's)
//! config files, overridden by what `git -c` and `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_<n>`/
//! `GIT_CONFIG_VALUE_<n>` give in the environment (libgit2 reads only the files).

use git2::Repository;

/// The configuration chg reads its git settings from.
pub struct GitConfig {
    files: Option<git2::Config>,
    /// (key, value) pairs from the environment, later ones winning.
    overrides: Vec<(String, String)>,
    /// `--signing-key` / `CHG_SIGNING_KEY`: `user.signingkey` for this run, above every config.
    signing_key: Option<String>,
}

impl GitConfig {
    /// `repo`'s configuration, or the user's outside a repository, with the signing key
    /// given for this run.
    pub fn of(repo: Option<&Repository>, signing_key: Option<String>) -> GitConfig {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let files = match (env("GIT_CONFIG_GLOBAL"), env("GIT_CONFIG_SYSTEM")) {
            (None, None) => match repo {
                Some(r) => r.config().and_then(|mut c| c.snapshot()).ok(),
                None => git2::Config::open_default()
                    .and_then(|mut c| c.snapshot())
                    .ok(),
            },
            (global, system) => {
                let nosystem = std::env::var("GIT_CONFIG_NOSYSTEM")
                    .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes" | "on"));
                files_named(
                    repo,
                    global.map(Into::into),
                    system.map(Into::into),
                    nosystem,
                )
            }
        };
        GitConfig {
            files,
            overrides: overrides_from(|k| std::env::var(k).ok()),
            signing_key,
        }
    }

    /// The value of `key` (`user.email`, `branch.main.remote`), as git would read it.
    pub fn string(&self, key: &str) -> Option<String> {
        if same_key(key, "user.signingkey")
            && let Some(k) = &self.signing_key
        {
            return Some(k.clone());
        }
        if let Some((_, v)) = self.overrides.iter().rev().find(|(k, _)| same_key(k, key)) {
            return Some(v.clone());
        }
        self.files.as_ref()?.get_string(key).ok()
    }

    /// A boolean as git reads one (`true`, `yes`, `on`, `1`; `false`, `no`, `off`, `0`).
    pub fn bool(&self, key: &str) -> Option<bool> {
        if let Some((_, v)) = self.overrides.iter().rev().find(|(k, _)| same_key(k, key)) {
            return match v.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Some(true),
                "false" | "no" | "off" | "0" | "" => Some(false),
                _ => None,
            };
        }
        self.files.as_ref()?.get_bool(key).ok()
    }
}

/// The configuration files as git reads them when `GIT_CONFIG_GLOBAL` or
/// `GIT_CONFIG_SYSTEM` names them (libgit2 reads neither variable): the system file
/// (unless `GIT_CONFIG_NOSYSTEM`), the global one (which then stands for both
/// `~/.gitconfig` and `$XDG_CONFIG_HOME/git/config`), then the repository's. A CI job or a
/// test harness that keeps its identity in such a file was told "no git identity".
fn files_named(
    repo: Option<&Repository>,
    global: Option<std::path::PathBuf>,
    system: Option<std::path::PathBuf>,
    nosystem: bool,
) -> Option<git2::Config> {
    use git2::ConfigLevel;
    let mut c = git2::Config::new().ok()?;
    // `/dev/null` (git's way of reading none) and missing files add nothing.
    let mut add = |path: Option<std::path::PathBuf>, level| -> Option<()> {
        if let Some(p) = path.filter(|p| p.is_file()) {
            c.add_file(&p, level, false).ok()?;
        }
        Some(())
    };
    if !nosystem {
        add(
            system.or_else(|| git2::Config::find_system().ok()),
            ConfigLevel::System,
        )?;
    }
    match global {
        Some(g) => add(Some(g), ConfigLevel::Global)?,
        None => {
            add(git2::Config::find_xdg().ok(), ConfigLevel::XDG)?;
            add(git2::Config::find_global().ok(), ConfigLevel::Global)?;
        }
    }
    if let Some(r) = repo {
        add(Some(r.commondir().join("config")), ConfigLevel::Local)?;
    }
    c.snapshot().ok()
}

/// Section and name compare without case, a subsection (`branch.Main.remote`) with it.
fn same_key(a: &str, b: &str) -> bool {
    let split = |k: &str| -> (String, String, String) {
        let first = k.find('.').unwrap_or(k.len());
        let last = k.rfind('.').unwrap_or(k.len());
        if first == last {
            return (k.to_ascii_lowercase(), String::new(), String::new());
        }
        (
            k[..first].to_ascii_lowercase(),
            k[first + 1..last].to_owned(),
            k[last + 1..].to_ascii_lowercase(),
        )
    };
    split(a) == split(b)
}

/// The pairs of `GIT_CONFIG_PARAMETERS` (what `git -c` passes to the commands it runs)
/// and then of `GIT_CONFIG_COUNT`, in the order git applies them.
fn overrides_from(env: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(p) = env("GIT_CONFIG_PARAMETERS") {
        out.extend(parameters(&p));
    }
    let count = env("GIT_CONFIG_COUNT")
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    for i in 0..count {
        if let (Some(k), Some(v)) = (
            env(&format!("GIT_CONFIG_KEY_{i}")),
            env(&format!("GIT_CONFIG_VALUE_{i}")),
        ) {
            out.push((k, v));
        }
    }
    out
}

/// `'user.email'='ann@example.com' 'core.x=y'`: shell single-quoted words, the key and the
/// value quoted apart (git 2.31 and later) or together (earlier).
fn parameters(text: &str) -> Vec<(String, String)> {
    let mut words: Vec<String> = Vec::new();
    let mut chars = text.chars().peekable();
    let mut word: Option<String> = None;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    w.push(q);
                }
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    word.get_or_insert_with(String::new).push(n);
                }
            }
            ' ' | '\t' | '\n' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            other => word.get_or_insert_with(String::new).push(other),
        }
    }
    words.extend(word);
    words
        .into_iter()
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_pairs_are_read_as_git_reads_them() {
        let env = |k: &str| {
            match k {
                "GIT_CONFIG_PARAMETERS" => Some("'user.email'='a@x' 'core.pager=less'"),
                "GIT_CONFIG_COUNT" => Some("2"),
                "GIT_CONFIG_KEY_0" => Some("User.Email"),
                "GIT_CONFIG_VALUE_0" => Some("b@x"),
                "GIT_CONFIG_KEY_1" => Some("commit.gpgsign"),
                "GIT_CONFIG_VALUE_1" => Some("yes"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let c = GitConfig {
            files: None,
            overrides: overrides_from(env),
            signing_key: None,
        };
        assert_eq!(c.string("user.email").as_deref(), Some("b@x"));
        assert_eq!(c.string("core.pager").as_deref(), Some("less"));
        assert_eq!(c.bool("commit.gpgsign"), Some(true));
        assert_eq!(c.string("user.name"), None);
        assert!(same_key("branch.Main.remote", "BRANCH.Main.Remote"));
        assert!(!same_key("branch.Main.remote", "branch.main.remote"));
    }
}
