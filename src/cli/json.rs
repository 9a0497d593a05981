//! `--json[=FIELDS]` and `--jq EXPR` on every command that prints data, as gh has them:
//! the fields narrow each object, the jq expression (jaq, a maintained jq in Rust) does
//! the rest.

use chg::Error;
use clap::Args;
use serde_json::Value;

/// The JSON switches a data command takes.
#[derive(Debug, Args, Clone, Default)]
pub struct JsonArgs {
    /// Print JSON; with FIELDS (--json=id,title,status), only those fields of each object.
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "",
        value_name = "FIELDS"
    )]
    json: Option<String>,
    /// Filter the JSON with a jq expression (implies --json), like gh --jq:
    /// --jq '.[] | select(.status == "approved") | .id'.
    #[arg(long, value_name = "EXPR")]
    jq: Option<String>,
}

impl JsonArgs {
    /// Whether JSON was asked for.
    pub fn on(&self) -> bool {
        self.json.is_some() || self.jq.is_some()
    }
}

/// The JSON to print for `value`, narrowed and filtered as `args` ask (none: all of it).
pub fn shape(args: Option<&JsonArgs>, value: Value) -> Result<String, Error> {
    let Some(args) = args else {
        return pretty(&value);
    };
    let value = match args.json.as_deref().filter(|f| !f.is_empty()) {
        Some(fields) => select(value, &fields.split(',').map(str::trim).collect::<Vec<_>>())?,
        None => value,
    };
    match &args.jq {
        Some(expr) => jq(expr, &value),
        None => pretty(&value),
    }
}

fn pretty(value: &Value) -> Result<String, Error> {
    serde_json::to_string_pretty(value)
        .map(|t| t + "\n")
        .map_err(|e| Error::Internal(format!("cannot write JSON: {e}")))
}

/// Keeps `fields` of each object (of an array of objects, or of one object).
fn select(value: Value, fields: &[&str]) -> Result<Value, Error> {
    let keep = |v: Value| -> Result<Value, Error> {
        let Value::Object(map) = v else {
            return Ok(v);
        };
        for f in fields {
            if !map.contains_key(*f) {
                let names: Vec<&str> = map.keys().map(String::as_str).collect();
                let hint = chg::finding::suggest(f, names.iter().copied())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(Error::Usage(format!(
                    "--json: no field `{f}`{hint} (fields: {})",
                    names.join(", ")
                )));
            }
        }
        Ok(Value::Object(
            map.into_iter()
                .filter(|(k, _)| fields.contains(&k.as_str()))
                .collect(),
        ))
    };
    match value {
        Value::Array(items) => Ok(Value::Array(
            items.into_iter().map(keep).collect::<Result<_, _>>()?,
        )),
        v => keep(v),
    }
}

/// Runs `expr` over `value`: one line per result, strings bare (as jq -r and gh --jq do).
fn jq(expr: &str, value: &Value) -> Result<String, Error> {
    use jaq_core::load::{Arena, File, Loader};
    use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
    let bad = |what: &str| Error::Usage(format!("--jq `{expr}`: {what}"));
    let text = serde_json::to_vec(value).map_err(|e| Error::Internal(e.to_string()))?;
    let input = jaq_json::read::parse_single(&text).map_err(|e| bad(&e.to_string()))?;
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader
        .load(
            &arena,
            File {
                code: expr,
                path: (),
            },
        )
        .map_err(|_| bad("not a jq expression"))?;
    let filter = Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|_| bad("uses something jq does not define"))?;
    let ctx = Ctx::<data::JustLut<jaq_json::Val>>::new(&filter.lut, Vars::new([]));
    let mut out = String::new();
    for v in filter.id.run((ctx, input)).map(unwrap_valr) {
        let text = v.map_err(|e| bad(&e.to_string()))?.to_string();
        // A string result prints bare; anything else as JSON.
        match serde_json::from_str::<String>(&text) {
            Ok(plain) if text.starts_with('"') => out.push_str(&plain),
            _ => out.push_str(&text),
        }
        out.push('\n');
    }
    Ok(out)
}
