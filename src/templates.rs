//! Standard changes from a catalogue (SPEC section 11): a template under
//! `policy/templates/NAME.yaml` fixes a standard change's content once, approved with the
//! policy; a change filed from it records the template's name and digest and must keep
//! every fixed field. Self-declaring a change "standard" approves nothing.

use crate::finding::Finding;
use crate::model::{CONTENT_FIELDS, ChangeModel, ChangeRequest};
use crate::yaml::{self, Pos, Value};

/// Rule id of a standard change that names no template in force or breaks a fixed field.
pub const STANDARD_TEMPLATE: &str = "standard-template";

/// The folder of the catalogue, relative to the store.
pub const TEMPLATES_DIR: &str = "policy/templates";

/// One template of the catalogue.
#[derive(Debug, Clone)]
pub struct Template {
    /// The file's stem (`rotate-tls-certificate`).
    pub name: String,
    /// The fixed content (only the fixed fields are set).
    pub fixed: ChangeRequest,
    /// Which content fields it fixes, in canonical order.
    pub fixed_fields: Vec<&'static str>,
    /// What the requester fills in.
    pub variable: Vec<String>,
    /// `sha256:…` of the file: what a change filed from it records.
    pub digest: String,
}

/// Earlier versions of the catalogue, read from history only when a change names a version
/// that is not in force (a template changed after changes were filed from it).
pub struct TemplateHistory {
    load: Box<dyn Fn() -> Vec<(String, Vec<u8>)> + Send + Sync>,
    versions: std::sync::OnceLock<Vec<Template>>,
}

impl std::fmt::Debug for TemplateHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TemplateHistory")
    }
}

impl TemplateHistory {
    /// `load` gives every version of every template file ever committed (store path,
    /// bytes); it runs at most once, when first needed.
    pub fn new(load: impl Fn() -> Vec<(String, Vec<u8>)> + Send + Sync + 'static) -> Self {
        TemplateHistory {
            load: Box::new(load),
            versions: std::sync::OnceLock::new(),
        }
    }

    /// The version with this digest.
    pub fn find(&self, digest: &str) -> Option<&Template> {
        self.versions
            .get_or_init(|| {
                (self.load)()
                    .iter()
                    .filter_map(|(p, b)| read(p, b, None).0)
                    .collect()
            })
            .iter()
            .find(|t| t.digest == digest)
    }
}

/// Every version of the catalogue's files on the first-parent line from `head` in the
/// repository at `git_dir` (opened afresh: the caller's handle is not shareable).
pub fn history_from(
    git_dir: std::path::PathBuf,
    prefix: String,
    head: git2::Oid,
) -> TemplateHistory {
    TemplateHistory::new(move || {
        let mut out = Vec::new();
        let Ok(repo) = git2::Repository::open(&git_dir) else {
            return out;
        };
        let mut seen = std::collections::HashSet::new();
        let mut at = repo.find_commit(head).ok();
        while let Some(c) = at {
            if let Ok(tree) = c.tree()
                && let Ok((Some(id), files)) = files_in_tree(&repo, &tree, &prefix)
                && seen.insert(id)
            {
                out.extend(files);
            }
            at = c.parents().next();
        }
        out
    })
}

/// The digest of a template file's bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::text::sha256_hex(bytes))
}

/// What the policy asks of every template, handed in by the policy that reads its
/// catalogue (so that this module parses templates and knows no policy).
pub struct Requirements<'a> {
    /// The policy's change types.
    pub change_types: &'a [String],
    /// The fields every change must have.
    pub required_fields: &'a [String],
    /// Whether changes of a type need testing (and so a test plan).
    pub testing_for: &'a dyn Fn(&str) -> bool,
}

/// Reads one template file (`path` is `policy/templates/NAME.yaml`), checking it against
/// `policy` with places: an unknown field, a `variable` naming no content field or a fixed
/// one, a fixed value the policy refuses, a required field neither fixed nor variable.
pub fn parse(
    path: &str,
    bytes: &[u8],
    policy: &Requirements<'_>,
) -> (Option<Template>, Vec<Finding>) {
    read(path, bytes, Some(policy))
}

/// [`parse`], checked against `policy` when there is one (an earlier version is read
/// without: it passed the policy of its day).
fn read(
    path: &str,
    bytes: &[u8],
    policy: Option<&Requirements<'_>>,
) -> (Option<Template>, Vec<Finding>) {
    let rule = STANDARD_TEMPLATE;
    let name = path
        .strip_prefix(TEMPLATES_DIR)
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|p| p.strip_suffix(".yaml"))
        .unwrap_or("")
        .to_owned();
    let mut findings = Vec::new();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        findings.push(Finding::error(
            path,
            None,
            rule,
            "a template is policy/templates/NAME.yaml, NAME in lower-case letters, digits and dashes",
        ));
        return (None, findings);
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        findings.push(Finding::error(
            path,
            None,
            rule,
            "the template is not UTF-8 text",
        ));
        return (None, findings);
    };
    // The fixed fields read as a change file would be, `variable` aside.
    let decoded = crate::decode::decode_str(path, text);
    findings.extend(
        decoded
            .findings
            .iter()
            .filter(|f| !f.message.starts_with("unknown key `variable`"))
            .cloned(),
    );
    let (variable, variable_at) = variable_of(path, text, &mut findings);
    let fixed = decoded.change;
    let fixed_fields: Vec<&'static str> = CONTENT_FIELDS
        .iter()
        .copied()
        .filter(|f| {
            fixed.has_field(f) || (*f == "testing_required" && fixed.testing_required.is_some())
        })
        .collect();
    check_variable(path, &variable, &fixed_fields, &mut findings);
    let place = |f: &str| decoded.places.get(f).copied().or(variable_at);
    let template = Template {
        name,
        fixed,
        fixed_fields,
        variable: variable.into_iter().map(|(v, _)| v).collect(),
        digest: digest(bytes),
    };
    let Some(policy) = policy else {
        return (Some(template), Vec::new());
    };
    check_policy(path, &template, policy, &place, &mut findings);
    if findings.iter().any(Finding::is_error) {
        return (None, findings);
    }
    (Some(template), findings)
}

/// The template's `variable:` list (each field with its place) and where the key is;
/// anything but a list is an error.
fn variable_of(
    path: &str,
    text: &str,
    findings: &mut Vec<Finding>,
) -> (Vec<(String, Option<Pos>)>, Option<Pos>) {
    let root = yaml::parse(text, yaml::Limits::default()).ok().flatten();
    let mut variable: Vec<(String, Option<Pos>)> = Vec::new();
    let mut variable_at = None;
    if let Some(entries) = root.as_ref().and_then(|r| r.as_map()) {
        for (k, v) in entries {
            if yaml::key_text(k) != "variable" {
                continue;
            }
            variable_at = Some(k.pos);
            match &v.value {
                Value::Seq(items) => {
                    for item in items {
                        variable.push((item.as_scalar().unwrap_or("").to_owned(), Some(item.pos)));
                    }
                }
                Value::Null => {}
                _ => findings.push(Finding::error(
                    path,
                    Some(v.pos),
                    STANDARD_TEMPLATE,
                    "variable must be a list of the fields the requester fills in",
                )),
            }
        }
    }
    (variable, variable_at)
}

/// Each variable field must be a content field (with a suggestion when it is not) and
/// not one the template fixes.
fn check_variable(
    path: &str,
    variable: &[(String, Option<Pos>)],
    fixed_fields: &[&'static str],
    findings: &mut Vec<Finding>,
) {
    let rule = STANDARD_TEMPLATE;
    for (field, pos) in variable {
        let known = CONTENT_FIELDS.contains(&field.as_str());
        if !known {
            let hint = crate::finding::suggest(field, CONTENT_FIELDS.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            findings.push(Finding::error(
                path,
                *pos,
                rule,
                format!(
                    "variable names `{field}`, which is not a field a requester fills in{hint}"
                ),
            ));
        } else if fixed_fields.contains(&field.as_str()) {
            findings.push(Finding::error(
                path,
                *pos,
                rule,
                format!("`{field}` is both fixed by the template and variable"),
            ));
        }
    }
}

/// The template against the policy in force: a change type it knows, no change model
/// but standard, and every required field (a test plan where testing is needed) either
/// fixed or variable. `place` gives a fixed field's place.
fn check_policy(
    path: &str,
    template: &Template,
    policy: &Requirements<'_>,
    place: &dyn Fn(&str) -> Option<Pos>,
    findings: &mut Vec<Finding>,
) {
    let rule = STANDARD_TEMPLATE;
    let fixed = &template.fixed;
    if let Some(t) = &fixed.change_type
        && !policy.change_types.contains(t)
    {
        findings.push(Finding::error(
            path,
            place("change_type"),
            rule,
            format!(
                "change_type `{t}` is not one of the policy's change types ({})",
                policy.change_types.join(", ")
            ),
        ));
    }
    if fixed
        .change_model
        .is_some_and(|m| m != ChangeModel::Standard)
    {
        findings.push(Finding::error(
            path,
            place("change_model"),
            rule,
            "a template files standard changes; leave change_model out",
        ));
    }
    let covered = |f: &str| {
        template.fixed_fields.contains(&f)
            || template.variable.iter().any(|v| v == f)
            || !CONTENT_FIELDS.contains(&f)
            || f == "change_model"
    };
    for f in policy.required_fields {
        if !covered(f) {
            findings.push(Finding::error(
                path,
                None,
                rule,
                format!("the policy requires `{f}`, which the template neither fixes nor lists as variable"),
            ));
        }
    }
    let testing = fixed
        .change_type
        .as_deref()
        .is_some_and(|t| (policy.testing_for)(t))
        || fixed.testing_required == Some(true);
    if testing && !covered("test_plan") {
        findings.push(Finding::error(
            path,
            place("change_type"),
            rule,
            "changes of this type need a test plan, which the template neither fixes nor lists as variable",
        ));
    }
}

/// Why a standard change does not conform to the catalogue (`None` when it does, is not a
/// standard change, or is self-declared history): no template named, one not in force (nor,
/// for a template changed since, the version it recorded), or a fixed field changed.
pub fn problem(
    change: &ChangeRequest,
    in_force: &std::collections::BTreeMap<String, Template>,
    history: Option<&TemplateHistory>,
    legacy: bool,
) -> Option<String> {
    // A store without a catalogue keeps the rules from before catalogues for changes that
    // name no template; one that names a template is judged by the catalogue even when it
    // is gone (a retired template pre-approves nothing).
    if change.model() != ChangeModel::Standard || legacy && change.template.is_none() {
        return None;
    }
    let Some(name) = &change.template else {
        // A closed, rejected or cancelled self-declared standard change is history from
        // before the catalogue: it keeps the rules of its day (the audit judges how it got
        // there).
        if change.status().is_terminal() {
            return None;
        }
        return Some(
            "a standard change must be filed from a template of the policy (chg new --template NAME); self-declared standard changes are not pre-approved".into(),
        );
    };
    let in_force = in_force.get(name);
    let recorded = change.template_digest.as_deref();
    let template = match (in_force, recorded) {
        (Some(t), Some(d)) if t.digest == d => t,
        (_, Some(d)) => match history.and_then(|h| h.find(d)) {
            Some(t) if &t.name == name => t,
            _ => {
                return Some(match in_force {
                    Some(_) => format!(
                        "it was filed under a version of template `{name}` ({d}) that was never in force"
                    ),
                    None => format!("template `{name}` is not in the policy's catalogue"),
                });
            }
        },
        (Some(_), None) => {
            return Some(format!(
                "it names template `{name}` but not the version it was filed under (template_digest)"
            ));
        }
        (None, None) => {
            return Some(format!(
                "template `{name}` is not in the policy's catalogue"
            ));
        }
    };
    let changed: Vec<&str> = template
        .fixed_fields
        .iter()
        .copied()
        .filter(|f| match *f {
            "affected_systems" => change.affected_systems != template.fixed.affected_systems,
            "testing_required" => change.testing_required != template.fixed.testing_required,
            _ => change.field_text(f) != template.fixed.field_text(f),
        })
        .collect();
    (!changed.is_empty()).then(|| {
        format!(
            "it differs from template `{name}` in what the template fixes: {}",
            changed.join(", ")
        )
    })
}

/// Files by store path, with their bytes.
pub type Files = Vec<(String, Vec<u8>)>;

/// The tree id of the catalogue folder in `tree`, if it has one.
pub fn tree_id(tree: &git2::Tree<'_>, prefix: &str) -> crate::error::Result<Option<git2::Oid>> {
    let folder = format!("{prefix}{TEMPLATES_DIR}");
    match tree.get_path(std::path::Path::new(&folder)) {
        Ok(e) if e.kind() == Some(git2::ObjectType::Tree) => Ok(Some(e.id())),
        Ok(_) => Ok(None),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The catalogue's files in `tree` (by store path), and the tree id of the folder.
pub fn files_in_tree(
    repo: &git2::Repository,
    tree: &git2::Tree<'_>,
    prefix: &str,
) -> crate::error::Result<(Option<git2::Oid>, Files)> {
    let Some(id) = tree_id(tree, prefix)? else {
        return Ok((None, Vec::new()));
    };
    let mut out = Vec::new();
    for entry in repo.find_tree(id)?.iter() {
        let Ok(name) = entry.name() else { continue };
        if entry.kind() != Some(git2::ObjectType::Blob) || !name.ends_with(".yaml") {
            continue;
        }
        let blob = repo.find_blob(entry.id())?;
        if blob.size() as u64 > crate::decode::MAX_FILE_BYTES {
            continue;
        }
        out.push((format!("{TEMPLATES_DIR}/{name}"), blob.content().to_vec()));
    }
    Ok((Some(id), out))
}

/// The catalogue's files in the work tree of the store at `root`.
pub fn files_in_dir(root: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root.join(TEMPLATES_DIR)) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".yaml") {
            continue;
        }
        if let Ok(bytes) = crate::decode::read_bounded(&e.path()) {
            out.push((format!("{TEMPLATES_DIR}/{name}"), bytes));
        }
    }
    out.sort();
    out
}
