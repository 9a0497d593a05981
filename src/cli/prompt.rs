//! Questions at a terminal, one line each, read in the terminal's own line mode: Ctrl-C
//! interrupts chg (nothing has been written while it asks) and Ctrl-D ends the input and
//! aborts, as in any shell tool. (A raw-mode prompt library swallowed both, leaving no way
//! out but answering.)

use std::io::{BufRead, Write};

use chg::error::Error;

/// One answer line; `None` at the end of input (Ctrl-D).
fn read_answer(question: &str) -> Result<Option<String>, Error> {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question}");
    let _ = err.flush();
    let mut line = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::io("cannot read the answer", e))?;
    Ok((n > 0).then(|| line.trim().to_owned()))
}

fn aborted() -> Error {
    Error::Usage("input ended before every question was answered; nothing was changed".into())
}

/// A required text answer.
pub fn text(label: &str) -> Result<String, Error> {
    loop {
        let answer = read_answer(&format!("{label}: "))?.ok_or_else(aborted)?;
        if !answer.is_empty() {
            return Ok(answer);
        }
        eprintln!("  an answer is required (Ctrl-D to give up)");
    }
}

/// One of `items` (by name, unique prefix or number); an empty answer takes `default`, or
/// asks again where there is none (a default is a suggestion, never the most severe choice
/// made for someone who pressed Enter).
pub fn choose(label: &str, items: &[String], default: Option<&str>) -> Result<String, Error> {
    if items.is_empty() {
        return text(label);
    }
    loop {
        let question = match default {
            Some(d) => format!("{label} [{}] (default {d}): ", items.join(", ")),
            None => format!("{label} [{}]: ", items.join(", ")),
        };
        let answer = read_answer(&question)?.ok_or_else(aborted)?;
        if answer.is_empty() {
            match default {
                Some(d) => return Ok(d.to_owned()),
                None => {
                    eprintln!("  choose one (Ctrl-D to give up)");
                    continue;
                }
            }
        }
        if let Ok(n) = answer.parse::<usize>()
            && (1..=items.len()).contains(&n)
        {
            return Ok(items[n - 1].clone());
        }
        match unique_match(items, &answer) {
            Some(one) => return Ok(one.to_owned()),
            None => eprintln!(
                "  `{}` is not one of: {}",
                chg::text::one_line(&answer),
                items.join(", ")
            ),
        }
    }
}

/// The item `answer` names: equal ignoring case, else the only one it begins.
pub fn unique_match<'a>(items: &'a [String], answer: &str) -> Option<&'a str> {
    if let Some(exact) = items.iter().find(|i| i.eq_ignore_ascii_case(answer)) {
        return Some(exact);
    }
    let lower = answer.to_ascii_lowercase();
    let mut matching = items
        .iter()
        .filter(|i| !lower.is_empty() && i.to_ascii_lowercase().starts_with(&lower));
    match (matching.next(), matching.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

/// Yes or no; empty takes `default`.
pub fn confirm(label: &str, default: bool) -> Result<bool, Error> {
    let hint = if default { "[Y/n]" } else { "[y/N]" };
    loop {
        let answer = read_answer(&format!("{label} {hint} "))?.ok_or_else(aborted)?;
        match answer.to_ascii_lowercase().as_str() {
            "" => return Ok(default),
            "y" | "yes" => return Ok(true),
            "n" | "no" => return Ok(false),
            _ => eprintln!("  answer y or n"),
        }
    }
}
