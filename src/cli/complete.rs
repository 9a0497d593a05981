//! Dynamic shell completion (`source <(COMPLETE=bash chg)`): ids, statuses, change types,
//! roles and systems come from the store the shell is in, when it is asked.

use clap_complete::engine::CompletionCandidate;

use chg::store::Store;

/// The store of the current folder (or CHG_REPO), without waiting for its lock.
fn store() -> Option<Store> {
    let cwd = std::env::current_dir().ok()?;
    let explicit = std::env::var_os("CHG_REPO").map(std::path::PathBuf::from);
    Store::discover(&cwd, explicit.as_deref(), std::time::Duration::ZERO).ok()
}

/// Change ids in the work tree, newest first, with titles when the store is small enough
/// to read them all quickly.
pub fn ids() -> Vec<CompletionCandidate> {
    let Some(store) = store() else {
        return Vec::new();
    };
    let Ok(files) = chg::layout::change_files(store.root()) else {
        return Vec::new();
    };
    let titled = files.len() <= 2_000;
    let mut out: Vec<(String, Option<String>)> = files
        .iter()
        .filter_map(|f| {
            let id = f.file_stem()?.to_str()?.to_owned();
            id.parse::<chg::model::ChangeId>().ok()?;
            let title = titled
                .then(|| chg::decode::read_bounded(f).ok())
                .flatten()
                .and_then(|b| chg::decode::decode_bytes("", &b).change.title)
                .map(|t| chg::text::one_line(&t).into_owned());
            Some((id, title))
        })
        .collect();
    out.sort_by(|a, b| b.0.cmp(&a.0));
    out.into_iter()
        .map(|(id, title)| CompletionCandidate::new(id).help(title.map(Into::into)))
        .collect()
}

/// The life-cycle statuses.
pub fn statuses() -> Vec<CompletionCandidate> {
    chg::model::Status::names()
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

/// The policy's change types.
pub fn types() -> Vec<CompletionCandidate> {
    policy()
        .map(|p| {
            p.change_types
                .iter()
                .map(CompletionCandidate::new)
                .collect()
        })
        .unwrap_or_default()
}

/// The policy's roles, with their members.
pub fn roles() -> Vec<CompletionCandidate> {
    policy()
        .map(|p| {
            p.roles
                .iter()
                .map(|(r, m)| CompletionCandidate::new(r).help(Some(m.join(", ").into())))
                .collect()
        })
        .unwrap_or_default()
}

/// The systems named by the store's changes.
pub fn systems() -> Vec<CompletionCandidate> {
    let Some(store) = store() else {
        return Vec::new();
    };
    let Ok(all) = store.load_where(|c| !c.affected_systems.is_empty()) else {
        return Vec::new();
    };
    let set: std::collections::BTreeSet<String> = all
        .iter()
        .flat_map(|l| l.change().affected_systems.clone())
        .collect();
    set.into_iter().map(CompletionCandidate::new).collect()
}

fn policy() -> Option<std::sync::Arc<chg::policy::Policy>> {
    store()?.policy().ok()
}
