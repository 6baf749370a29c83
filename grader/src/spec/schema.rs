//! The JSON Schema (draft 7) of the spec format and of mutants files, built
//! from the tables of [`super::lang`], every key with its description.
//! `cargo grade schema` prints it; `specs/spec.schema.json` is its committed
//! copy, which TOML editor tooling (taplo, Even Better TOML) uses to
//! complete and validate spec files.
//!
//! A schema cannot say everything `cargo grade check` does (unique test
//! names, processes and variables used before they exist, regexes that
//! compile): it covers keys, types, ranges, required keys and one action
//! per step.

use nix::sys::signal::Signal;
use serde_json::{json, Map, Value};

use super::lang::{self, ActionDef, Key, Ty};

const DRAFT: &str = "http://json-schema.org/draft-07/schema#";

/// The schema of a task spec (`specs/<slug>.toml`).
pub fn spec() -> Value {
    let mut schema = object(lang::SPEC_KEYS);
    let root = schema.as_object_mut().expect("an object schema");
    root.insert("$schema".into(), json!(DRAFT));
    root.insert("title".into(), json!("cargo-grade task spec"));
    root.insert(
        "description".into(),
        json!("A task's tests for cargo-grade: specs/README.md is the reference; `cargo grade check` validates what a schema cannot."),
    );
    let mut definitions = Map::new();
    definitions.insert("step".into(), step());
    root.insert("definitions".into(), Value::Object(definitions));
    schema
}

/// The schema of `solutions/<slug>/mutants.toml`.
pub fn mutants() -> Value {
    let mut schema = object(lang::MUTANTS_KEYS);
    let root = schema.as_object_mut().expect("an object schema");
    root.insert("$schema".into(), json!(DRAFT));
    root.insert("title".into(), json!("cargo-grade mutants file"));
    root.insert(
        "description".into(),
        json!("Known-buggy variants of a task's reference solution, each a find/replace that tests must catch."),
    );
    schema
}

/// Pretty-printed, with a final newline (as committed).
pub fn to_text(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a schema serialises");
    text.push('\n');
    text
}

/// An object with exactly these keys.
fn object(keys: &[Key]) -> Value {
    let properties: Map<String, Value> = keys.iter().map(|k| (k.name.into(), key(k))).collect();
    let required: Vec<&str> = keys.iter().filter(|k| k.required).map(|k| k.name).collect();
    let mut o = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        o["required"] = json!(required);
        // taplo's completion inserts these keys with a new table.
        o["x-taplo"] = json!({ "initKeys": required });
    }
    o
}

/// A key's schema: its type's, with its description and default.
fn key(k: &Key) -> Value {
    let mut v = ty(&k.ty);
    let o = v.as_object_mut().expect("an object schema");
    o.insert("description".into(), json!(k.doc));
    let default = match k.default {
        lang::Default::None => None,
        lang::Default::Int(n) => Some(json!(n)),
        lang::Default::Str(s) => Some(json!(s)),
        lang::Default::Bool(b) => Some(json!(b)),
        lang::Default::Float(x) => Some(json!(x)),
    };
    if let Some(d) = default {
        o.insert("default".into(), d);
    }
    v
}

fn ty(t: &Ty) -> Value {
    match t {
        Ty::Str => json!({ "type": "string" }),
        Ty::Name => json!({ "type": "string", "minLength": 1 }),
        Ty::Ident => json!({ "type": "string", "pattern": "^[A-Za-z0-9_-]+$" }),
        Ty::Regex => json!({ "type": "string" }),
        Ty::Signal => signal(),
        Ty::Signals => json!({ "type": "array", "items": signal(), "minItems": 1 }),
        Ty::OneOf(values) => json!({ "type": "string", "enum": values }),
        Ty::PeerKind => json!({ "type": "string", "enum": lang::peer_kinds() }),
        Ty::True => json!({ "type": "boolean", "enum": [true] }),
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::Int { min, max } => {
            let mut v = json!({ "type": "integer" });
            if *min != i64::MIN {
                v["minimum"] = json!(min);
            }
            if *max != i64::MAX {
                v["maximum"] = json!(max);
            }
            v
        }
        Ty::Probability => json!({ "type": "number", "minimum": 0, "maximum": 1 }),
        Ty::Strings => json!({ "type": "array", "items": { "type": "string" } }),
        Ty::StrOrStrings => json!({
            "anyOf": [
                { "type": "string" },
                { "type": "array", "items": { "type": "string" } }
            ]
        }),
        Ty::NonEmptyStrings => {
            json!({ "type": "array", "items": { "type": "string" }, "minItems": 1 })
        }
        Ty::NumberOrVariable => json!({ "type": ["integer", "string"] }),
        Ty::Table(keys) => object(keys),
        Ty::Tables(keys) => json!({ "type": "array", "minItems": 1, "items": object(keys) }),
        Ty::Steps => {
            json!({ "type": "array", "minItems": 1, "items": { "$ref": "#/definitions/step" } })
        }
    }
}

/// A signal name as the grader reads it: `SIGINT`, `INT` or `int`. The
/// canonical names are offered for completion; the pattern accepts every
/// spelling of them.
fn signal() -> Value {
    let names: Vec<&str> = Signal::iterator().map(|s| s.as_str()).collect();
    let any_case = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
                } else {
                    c.to_string()
                }
            })
            .collect()
    };
    let bare: Vec<String> = names.iter().map(|n| any_case(&n[3..])).collect();
    let pattern = format!("^\\s*(?:{})?(?:{})\\s*$", any_case("SIG"), bare.join("|"));
    json!({
        "type": "string",
        "anyOf": [
            { "enum": names },
            { "pattern": pattern },
        ],
    })
}

/// A step: every action and option is a property (so that an editor
/// completes them and an unknown key is reported as such); exactly one
/// action is present; and, per action, only the options it takes, with
/// those it needs.
fn step() -> Value {
    let mut properties = Map::new();
    for a in lang::ACTIONS {
        properties.insert(a.name.into(), action_value(a));
    }
    for o in lang::OPTIONS {
        properties.insert(o.name.into(), key(o));
    }
    let one_action: Vec<Value> = lang::ACTIONS
        .iter()
        .map(|a| json!({ "title": a.name, "required": [a.name] }))
        .collect();
    let options: Vec<Value> = lang::ACTIONS
        .iter()
        .map(|a| {
            let mut allowed = vec![a.name];
            allowed.extend(a.all_options().map(|o| o.name));
            let mut then = json!({ "propertyNames": { "enum": allowed } });
            if !a.required.is_empty() {
                then["required"] = json!(a.required);
            }
            json!({
                "if": { "required": [a.name] },
                "then": then,
                "description": format!("`{}` takes only these keys", a.name),
            })
        })
        .collect();
    json!({
        "type": "object",
        "description": "One step: exactly one action, with the options that action takes (specs/README.md, Steps).",
        "properties": properties,
        "additionalProperties": false,
        "oneOf": one_action,
        "allOf": options,
    })
}

/// The value of an action's key, described.
fn action_value(a: &ActionDef) -> Value {
    key(&Key {
        name: a.name,
        ty: a.value,
        required: false,
        default: lang::Default::None,
        doc: a.doc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed schemas are what `cargo grade schema` prints: they
    /// cannot drift from the tables.
    #[test]
    fn committed_schemas_are_up_to_date() {
        for (file, schema) in [
            ("spec.schema.json", spec()),
            ("mutants.schema.json", mutants()),
        ] {
            let path = format!("{}/../specs/{file}", env!("CARGO_MANIFEST_DIR"));
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == to_text(&schema),
                "specs/{file} is out of date: regenerate it with `cargo run -p cargo-grade -- schema{}> specs/{file}`",
                if file.starts_with("mutants") { " --mutants " } else { " " }
            );
        }
    }

    #[test]
    fn every_action_and_option_is_described() {
        let schema = spec();
        let step = &schema["definitions"]["step"];
        let properties = step["properties"].as_object().unwrap();
        assert_eq!(properties.len(), lang::ACTIONS.len() + lang::OPTIONS.len());
        for (name, p) in properties {
            assert!(
                p["description"].as_str().is_some_and(|d| !d.is_empty()),
                "step.{name}"
            );
        }
        assert_eq!(step["oneOf"].as_array().unwrap().len(), lang::ACTIONS.len());
        let test = &schema["properties"]["test"]["items"]["properties"];
        assert!(test["points"]["description"].is_string());
        assert_eq!(test["rounds"]["maximum"], 1000);
    }

    #[test]
    fn the_signal_pattern_accepts_every_spelling() {
        let pattern = signal()["anyOf"][1]["pattern"].as_str().unwrap().to_owned();
        let re = regex_lite::Regex::new(&pattern).unwrap();
        for ok in ["SIGINT", "INT", "int", "SigTerm", "usr1"] {
            assert!(re.is_match(ok), "{ok}");
        }
        for bad in ["SIGFOO", "SIG", "INTX", ""] {
            assert!(!re.is_match(bad), "{bad}");
        }
    }
}
