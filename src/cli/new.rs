//! `chg new`: file a change request.

use std::path::PathBuf;
use std::process::ExitCode;

use chg::Error;
use chg::model::{ChangeModel, ChangeRequest, Priority, RiskLevel, Urgency};
use chg::policy::Policy;
use chg::store::Store;
use clap::Args;

use super::{CmdResult, interactive, ui::Ui};

/// File a new change request and print its id.
///
/// Give fields as flags, in a YAML file (--from; flags win), or, at a terminal, answer
/// prompts for the required fields that are missing. Without a terminal, a missing field
/// is an error that lists every one. The change is pending approval unless --draft.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// One-line title.
    #[arg(long)]
    title: Option<String>,
    /// What changes.
    #[arg(long)]
    description: Option<String>,
    /// Why it is needed.
    #[arg(long = "business-justification", visible_alias = "justification")]
    justification: Option<String>,
    /// Change type (one of the policy's change_types).
    #[arg(long = "change-type", visible_alias = "type", value_name = "TYPE")]
    change_type: Option<String>,
    /// Change model.
    #[arg(long = "change-model", visible_alias = "model", value_parser = ["standard", "normal", "emergency"])]
    model: Option<String>,
    /// Priority: critical, high, medium, low.
    #[arg(long, value_parser = ["critical", "high", "medium", "low"])]
    priority: Option<String>,
    /// Urgency: emergency, high, medium, low.
    #[arg(long, value_parser = ["emergency", "high", "medium", "low"])]
    urgency: Option<String>,
    /// Risk level: low, medium, high, critical.
    #[arg(long = "risk-level", visible_alias = "risk", value_parser = ["low", "medium", "high", "critical"])]
    risk_level: Option<String>,
    /// An affected system (repeatable, or comma-separated).
    #[arg(long = "affected-systems", visible_aliases = ["system", "systems"], value_name = "SYSTEM")]
    systems: Vec<String>,
    /// Who or what is affected.
    #[arg(long)]
    impact_scope: Option<String>,
    /// How it will be done.
    #[arg(long, visible_alias = "plan")]
    implementation_plan: Option<String>,
    /// How it will be undone.
    #[arg(long, visible_alias = "rollback")]
    rollback_plan: Option<String>,
    /// Whether testing is part of the plan (alone: true).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    testing_required: Option<bool>,
    /// How it will be tested (implies --testing-required true).
    #[arg(long)]
    test_plan: Option<String>,
    /// Where it will be tested.
    #[arg(long)]
    test_environment: Option<String>,
    /// Read fields from a YAML file (same keys as a change file).
    #[arg(long, value_name = "FILE.yaml")]
    from: Option<PathBuf>,
    /// File it as a draft (may be incomplete; `chg submit` later).
    #[arg(long)]
    draft: bool,
    /// Shorthand for --model emergency.
    #[arg(long, conflicts_with_all = ["standard", "model"])]
    emergency: bool,
    /// Shorthand for --model standard; a standard change is filed from a template (--template).
    #[arg(long, conflicts_with = "model")]
    standard: bool,
    /// File a standard change from the policy's catalogue (policy/templates/NAME.yaml):
    /// the template fixes its content; flags may set only the template's variable fields.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["emergency", "model"])]
    template: Option<String>,
    /// An answer to the policy's risk questionnaire (repeatable): ID=yes or ID=no.
    #[arg(long = "answer", value_name = "ID=yes|no")]
    answers: Vec<String>,
    /// Never prompt, even at a terminal.
    #[arg(long, visible_alias = "yes")]
    no_input: bool,
}

fn from_file(path: &std::path::Path) -> Result<ChangeRequest, Error> {
    let bytes = chg::decode::read_bounded(path)
        .map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?;
    let file = path.display().to_string();
    let d = chg::decode::decode_bytes(&file, &bytes);
    let errors: Vec<_> = d
        .findings
        .iter()
        .filter(|f| f.is_error())
        .cloned()
        .collect();
    if !errors.is_empty() {
        return Err(Error::Invalid {
            summary: format!("{file} has {} problem(s)", errors.len()),
            findings: errors,
        });
    }
    let c = d.change;
    let managed = [
        ("approvals", !c.approvals.is_empty()),
        ("implementation", c.implementation.is_some()),
        ("review", c.review.is_some()),
        ("cancellation", c.cancellation.is_some()),
        ("deployments", !c.deployments.is_empty()),
    ];
    if let Some((name, _)) = managed.iter().find(|(_, set)| *set) {
        return Err(Error::Usage(format!(
            "{file} has `{name}`, which chg writes as the change moves; remove it"
        )));
    }
    Ok(c)
}

/// Records `--answer ID=yes|no` answers; at a terminal, asks the questions still open.
pub(super) fn answer(
    change: &mut ChangeRequest,
    policy: &Policy,
    given: &[String],
    ask: bool,
) -> Result<(), Error> {
    let Some(q) = &policy.risk else {
        if given.is_empty() {
            return Ok(());
        }
        return Err(Error::Usage(
            "--answer: the policy has no risk questionnaire".into(),
        ));
    };
    let mut answers = change.risk_assessment.clone().unwrap_or_default();
    for g in given {
        let Some((id, value)) = g.split_once('=') else {
            return Err(Error::Usage(format!(
                "--answer `{g}`: write ID=yes or ID=no"
            )));
        };
        if !q.questions.iter().any(|x| x.id == id) {
            let hint = chg::finding::suggest(id, q.questions.iter().map(|x| x.id.as_str()))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(Error::Usage(format!(
                "--answer: `{id}` is not a question of the policy's risk questionnaire{hint}"
            )));
        }
        let yes = match value.to_ascii_lowercase().as_str() {
            "yes" | "y" | "true" => true,
            "no" | "n" | "false" => false,
            _ => {
                return Err(Error::Usage(format!(
                    "--answer {id}: `{value}` is not yes or no"
                )));
            }
        };
        answers.insert(id.to_owned(), yes);
    }
    if ask {
        for x in &q.questions {
            if !answers.contains_key(&x.id) {
                answers.insert(x.id.clone(), super::prompt::confirm(&x.ask, false)?);
            }
        }
    }
    if !answers.is_empty() {
        change.risk_assessment = Some(answers);
    }
    Ok(())
}

/// The content fields given as flags.
fn given_fields(a: &NewArgs) -> Vec<&'static str> {
    [
        ("title", a.title.is_some()),
        ("description", a.description.is_some()),
        ("business_justification", a.justification.is_some()),
        ("change_type", a.change_type.is_some()),
        ("priority", a.priority.is_some()),
        ("urgency", a.urgency.is_some()),
        ("risk_level", a.risk_level.is_some()),
        ("affected_systems", !a.systems.is_empty()),
        ("impact_scope", a.impact_scope.is_some()),
        ("implementation_plan", a.implementation_plan.is_some()),
        ("rollback_plan", a.rollback_plan.is_some()),
        ("testing_required", a.testing_required.is_some()),
        ("test_plan", a.test_plan.is_some()),
        ("test_environment", a.test_environment.is_some()),
    ]
    .into_iter()
    .filter_map(|(f, given)| given.then_some(f))
    .collect()
}

/// Makes `change` a standard change from template `name`: its fixed fields copied, flags
/// allowed for its variable fields only.
fn from_template(
    change: &mut ChangeRequest,
    policy: &Policy,
    name: &str,
    given: &[&str],
) -> Result<(), Error> {
    let Some(t) = policy.templates.get(name) else {
        let hint = chg::finding::suggest(name, policy.templates.keys().map(String::as_str))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        return Err(Error::Usage(format!(
            "no template `{name}` in the policy's catalogue{hint} (chg templates lists them)"
        )));
    };
    let fixed: Vec<&&str> = given
        .iter()
        .filter(|f| !t.variable.iter().any(|v| v == **f))
        .collect();
    if !fixed.is_empty() {
        return Err(Error::Usage(format!(
            "template `{name}` fixes {}; flags may set only its variable fields ({})",
            fixed
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", "),
            t.variable.join(", ")
        )));
    }
    for f in &t.fixed_fields {
        change.copy_field(&t.fixed, f);
    }
    change.change_model = Some(ChangeModel::Standard);
    change.template = Some(name.to_owned());
    change.template_digest = Some(t.digest.clone());
    Ok(())
}

fn merge(a: &NewArgs) -> Result<ChangeRequest, Error> {
    let mut c = match &a.from {
        Some(path) => from_file(path)?,
        None => ChangeRequest::default(),
    };
    // Identity, dates and status are chg's to set.
    c.id = None;
    c.requester = None;
    c.request_date = None;
    c.status = None;
    let pairs: [(&str, Option<&String>); 13] = [
        ("title", a.title.as_ref()),
        ("description", a.description.as_ref()),
        ("business_justification", a.justification.as_ref()),
        ("change_type", a.change_type.as_ref()),
        ("change_model", a.model.as_ref()),
        ("priority", a.priority.as_ref()),
        ("urgency", a.urgency.as_ref()),
        ("risk_level", a.risk_level.as_ref()),
        ("impact_scope", a.impact_scope.as_ref()),
        ("implementation_plan", a.implementation_plan.as_ref()),
        ("rollback_plan", a.rollback_plan.as_ref()),
        ("test_plan", a.test_plan.as_ref()),
        ("test_environment", a.test_environment.as_ref()),
    ];
    for (field, value) in pairs {
        if let Some(v) = value {
            c.set_field(field, v).map_err(Error::Usage)?;
        }
    }
    if !a.systems.is_empty() {
        c.set_field("affected_systems", &a.systems.join(","))
            .map_err(Error::Usage)?;
    }
    if let Some(t) = a.testing_required {
        c.testing_required = Some(t);
    } else if c.test_plan.is_some() && c.testing_required.is_none() {
        c.testing_required = Some(true);
    }
    if a.emergency {
        c.change_model = Some(ChangeModel::Emergency);
        c.urgency.get_or_insert(Urgency::Emergency);
    } else if a.standard {
        c.change_model = Some(ChangeModel::Standard);
    }
    c.change_model.get_or_insert(ChangeModel::Normal);
    Ok(c)
}

/// Asks for each missing required field. Only called at a terminal.
fn prompt_missing(c: &mut ChangeRequest, policy: &Policy) -> Result<(), Error> {
    use super::prompt;
    // The level the questionnaire's answers score: the lowest the policy accepts, so the
    // only levels offered, and the default.
    let scored = policy
        .risk
        .as_ref()
        .zip(c.risk_assessment.as_ref())
        .map(|(q, answers)| q.level(q.score(answers)));
    for field in &policy.required_fields {
        if c.has_field(field) || field == "requester" {
            continue;
        }
        let names = |all: Vec<&str>| all.into_iter().map(str::to_owned).collect::<Vec<_>>();
        // No default where pressing Enter would choose for the person (type, priority,
        // urgency); never the most severe item.
        let (choices, default): (Option<Vec<String>>, Option<String>) = match field.as_str() {
            "change_type" => (Some(policy.change_types.clone()), None),
            "change_model" => (Some(names(ChangeModel::names())), Some("normal".into())),
            "priority" => (Some(names(Priority::names())), None),
            "urgency" => (Some(names(Urgency::names())), None),
            "risk_level" => match scored {
                Some(floor) => (
                    Some(
                        RiskLevel::ALL
                            .iter()
                            .filter(|l| **l >= floor)
                            .map(ToString::to_string)
                            .collect(),
                    ),
                    Some(floor.to_string()),
                ),
                None => (Some(names(RiskLevel::names())), None),
            },
            _ => (None, None),
        };
        let label = match (field.as_str(), scored) {
            ("risk_level", Some(floor)) => {
                format!("risk level (your answers score {floor}; this or higher)")
            }
            _ => field.replace('_', " "),
        };
        let value = match choices {
            Some(items) => prompt::choose(&label, &items, default.as_deref())?,
            None if field == "affected_systems" => {
                prompt::text(&format!("{label} (comma-separated)"))?
            }
            None => prompt::text(&label)?,
        };
        c.set_field(field, &value).map_err(Error::Usage)?;
    }
    // Asked after the loop: the change type may only just have been chosen.
    let testing = c
        .change_type
        .as_deref()
        .is_some_and(|t| policy.testing_required_for(t));
    if testing && !c.has_field("test_plan") {
        let plan = prompt::text("test plan (required for this change type)")?;
        c.test_plan = Some(plan);
        c.testing_required = Some(true);
    }
    Ok(())
}

/// A change type as the prompt takes it: a policy type named exactly (any case) or by a
/// unique beginning (`config` for `configuration`); anything else is left for the rules to
/// report with their did-you-mean.
fn expand_type(c: &mut ChangeRequest, policy: &Policy) {
    if let Some(t) = &c.change_type
        && let Some(full) = super::prompt::unique_match(&policy.change_types, t)
    {
        c.change_type = Some(full.to_owned());
    }
}

/// Keeps what was typed at the prompts when filing fails, so nothing typed is lost: the
/// file to resume from, under `.git/chg/`.
fn keep_typed(store: &Store, change: &ChangeRequest) -> Option<String> {
    let dir = store.repo().path().join("chg");
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join("new.yaml");
    let mut kept = change.clone();
    kept.id = None;
    kept.status = None;
    let text = chg::edit::render_new(&kept).ok()?;
    chg::store::commit::atomic_write(&path, text.as_bytes()).ok()?;
    let shown = path.strip_prefix(store.root()).unwrap_or(&path);
    Some(shown.display().to_string())
}

pub fn run(ui: &Ui, store: &Store, policy: &Policy, a: NewArgs) -> CmdResult {
    run_with(ui, store, policy, a, None)
}

/// `chg new`, carrying a policy proposal when `proposal` is given (`chg policy propose`).
pub fn run_with(
    ui: &Ui,
    store: &Store,
    policy: &Policy,
    a: NewArgs,
    proposal: Option<std::collections::BTreeMap<String, String>>,
) -> CmdResult {
    let mut change = merge(&a)?;
    let ask = !a.no_input && a.template.is_none() && change.template.is_none() && interactive();
    answer(&mut change, policy, &a.answers, ask)?;
    let template = a.template.clone().or_else(|| change.template.clone());
    if let Some(name) = &template {
        from_template(&mut change, policy, name, &given_fields(&a))?;
    } else if change.model() == ChangeModel::Standard {
        return Err(Error::Usage(
            "a standard change is filed from a template of the policy: chg new --template NAME (chg templates lists them); self-declared standard changes are not pre-approved".into(),
        ));
    }
    if proposal.is_some() {
        if change.model() != ChangeModel::Normal {
            return Err(Error::Usage(
                "a policy change is a normal change: approved before it is applied (drop --standard, --emergency or --model)".into(),
            ));
        }
        change.proposed_policy = proposal;
        change.policy_base = store.committed_policy_tree()?;
    }
    expand_type(&mut change, policy);
    // At a terminal, a declared level below what the answers score is asked again rather
    // than refused after every other question.
    if ask
        && let (Some(q), Some(answers), Some(declared)) =
            (&policy.risk, &change.risk_assessment, change.risk_level)
        && declared < q.level(q.score(answers))
    {
        eprintln!(
            "chg: your answers score {}, above the risk level {declared} given",
            q.level(q.score(answers))
        );
        change.risk_level = None;
    }
    let mut prompted = ask;
    if !a.draft && !a.no_input && interactive() {
        let missing = chg::validate::content_problems(&change, policy);
        if !missing.is_empty() {
            prompt_missing(&mut change, policy)?;
            prompted = true;
        }
    }
    if let Some(q) = &policy.risk
        && !a.draft
        && change.template.is_none()
        && change.risk_assessment.is_none()
    {
        let first = q.questions.first().map_or("QUESTION", |x| x.id.as_str());
        return Err(Error::Usage(format!(
            "the policy's risk questionnaire is not answered ({}); give --answer {first}=yes|no for each question (chg new asks them at a terminal), or file a --draft",
            q.questions
                .iter()
                .map(|x| x.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let typed = prompted.then(|| change.clone());
    let o = store
        .create(&super::context::for_store(ui, store)?, change, a.draft)
        .inspect_err(|_| {
            // What was typed at the prompts survives a refusal: the next run resumes it.
            if let Some(kept) = typed.as_ref().and_then(|c| keep_typed(store, c)) {
                eprintln!(
                    "chg: what you typed is kept in {kept}; fix what is said below and run `chg new --from {kept}`"
                );
            }
        })
        .map_err(|e| match e {
            Error::Invalid { summary, findings } if summary.starts_with("missing required") => {
                Error::Invalid {
                    summary: format!(
                        "{summary} (give them as flags named like the fields, such as --business-justification, with --from FILE, or file a --draft)"
                    ),
                    findings,
                }
            }
            e => e,
        })?;
    // Resumed from what a failed run kept: it is filed now.
    if let Some(from) = &a.from
        && from.canonicalize().ok() == store.repo().path().join("chg/new.yaml").canonicalize().ok()
    {
        let _ = std::fs::remove_file(from);
    }
    let id = o.change.id_text();
    ui.out(&format!("{id}\n"))?;
    // stdout stays the id alone for scripts; the file is for the person.
    eprintln!("chg: filed {}", store.repo_path(&o.rel));
    Ok(ExitCode::SUCCESS)
}
