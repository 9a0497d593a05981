//! Where every reader gets its policy: the file parsed, with the allowed signers and the
//! catalogue of the same place attached. The store (at HEAD, or in the work tree before the
//! first commit), validate, the audit, governance and sync all assemble it here, so that
//! what "the policy" means cannot drift between them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use git2::{Oid, Repository, Tree};

use crate::error::Result;
use crate::finding::Finding;
use crate::policy::{POLICY_PATH, Policy};
use crate::templates::TemplateHistory;

/// Where a policy's files are read from.
pub enum Files<'a> {
    /// A git tree (a commit's), holding the store at `prefix` (`""` or `sub/`).
    Tree {
        /// The repository holding the tree.
        repo: &'a Repository,
        /// The tree.
        tree: &'a Tree<'a>,
        /// Where the store is in it: `""` or `sub/`.
        prefix: &'a str,
    },
    /// The store's work tree.
    WorkTree(&'a Path),
    /// Files by store path (a policy proposal's).
    Map(&'a std::collections::BTreeMap<String, String>),
}

impl Files<'_> {
    /// A store file's bytes (`rel` relative to the store); `NotFound` when absent.
    fn read(&self, rel: &str) -> std::io::Result<Vec<u8>> {
        match self {
            Files::Tree { repo, tree, prefix } => {
                match crate::git::blob_at(tree, &format!("{prefix}{rel}")) {
                    Ok(Some(b)) => repo
                        .find_blob(b)
                        .map(|b| b.content().to_vec())
                        .map_err(|e| std::io::Error::other(e.message().to_owned())),
                    Ok(None) => Err(std::io::ErrorKind::NotFound.into()),
                    Err(e) => Err(std::io::Error::other(e.to_string())),
                }
            }
            Files::WorkTree(root) => crate::decode::read_bounded(&root.join(rel)),
            Files::Map(files) => files
                .get(rel)
                .map(|t| t.clone().into_bytes())
                .ok_or_else(|| std::io::ErrorKind::NotFound.into()),
        }
    }

    /// The catalogue's files, or `None` when there is no catalogue folder at all.
    fn templates(&self) -> Result<Option<crate::templates::Files>> {
        Ok(match self {
            Files::Tree { repo, tree, prefix } => {
                match crate::templates::files_in_tree(repo, tree, prefix)? {
                    (Some(_), files) => Some(files),
                    (None, _) => None,
                }
            }
            Files::WorkTree(root) => root
                .join(crate::templates::TEMPLATES_DIR)
                .is_dir()
                .then(|| crate::templates::files_in_dir(root)),
            Files::Map(files) => {
                let dir = format!("{}/", crate::templates::TEMPLATES_DIR);
                let found: crate::templates::Files = files
                    .iter()
                    .filter(|(path, _)| {
                        path.strip_prefix(&dir)
                            .is_some_and(|name| name.ends_with(".yaml") && !name.contains('/'))
                    })
                    .map(|(path, text)| (path.clone(), text.clone().into_bytes()))
                    .collect();
                let any = files.keys().any(|path| path.starts_with(&dir));
                any.then_some(found)
            }
        })
    }
}

/// What attaching a policy's files found wrong, with places.
#[derive(Debug, Default)]
pub struct Attached {
    /// The allowed signers' problems: a policy with any is not usable to act on.
    pub signers: Vec<Finding>,
    /// The templates' problems: a template with problems is left out of the catalogue.
    pub templates: Vec<Finding>,
}

/// Reads the policy file's bytes: the findings say why it is not a usable policy.
pub fn parse(bytes: &[u8]) -> std::result::Result<(Policy, Vec<Finding>), Vec<Finding>> {
    let text = std::str::from_utf8(bytes).map_err(|_| {
        vec![Finding::error(
            POLICY_PATH,
            None,
            "encoding",
            "the policy is not valid UTF-8",
        )]
    })?;
    Policy::parse(POLICY_PATH, text)
}

/// Attaches to `policy` the allowed signers and the catalogue read from `files`, and the
/// catalogue's `history` (what older template versions a change may still name). A store
/// without a catalogue folder keeps the rules from before catalogues.
pub fn attach(
    policy: &mut Policy,
    files: &Files<'_>,
    history: Option<Arc<TemplateHistory>>,
) -> Result<Attached> {
    let signers = policy.attach_signers(|path| files.read(path));
    let catalogue = files.templates()?;
    policy.legacy_standard_changes = catalogue.is_none();
    let templates = policy.attach_templates(catalogue.unwrap_or_default());
    policy.template_history = history;
    Ok(Attached { signers, templates })
}

/// What an assembled policy is known by in a tree: (policy blob, allowed signers blob,
/// templates tree). Two trees with the same key have the same assembled policy.
pub type Key = (Option<Oid>, Option<Oid>, Option<Oid>);

/// The key of the policy in `tree` (`policy`: the parsed policy file, for where its signers
/// are).
fn key(tree: &Tree<'_>, prefix: &str, blob: Option<Oid>, policy: &Policy) -> Result<Key> {
    let signers = match &policy.signing {
        Some(signing) => {
            crate::git::blob_at(tree, &format!("{prefix}{}", signing.allowed_signers))?
        }
        None => None,
    };
    let templates = crate::templates::tree_id(tree, prefix)?;
    Ok((blob, signers, templates))
}

/// The policy in a tree, as a reader of many commits sees it.
#[derive(Clone)]
pub struct InTree {
    /// The policy with its signers and catalogue.
    pub policy: Arc<Policy>,
    /// The policy file's blob; `None` when the tree has none (the default policy is given).
    pub blob: Option<Oid>,
    /// Whether the policy file parsed (when not, the default policy is given).
    pub parsed: bool,
}

/// Policies of many trees, each parsed and assembled once: for the audit, governance and
/// sync, which visit many commits with few distinct policies.
pub struct Cache<'r> {
    repo: &'r Repository,
    prefix: String,
    default: Arc<Policy>,
    /// Parsed policy files by blob (`None`: does not parse).
    parsed: HashMap<Oid, Option<Arc<Policy>>>,
    assembled: HashMap<Key, Arc<Policy>>,
    history: Option<Arc<TemplateHistory>>,
}

impl<'r> Cache<'r> {
    /// For the store at `prefix` in `repo`; `history` is the catalogue history every
    /// assembled policy carries (HEAD's, for readers judging today's store).
    pub fn new(repo: &'r Repository, prefix: &str, history: Option<Arc<TemplateHistory>>) -> Self {
        Cache {
            repo,
            prefix: prefix.to_owned(),
            default: Arc::new(Policy::default_policy()),
            parsed: HashMap::new(),
            assembled: HashMap::new(),
            history,
        }
    }

    /// The catalogue history of the first-parent line from HEAD, if the repository has one.
    pub fn head_history(repo: &Repository, prefix: &str) -> Option<Arc<TemplateHistory>> {
        let head = repo.head().ok()?.peel_to_commit().ok()?.id();
        Some(Arc::new(crate::templates::history_from(
            repo.path().to_path_buf(),
            prefix.to_owned(),
            head,
        )))
    }

    /// The policy file at `blob`, parsed alone (no signers, no catalogue); `None` when it
    /// does not parse.
    pub fn parsed(&mut self, blob: Oid) -> Result<Option<Arc<Policy>>> {
        if let Some(p) = self.parsed.get(&blob) {
            return Ok(p.clone());
        }
        let p = parse(self.repo.find_blob(blob)?.content())
            .ok()
            .map(|(p, _)| Arc::new(p));
        self.parsed.insert(blob, p.clone());
        Ok(p)
    }

    /// The policy in `tree` with its signers and catalogue; the default policy when the
    /// tree has none or it does not parse (`parsed` says which).
    pub fn in_tree(&mut self, tree: &Tree<'_>) -> Result<InTree> {
        let blob = crate::git::blob_at(tree, &format!("{}{POLICY_PATH}", self.prefix))?;
        let (file, parsed) = match blob {
            None => (self.default.clone(), true),
            Some(b) => match self.parsed(b)? {
                Some(p) => (p, true),
                None => (self.default.clone(), false),
            },
        };
        let key = key(tree, &self.prefix, blob, &file)?;
        if let Some(p) = self.assembled.get(&key) {
            return Ok(InTree {
                policy: p.clone(),
                blob,
                parsed,
            });
        }
        let mut p = (*file).clone();
        let files = Files::Tree {
            repo: self.repo,
            tree,
            prefix: &self.prefix,
        };
        attach(&mut p, &files, self.history.clone())?;
        let p = Arc::new(p);
        self.assembled.insert(key, p.clone());
        Ok(InTree {
            policy: p,
            blob,
            parsed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reader gets the same policy from the same files: the work tree, a tree and a
    /// proposal's map agree on the signers, the catalogue and whether the store predates
    /// catalogues (the store and the audit once disagreed on the last).
    #[test]
    fn the_work_tree_a_commit_and_a_proposal_assemble_the_same_policy() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let repo = Repository::init(root).unwrap();
        let policy = crate::policy::DEFAULT_POLICY;
        std::fs::create_dir_all(root.join("policy")).unwrap();
        std::fs::write(root.join(POLICY_PATH), policy).unwrap();
        fn tree_of(repo: &Repository) -> Tree<'_> {
            let mut index = repo.index().unwrap();
            index
                .add_all(["policy"], git2::IndexAddOption::DEFAULT, None)
                .unwrap();
            repo.find_tree(index.write_tree().unwrap()).unwrap()
        }
        let assembled = |files: &Files<'_>| {
            let (mut p, _) = parse(policy.as_bytes()).unwrap();
            let found = attach(&mut p, files, None).unwrap();
            (
                p.legacy_standard_changes,
                p.templates.len(),
                found.templates.len(),
            )
        };
        let map = |root: &Path| {
            let mut m = std::collections::BTreeMap::new();
            m.insert(POLICY_PATH.to_owned(), policy.to_owned());
            for e in std::fs::read_dir(root.join("policy/templates"))
                .into_iter()
                .flatten()
            {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                m.insert(
                    format!("policy/templates/{name}"),
                    std::fs::read_to_string(e.path()).unwrap(),
                );
            }
            m
        };
        // The work tree, the committed tree and a map of the same files, assembled alike.
        let three_ways = || {
            let tree = tree_of(&repo);
            let m = map(root);
            [
                assembled(&Files::WorkTree(root)),
                assembled(&Files::Tree {
                    repo: &repo,
                    tree: &tree,
                    prefix: "",
                }),
                assembled(&Files::Map(&m)),
            ]
        };

        // No catalogue folder: the rules from before catalogues, everywhere.
        let before = three_ways();
        assert_eq!(before, [(true, 0, 0); 3]);

        // A catalogue with one good template and one broken one.
        std::fs::create_dir_all(root.join("policy/templates")).unwrap();
        std::fs::write(
            root.join("policy/templates/tls.yaml"),
            "rollback_plan: Reload the previous certificate\nvariable: [title, description, business_justification, change_type, priority, urgency, risk_level, affected_systems, impact_scope, implementation_plan, testing_required, test_plan, test_environment]\n",
        )
        .unwrap();
        std::fs::write(root.join("policy/templates/bad.yaml"), "variable: [nope]\n").unwrap();
        let after = three_ways();
        assert_eq!(after[0], after[1]);
        assert_eq!(after[1], after[2]);
        assert!(
            !after[0].0,
            "a catalogue ends the rules from before catalogues"
        );
        assert_eq!(after[0].1, 1, "the broken template is left out");
        assert!(after[0].2 > 0, "and reported");
    }

    /// The cache gives the default policy for a tree without one, and says when a policy
    /// file does not parse.
    #[test]
    fn a_tree_without_a_usable_policy_gets_the_default_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let empty = repo
            .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
            .unwrap();
        let mut cache = Cache::new(&repo, "", None);
        let none = cache.in_tree(&empty).unwrap();
        assert!(none.blob.is_none() && none.parsed);
        std::fs::create_dir_all(dir.path().join("policy")).unwrap();
        std::fs::write(dir.path().join(POLICY_PATH), "roles: [").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new(POLICY_PATH)).unwrap();
        let broken = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let got = cache.in_tree(&broken).unwrap();
        assert!(got.blob.is_some() && !got.parsed);
        assert_eq!(got.policy.roles, none.policy.roles);
    }
}
