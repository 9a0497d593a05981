//! The query's unit tests: each filter, the status prefilter, sorts, pages, and the
//! awaiting and overdue filters (with a property test that awaiting and approve agree).

use super::*;
use crate::model::{Approval, Decision, Implementation, sample_change};
use crate::policy::SodCheck;
use crate::workflow::{self, Step};
use proptest::prelude::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const NOW: &str = "2025-03-10T10:00:00Z";

/// Five changes that differ in every field a filter reads.
fn changes() -> Vec<ChangeRequest> {
    let make = |n: u32, f: &dyn Fn(&mut ChangeRequest)| {
        let mut c = sample_change();
        c.id = Some(format!("CHG-2025-{n:03}").parse().unwrap());
        f(&mut c);
        c
    };
    vec![
        make(1, &|c| {
            c.title = Some("delta".into());
            c.priority = Some(Priority::Medium);
            c.request_date = Some(ts("2025-03-03T09:00:00Z"));
        }),
        make(2, &|c| {
            c.title = Some("alpha".into());
            c.status = Some(Status::Closed);
            c.change_type = Some("security".into());
            c.priority = Some(Priority::Critical);
            c.risk_level = Some(RiskLevel::High);
            c.request_date = Some(ts("2025-03-01T09:00:00Z"));
        }),
        make(3, &|c| {
            c.title = Some("charlie".into());
            c.status = Some(Status::Draft);
            c.requester = Some("Bob@Example.com".into());
            c.affected_systems = vec!["db".into(), "api".into()];
            c.priority = Some(Priority::High);
            c.risk_level = Some(RiskLevel::Medium);
            c.request_date = Some(ts("2025-03-05T09:00:00Z"));
        }),
        make(4, &|c| {
            c.title = Some("bravo".into());
            c.affected_systems = vec!["web".into()];
            c.priority = None;
            c.risk_level = None;
            c.request_date = None;
        }),
        make(5, &|c| {
            c.title = Some("echo".into());
            c.status = Some(Status::Approved);
            c.risk_level = Some(RiskLevel::Critical);
            c.request_date = Some(ts("2025-03-02T09:00:00Z"));
        }),
    ]
}

fn ids(q: &Query, policy: &Policy) -> Vec<String> {
    q.select(changes(), policy, ts(NOW), |_| Provenance::default())
        .rows
        .iter()
        .map(|r| r.item.id_text()[9..].to_owned())
        .collect()
}

#[test]
fn each_filter_keeps_only_its_changes() {
    let p = Policy::default_policy();
    let q = |f: &dyn Fn(&mut Query)| {
        let mut q = Query::default();
        f(&mut q);
        ids(&q, &p)
    };
    assert_eq!(q(&|_| {}), ["001", "002", "003", "004", "005"]);
    assert_eq!(
        q(&|q| q.statuses = vec![Status::Draft, Status::Closed]),
        ["002", "003"]
    );
    assert_eq!(q(&|q| q.types = vec!["security".into()]), ["002"]);
    assert_eq!(q(&|q| q.priorities = vec![Priority::Medium]), ["001"]);
    assert_eq!(q(&|q| q.risks = vec![RiskLevel::Low]), ["001"]);
    assert_eq!(
        q(&|q| q.systems = vec!["db".into(), "web".into()]),
        ["003", "004"]
    );
    assert_eq!(
        q(&|q| q.requester = Some("bob@example.COM".into())),
        ["003"]
    );
    // [since, until): a change without a request date is in no period.
    let since = Some(ts("2025-03-02T09:00:00Z"));
    assert_eq!(q(&|q| q.since = since), ["001", "003", "005"]);
    assert_eq!(q(&|q| q.until = since), ["002"]);
    assert_eq!(q(&|q| q.open_only = true), ["001", "003", "004", "005"]);
    // Filters combine.
    assert_eq!(
        q(&|q| {
            q.open_only = true;
            q.systems = vec!["api".into()];
            q.since = since;
        }),
        ["001", "003", "005"]
    );
}

/// The summary skips rows by [`Query::status_may_match`] before decoding them: it must
/// never skip a change [`Query::matches`] keeps.
#[test]
fn the_status_prefilter_never_drops_a_match() {
    let statuses: Vec<Option<Status>> = std::iter::once(None)
        .chain(Status::ALL.iter().copied().map(Some))
        .collect();
    for open_only in [false, true] {
        for wanted in [
            vec![],
            vec![Status::Draft],
            vec![Status::Closed, Status::Approved],
        ] {
            let q = Query {
                statuses: wanted.clone(),
                open_only,
                ..Query::default()
            };
            for s in &statuses {
                let c = ChangeRequest {
                    status: *s,
                    ..sample_change()
                };
                assert_eq!(
                    q.matches(&c),
                    q.status_may_match(*s),
                    "{s:?} with {wanted:?}, open only {open_only}"
                );
            }
        }
    }
}

#[test]
fn sorts_order_by_their_key_then_id_and_reverse_whole() {
    let p = Policy::default_policy();
    let sorted = |s: &str| {
        let q = Query {
            sort: s.parse().unwrap(),
            ..Query::default()
        };
        ids(&q, &p)
    };
    assert_eq!(sorted("id"), ["001", "002", "003", "004", "005"]);
    assert_eq!(sorted("-id"), ["005", "004", "003", "002", "001"]);
    // No request date sorts first, as None does.
    assert_eq!(sorted("requested"), ["004", "002", "005", "001", "003"]);
    assert_eq!(sorted("-requested"), ["003", "001", "005", "002", "004"]);
    // Most severe first, unknown last; ties by id.
    assert_eq!(sorted("priority"), ["002", "003", "001", "005", "004"]);
    assert_eq!(sorted("risk"), ["005", "002", "003", "001", "004"]);
    assert_eq!(sorted("-risk"), ["004", "001", "003", "002", "005"]);
    assert_eq!(sorted("status"), ["005", "002", "003", "001", "004"]);
    assert_eq!(sorted("title"), ["002", "004", "003", "001", "005"]);
    let e = "titel".parse::<Sort>().unwrap_err();
    assert!(e.contains("did you mean `title`"), "{e}");
}

#[test]
fn offset_and_limit_page_after_sorting_and_total_counts_all() {
    let p = Policy::default_policy();
    let page = |offset, limit| {
        let q = Query {
            sort: "-id".parse().unwrap(),
            offset,
            limit,
            ..Query::default()
        };
        let page = q.select(changes(), &p, ts(NOW), |_| Provenance::default());
        let ids: Vec<String> = page
            .rows
            .iter()
            .map(|r| r.item.id_text()[9..].to_owned())
            .collect();
        (ids, page.total)
    };
    assert_eq!(page(0, Some(2)), (vec!["005".into(), "004".into()], 5));
    assert_eq!(page(2, Some(2)), (vec!["003".into(), "002".into()], 5));
    assert_eq!(page(4, Some(2)), (vec!["001".into()], 5));
    assert_eq!(page(9, None), (vec![], 5));
    assert_eq!(page(3, None).0, ["002", "001"]);
}

#[test]
fn awaiting_lists_the_roles_a_person_may_approve_now() {
    let mut p = Policy::default_policy();
    p.roles
        .get_mut("change-manager")
        .unwrap()
        .push("em@example.com".into());
    let mut c = sample_change();
    c.priority = Some(Priority::Medium);
    let awaiting = |c: &ChangeRequest, who: &str, prov: &Provenance| {
        let q = Query {
            awaiting: Some(who.into()),
            ..Query::default()
        };
        q.select(vec![c], &p, ts(NOW), |_| prov.clone())
            .rows
            .first()
            .map(|r| r.awaiting.clone())
            .unwrap_or_default()
    };
    let none = Provenance::default();
    assert_eq!(
        awaiting(&c, "em@example.com", &none),
        ["engineering-manager", "change-manager"]
    );
    assert_eq!(
        awaiting(&c, "alice@example.com", &none),
        Vec::<String>::new()
    );
    assert_eq!(awaiting(&c, "bob@example.com", &none), Vec::<String>::new());
    // Once she approved in one role, not in the other: one person, one role.
    c.approvals.push(Approval::new(
        "em@example.com".into(),
        "engineering-manager".into(),
        Decision::Approved,
        ts("2025-03-02T09:00:00Z"),
    ));
    assert_eq!(awaiting(&c, "em@example.com", &none), Vec::<String>::new());
    assert_eq!(awaiting(&c, "cm@example.com", &none), ["change-manager"]);
    // History shows cm wrote the content: not hers to approve.
    let cm_wrote = Provenance {
        content_author: Some(("cm@example.com".into(), "abcdef12".into())),
        ..Provenance::default()
    };
    assert_eq!(
        awaiting(&c, "cm@example.com", &cm_wrote),
        Vec::<String>::new()
    );
}

#[test]
fn overdue_counts_the_timeout_from_submission_while_approvals_are_missing() {
    let p = Policy::default_policy();
    // Low priority: 7 days; requested 1 March 09:00.
    let c = sample_change();
    let overdue = |c: &ChangeRequest, prov: &Provenance, now: &str| {
        let q = Query {
            overdue: true,
            ..Query::default()
        };
        q.select(vec![c], &p, ts(now), |_| prov.clone())
            .rows
            .first()
            .and_then(|r| r.overdue_since)
    };
    let none = Provenance::default();
    let due = ts("2025-03-08T09:00:00Z");
    assert_eq!(overdue(&c, &none, "2025-03-08T09:00:00Z"), None);
    assert_eq!(overdue(&c, &none, "2025-03-08T09:00:01Z"), Some(due));
    // Submitted later than requested: counted from the submission.
    let submitted = Provenance {
        submitted_at: Some(ts("2025-03-05T09:00:00Z")),
        ..Provenance::default()
    };
    assert_eq!(overdue(&c, &submitted, "2025-03-10T09:00:00Z"), None);
    assert_eq!(
        overdue(&c, &submitted, "2025-03-12T09:00:01Z"),
        Some(ts("2025-03-12T09:00:00Z"))
    );
    // Approved, or a draft: nothing pending.
    let mut approved = c.clone();
    approved.status = Some(Status::Approved);
    assert_eq!(overdue(&approved, &none, "2025-04-01T00:00:00Z"), None);
    let mut draft = c.clone();
    draft.status = Some(Status::Draft);
    assert_eq!(overdue(&draft, &none, "2025-04-01T00:00:00Z"), None);
}

const PEOPLE: [&str; 5] = [
    "alice@example.com",
    "em@example.com",
    "cm@example.com",
    "sec1@example.com",
    "bob@example.com",
];
const ROLES: [&str; 4] = [
    "change-manager",
    "engineering-manager",
    "security-team",
    "security-team-lead",
];

/// A policy (the default, its roles' members and its segregation of duties drawn), a
/// change (status, model, priority, requester, approvals, implementer drawn) and what
/// history says of it.
fn world() -> impl Strategy<Value = (Policy, ChangeRequest, Provenance)> {
    let person = || 0..PEOPLE.len();
    let approval = (person(), 0..ROLES.len(), 0..3usize, 0..48i64);
    (
        (
            proptest::collection::vec(0u8..32, ROLES.len()),
            proptest::collection::vec(any::<bool>(), 5),
        ),
        (
            0..Status::ALL.len(),
            0..3usize,
            0..Priority::ALL.len(),
            person(),
            proptest::collection::vec(approval, 0..5),
            proptest::option::of(person()),
        ),
        (
            proptest::option::of(person()),
            proptest::option::of(person()),
        ),
    )
        .prop_map(|((members, sod), change, (creator, author))| {
            let mut p = Policy::default_policy();
            for (role, mask) in ROLES.iter().zip(members) {
                let who = (0..PEOPLE.len()).filter(|i| mask & (1 << i) != 0);
                p.roles
                    .insert((*role).into(), who.map(|i| PEOPLE[i].into()).collect());
            }
            for (check, forbidden) in SodCheck::ALL.iter().zip(sod) {
                p.segregation_of_duties.forbid(*check, forbidden);
            }
            let (status, model, priority, requester, approvals, implementer) = change;
            let mut c = sample_change();
            c.status = Some(Status::ALL[status]);
            c.change_model = Some(
                [
                    ChangeModel::Normal,
                    ChangeModel::Emergency,
                    ChangeModel::Standard,
                ][model],
            );
            c.priority = Some(Priority::ALL[priority]);
            c.requester = Some(PEOPLE[requester].into());
            c.approvals = approvals
                .into_iter()
                .map(|(by, role, d, h)| {
                    Approval::new(
                        PEOPLE[by].into(),
                        ROLES[role].into(),
                        [Decision::Approved, Decision::Rejected, Decision::Withdrawn][d],
                        ts("2025-03-02T00:00:00Z") + SignedDuration::from_hours(h),
                    )
                })
                .collect();
            c.implementation = implementer.map(|i| Implementation {
                implementer: Some(PEOPLE[i].into()),
                ..Default::default()
            });
            let prov = Provenance {
                creator: creator.map(|i| PEOPLE[i].into()),
                content_author: author.map(|i| (PEOPLE[i].into(), "0123abcd".into())),
                ..Provenance::default()
            };
            (p, c, prov)
        })
}

fn approve(
    c: &ChangeRequest,
    p: &Policy,
    who: &str,
    role: Option<&str>,
    prov: &Provenance,
) -> Result<String> {
    let step = Step::Approve {
        role: role.map(str::to_owned),
        comment: None,
        conditions: vec![],
    };
    workflow::apply_with(c, p, who, ts(NOW), step, prov).map(|(_, t)| t.role.unwrap_or_default())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    /// Whoever the awaiting query lists, approve accepts, for exactly the roles listed;
    /// whoever approve accepts, the query lists; and approve infers the role when one is
    /// open (issue 26: list --awaiting-me showed a change approve then refused).
    #[test]
    fn the_awaiting_query_and_approve_agree((p, c, prov) in world()) {
        for who in PEOPLE {
            let q = Query { awaiting: Some(who.into()), ..Query::default() };
            let page = q.select(vec![&c], &p, ts(NOW), |_| prov.clone());
            let listed: Vec<String> = page.rows.first().map(|r| r.awaiting.clone()).unwrap_or_default();
            prop_assert_eq!(page.rows.is_empty(), listed.is_empty());
            let accepted: Vec<String> = p
                .required_roles(&c)
                .into_iter()
                .chain(ROLES.iter().map(|r| (*r).to_owned()))
                .fold(Vec::new(), |mut v, r| { if !v.contains(&r) { v.push(r) } v })
                .into_iter()
                .filter(|r| approve(&c, &p, who, Some(r), &prov).is_ok())
                .collect();
            let (mut l, mut a) = (listed.clone(), accepted);
            l.sort();
            a.sort();
            prop_assert_eq!(&l, &a, "{} on {:?}", who, c);
            let inferred = approve(&c, &p, who, None, &prov);
            match listed.as_slice() {
                [] => prop_assert!(inferred.is_err()),
                [one] => prop_assert_eq!(inferred.ok(), Some(one.clone())),
                _ => {
                    let ambiguous = matches!(inferred, Err(crate::Error::Ambiguous { .. }));
                    prop_assert!(ambiguous, "{:?}", inferred);
                }
            }
        }
    }
}
