//! The commits an audit judges, and in what order.
//!
//! A whole history is walked from git's commit-graph file where there is one
//! (`.git/objects/info/commit-graph`, written by `git gc`, `git maintenance` or `git
//! commit-graph write`), as `git log` does. libgit2 1.9 cannot use the graphs git writes
//! today (it refuses their generation-data chunk) and inflates every commit to learn its
//! parents instead, a serial tenth of `chg audit --full` that `git log` does not pay. The
//! graph only says which commits are parents of which, by commit id, as the commits
//! themselves do; commits newer than the graph are read from the object database.

use std::collections::{HashMap, HashSet};

use git2::{Oid, Repository};

use crate::error::Result;

/// Commits reachable from `head` and not from `hide`, oldest first: every commit comes
/// after its parents, so the history pass meets a change's first version before its later
/// ones. Verdicts themselves do not depend on the order.
pub fn walk(repo: &Repository, head: Oid, hide: Option<Oid>) -> Result<Vec<Oid>> {
    Ok(walk_telling(repo, head, hide)?.0)
}

/// [`walk`], and whether the commit-graph said which commits are parents of which: the
/// audit then holds every commit it reads to it (see `audit_commits`), as the graph is a
/// file in `.git` and no proof.
pub(crate) fn walk_telling(
    repo: &Repository,
    head: Oid,
    hide: Option<Oid>,
) -> Result<(Vec<Oid>, bool)> {
    if hide.is_none()
        && let Some(graph) = commit_graph(repo)
        && let Some(oids) = walk_graph(repo, &graph, head)?
    {
        return Ok((oids, true));
    }
    Ok((revwalk(repo, head, hide)?, false))
}

/// The commits of a walk made from the commit-graph file, by id, with their place in it.
/// The graph is a file in `.git`, not a proof: every commit the audit reads is held to it.
#[derive(Debug)]
pub struct Walked(HashMap<Oid, u32>);

impl Walked {
    /// The walk `oids`, in its order.
    pub fn of(oids: &[Oid]) -> Walked {
        // A map, not a sorted list: a binary search's comparisons of ids were a fiftieth
        // of `chg audit --full`, every commit looking up itself and its parents.
        Walked(oids.iter().zip(0u32..).map(|(o, i)| (*o, i)).collect())
    }

    fn place(&self, oid: Oid) -> Option<u32> {
        self.0.get(&oid).copied()
    }

    /// Every parent the commit names (read from the commit itself) is in the walk, before
    /// it: else the graph hid part of the history or put a commit before its parent.
    pub fn check(&self, commit: &git2::Commit<'_>) -> Result<()> {
        let oid = commit.id();
        let disagrees = |why: String| -> crate::error::Error {
            git2::Error::from_str(&format!(
                "the commit-graph file does not agree with the commits: {why}; remove it (rm \
                 -rf .git/objects/info/commit-graph*) or write it again (git commit-graph \
                 write --reachable)"
            ))
            .into()
        };
        let at = self
            .place(oid)
            .ok_or_else(|| disagrees(format!("{oid} is not in the history it gave")))?;
        for parent in commit.parent_ids() {
            match self.place(parent) {
                Some(p) if p < at => {}
                Some(_) => return Err(disagrees(format!("{parent} comes after its child {oid}"))),
                None => {
                    return Err(disagrees(format!(
                        "{parent}, a parent of {oid}, is not in the history it gave"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// libgit2's walk, in topological order. An unsorted walk (or one by date, as `git log`
/// orders) can put a commit before its parent across a merge when commit dates tie or are
/// set by hand, and the history pass would then meet a change's approval before its
/// creation.
fn revwalk(repo: &Repository, head: Oid, hide: Option<Oid>) -> Result<Vec<Oid>> {
    let mut walk = repo.revwalk()?;
    walk.push(head)?;
    if let Some(h) = hide {
        walk.hide(h)?;
    }
    walk.set_sorting(git2::Sort::TOPOLOGICAL)?;
    let mut oids = walk.collect::<std::result::Result<Vec<_>, _>>()?;
    oids.reverse();
    Ok(oids)
}

/// The repository's commit-graph, unless it has none, it cannot be read, or git itself
/// would not use it (a shallow clone or grafts rewrite parents the graph does not know).
fn commit_graph(repo: &Repository) -> Option<gix_commitgraph::Graph> {
    if repo.is_shallow() || repo.path().join("info").join("grafts").exists() {
        return None;
    }
    let info = repo.path().join("objects").join("info");
    gix_commitgraph::Graph::at(&info, gix_hash::Kind::Sha1, None).ok()
}

/// The walk over the graph: the commits it holds that `head` reaches, ordered by
/// generation (one more than the highest of the commit's parents, so parents first), then
/// those newer than the graph, each after its parents. `None` when the graph turns out
/// not to be usable (a parent it names is out of range): libgit2's walk decides then.
fn walk_graph(
    repo: &Repository,
    graph: &gix_commitgraph::Graph,
    head: Oid,
) -> Result<Option<Vec<Oid>>> {
    let mut seen = vec![false; graph.num_commits() as usize];
    let mut reached: Vec<u32> = Vec::new();
    // Commits the graph does not hold, with their parents.
    let mut newer: HashMap<Oid, Vec<Oid>> = HashMap::new();
    let mut order_newer: Vec<Oid> = Vec::new();
    let mut stack = vec![head];
    let mut positions: Vec<u32> = Vec::new();
    while let Some(oid) = stack.pop() {
        match lookup(graph, oid) {
            Some(pos) => positions.push(pos),
            None => {
                if newer.contains_key(&oid) {
                    continue;
                }
                let parents: Vec<Oid> = repo.find_commit(oid)?.parent_ids().collect();
                stack.extend(parents.iter().copied());
                newer.insert(oid, parents);
                order_newer.push(oid);
            }
        }
    }
    // The graph's own commits: its parents are positions in it.
    while let Some(pos) = positions.pop() {
        let Some(slot) = seen.get_mut(pos as usize) else {
            return Ok(None);
        };
        if std::mem::replace(slot, true) {
            continue;
        }
        reached.push(pos);
        for parent in graph
            .commit_at(gix_commitgraph::Position(pos))
            .iter_parents()
        {
            match parent {
                Ok(p) => positions.push(p.0),
                Err(_) => return Ok(None),
            }
        }
    }
    let generation = |pos: u32| {
        let c = graph.commit_at(gix_commitgraph::Position(pos));
        (c.generation(), c.committer_timestamp())
    };
    reached.sort_unstable_by_key(|&pos| (generation(pos), pos));
    let mut oids: Vec<Oid> = Vec::with_capacity(reached.len() + newer.len());
    for pos in reached {
        let id = graph.id_at(gix_commitgraph::Position(pos));
        oids.push(Oid::from_bytes(id.as_bytes())?);
    }
    oids.extend(newer_in_order(&newer, order_newer));
    Ok(Some(oids))
}

/// The commit's position in the graph, if the graph holds it.
fn lookup(graph: &gix_commitgraph::Graph, oid: Oid) -> Option<u32> {
    let id = gix_hash::oid::try_from_bytes(oid.as_bytes()).ok()?;
    graph.lookup(id).map(|p| p.0)
}

/// The commits newer than the graph, each after those of its parents that are newer too
/// (the graph holds every ancestor of its own commits, so theirs are already placed).
fn newer_in_order(newer: &HashMap<Oid, Vec<Oid>>, found: Vec<Oid>) -> Vec<Oid> {
    let mut placed: HashSet<Oid> = HashSet::with_capacity(newer.len());
    let mut out = Vec::with_capacity(newer.len());
    // Found newest first; a post-order walk from each places parents before children.
    for start in found.into_iter().rev() {
        let mut frames: Vec<(Oid, usize)> = vec![(start, 0)];
        while let Some((oid, next)) = frames.pop() {
            if placed.contains(&oid) {
                continue;
            }
            let parents = &newer[&oid];
            match parents[next..]
                .iter()
                .position(|p| newer.contains_key(p) && !placed.contains(p))
            {
                Some(i) => {
                    frames.push((oid, next + i + 1));
                    frames.push((parents[next + i], 0));
                }
                None => {
                    placed.insert(oid);
                    out.push(oid);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::testing::git;

    fn commit(dir: &Path, name: &str) {
        std::fs::write(dir.join(name), name).unwrap();
        git(dir, &["add", name]);
        git(dir, &["commit", "-q", "-m", name]);
    }

    /// A history with a merge, then (after the graph is written) a branch and a merge
    /// newer than the graph.
    fn history(dir: &Path) {
        git(dir, &["init", "-q", "-b", "main"]);
        for n in ["a", "b"] {
            commit(dir, n);
        }
        git(dir, &["checkout", "-q", "-b", "side"]);
        for n in ["c", "d"] {
            commit(dir, n);
        }
        git(dir, &["checkout", "-q", "main"]);
        commit(dir, "e");
        git(dir, &["merge", "-q", "--no-ff", "-m", "m1", "side"]);
        commit(dir, "f");
    }

    fn later(dir: &Path) {
        git(dir, &["checkout", "-q", "-b", "side2"]);
        commit(dir, "g1");
        git(dir, &["checkout", "-q", "main"]);
        commit(dir, "g2");
        git(dir, &["merge", "-q", "--no-ff", "-m", "m2", "side2"]);
        commit(dir, "k");
    }

    /// Every commit of `git rev-list HEAD` once, each after its parents.
    fn assert_parents_first(repo: &Repository, dir: &Path, oids: &[Oid]) {
        let mut expected: Vec<String> = git(dir, &["rev-list", "HEAD"])
            .lines()
            .map(str::to_string)
            .collect();
        let mut got: Vec<String> = oids.iter().map(Oid::to_string).collect();
        expected.sort();
        got.sort();
        assert_eq!(got, expected);
        let at: HashMap<Oid, usize> = oids.iter().enumerate().map(|(i, o)| (*o, i)).collect();
        for (i, oid) in oids.iter().enumerate() {
            for p in repo.find_commit(*oid).unwrap().parent_ids() {
                assert!(at[&p] < i, "{p} comes after its child {oid}");
            }
        }
    }

    #[test]
    fn the_graph_walk_finds_every_commit_parents_first_including_those_newer_than_the_graph() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        history(dir);
        git(dir, &["commit-graph", "write", "--reachable"]);
        later(dir);
        let repo = Repository::open(dir).unwrap();
        let head = repo.head().unwrap().target().unwrap();
        let graph = commit_graph(&repo).expect("git wrote a graph this walk reads");
        assert_eq!(graph.num_commits(), 7);
        let oids = walk_graph(&repo, &graph, head)
            .unwrap()
            .expect("the graph is usable");
        assert_parents_first(&repo, dir, &oids);
        assert_eq!(walk(&repo, head, None).unwrap(), oids);
        assert_eq!(
            walk_telling(&repo, head, None).unwrap(),
            (oids.clone(), true)
        );
        // An incremental walk (from a commit audited before) is libgit2's.
        assert!(!walk_telling(&repo, head, Some(oids[0])).unwrap().1);
        // The audit holds each commit it reads to the walk: a parent the walk lacks (as a
        // graph that hid history would give), or one placed after its child, stops it.
        let walked = Walked::of(&oids);
        for oid in &oids {
            walked.check(&repo.find_commit(*oid).unwrap()).unwrap();
        }
        let head_commit = repo.find_commit(head).unwrap();
        let parent = head_commit.parent_id(0).unwrap();
        let without: Vec<Oid> = oids.iter().copied().filter(|o| *o != parent).collect();
        let err = Walked::of(&without).check(&head_commit).unwrap_err();
        assert!(
            err.to_string().contains("not in the history it gave"),
            "{err}"
        );
        // And the audit asks it of every commit it judges.
        let judged = crate::audit::audit_commits(repo.path(), "", &oids, 0, Some(&walked));
        assert_eq!(judged.unwrap().len(), oids.len());
        let forged = Walked::of(&without);
        let judged = crate::audit::audit_commits(repo.path(), "", &without, 0, Some(&forged));
        assert!(judged.unwrap_err().to_string().contains("commit-graph"));
        let mut swapped = oids.clone();
        let at = |o: Oid| swapped.iter().position(|x| *x == o).unwrap();
        let (i, j) = (at(parent), at(head));
        swapped.swap(i, j);
        let err = Walked::of(&swapped).check(&head_commit).unwrap_err();
        assert!(err.to_string().contains("comes after its child"), "{err}");
        // libgit2's walk (no graph) finds the same commits.
        let mut by_libgit2 = revwalk(&repo, head, None).unwrap();
        let mut ours = oids.clone();
        by_libgit2.sort();
        ours.sort();
        assert_eq!(by_libgit2, ours);
    }

    #[test]
    fn a_damaged_or_absent_graph_leaves_the_walk_to_libgit2() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        history(dir);
        later(dir);
        let repo = Repository::open(dir).unwrap();
        let head = repo.head().unwrap().target().unwrap();
        assert!(commit_graph(&repo).is_none());
        assert_parents_first(&repo, dir, &walk(&repo, head, None).unwrap());
        git(dir, &["commit-graph", "write", "--reachable"]);
        let file = dir.join(".git/objects/info/commit-graph");
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.truncate(bytes.len() / 2);
        let mut perms = std::fs::metadata(&file).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&file, perms).unwrap();
        std::fs::write(&file, bytes).unwrap();
        assert!(commit_graph(&repo).is_none());
        assert_parents_first(&repo, dir, &walk(&repo, head, None).unwrap());
        assert!(!walk_telling(&repo, head, None).unwrap().1);
    }
}
