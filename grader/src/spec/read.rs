//! Reading a parsed TOML document against the tables of [`super::lang`]:
//! unknown keys, missing keys, types and ranges, all collected as
//! [`Diagnostic`]s at the span of the offending key or value, never
//! stopping at the first.

use std::ops::Range;

use nix::sys::signal::Signal;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diag::{did_you_mean, Diagnostic, ErrorKind, SpecError};
use super::lang::{self, Key, Ty};
use super::Value;
use crate::signals;

pub type Span = Range<usize>;

/// A value that passed its type's checks.
#[derive(Debug, Clone)]
pub enum Val<'t> {
    Str(String),
    Bool(bool),
    Int(i64),
    Float(f64),
    Regex(regex_lite::Regex),
    Signal(Signal),
    /// Each signal with its span in the array.
    Signals(Vec<(Signal, Span)>),
    /// Each string with its span in the array.
    Strings(Vec<(String, Span)>),
    Number(Value),
    Table(Fields<'t>),
    /// The items of an array of tables, each to be read by the caller (which
    /// knows the test or step it is in).
    Items(Vec<&'t Spanned<DeValue<'t>>>),
}

/// A key of a table, read.
#[derive(Debug, Clone)]
pub struct Field<'t> {
    pub key_span: Span,
    pub span: Span,
    pub val: Val<'t>,
}

/// A table, read: its known keys whose values passed their checks, in the
/// order of the file.
#[derive(Debug, Clone, Default)]
pub struct Fields<'t> {
    pub span: Span,
    pub fields: Vec<(String, Field<'t>)>,
    /// Keys given but wrongly typed (they are not in `fields`).
    pub rejected: Vec<String>,
    /// A key was not known.
    pub unknown_key: bool,
    /// Some error was found in this table.
    pub had_errors: bool,
}

impl<'t> Fields<'t> {
    pub fn get(&self, key: &str) -> Option<&Field<'t>> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, f)| f)
    }

    /// Whether the key was given at all (whatever its value).
    pub fn given(&self, key: &str) -> bool {
        self.get(key).is_some() || self.rejected.iter().any(|k| k == key)
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key).map(|f| &f.val) {
            Some(Val::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key).map(|f| &f.val) {
            Some(Val::Int(n)) => Some(*n),
            _ => None,
        }
    }

    /// An integer, or the default its key has in `keys`.
    pub fn int_or_default(&self, keys: &[Key], key: &str) -> i64 {
        self.int(key).unwrap_or_else(|| {
            match keys.iter().find(|k| k.name == key).map(|k| k.default) {
                Some(lang::Default::Int(n)) => n,
                _ => 0,
            }
        })
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.get(key).map(|f| &f.val) {
            Some(Val::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    pub fn float(&self, key: &str) -> Option<f64> {
        match self.get(key).map(|f| &f.val) {
            Some(Val::Float(x)) => Some(*x),
            _ => None,
        }
    }

    pub fn strings(&self, key: &str) -> Option<Vec<String>> {
        self.spanned_strings(key)
            .map(|items| items.iter().map(|(s, _)| s.clone()).collect())
    }

    pub fn spanned_strings(&self, key: &str) -> Option<&[(String, Span)]> {
        match self.get(key).map(|f| &f.val) {
            Some(Val::Strings(s)) => Some(s),
            _ => None,
        }
    }

    pub fn number(&self, key: &str) -> Option<&Value> {
        match self.get(key).map(|f| &f.val) {
            Some(Val::Number(v)) => Some(v),
            _ => None,
        }
    }

    pub fn table(&self, key: &str) -> Option<&Fields<'t>> {
        match self.get(key).map(|f| &f.val) {
            Some(Val::Table(t)) => Some(t),
            _ => None,
        }
    }

    pub fn items(&self, key: &str) -> &[&'t Spanned<DeValue<'t>>] {
        match self.get(key).map(|f| &f.val) {
            Some(Val::Items(items)) => items,
            _ => &[],
        }
    }

    pub fn span_of(&self, key: &str) -> Option<Span> {
        self.get(key).map(|f| f.span.clone())
    }
}

/// Collects the diagnostics of one file.
pub struct Reader<'t> {
    pub text: &'t str,
    pub diags: Vec<Diagnostic>,
    /// Byte offset of the start of each line: every step records its line,
    /// and scanning the text from its start for each of hundreds of steps
    /// was most of the time spent reading a spec.
    line_starts: Vec<usize>,
}

impl<'t> Reader<'t> {
    pub fn new(text: &'t str) -> Reader<'t> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Reader {
            text,
            diags: Vec::new(),
            line_starts,
        }
    }

    /// The 1-based line of byte `offset` of the text.
    pub fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }

    pub fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Gives every diagnostic from `mark` on that has no context this one.
    pub fn set_context(&mut self, mark: usize, context: &str) {
        for d in &mut self.diags[mark..] {
            if d.context.is_none() {
                d.context = Some(context.to_owned());
            }
        }
    }

    /// The diagnostics so far, as the file's error.
    pub fn into_error(self, path: &std::path::Path) -> SpecError {
        SpecError::new(path, self.text, self.diags)
    }

    /// Parses the document, recovering from syntax errors to report all of
    /// them; `None` when there were any.
    pub fn parse(&mut self) -> Option<Spanned<DeTable<'t>>> {
        let (doc, errors) = DeTable::parse_recoverable(self.text);
        if errors.is_empty() {
            return Some(doc);
        }
        for e in errors {
            let span = e.span().unwrap_or(0..0);
            self.error(Diagnostic::new(
                ErrorKind::Syntax(e.message().to_owned()),
                span,
            ));
        }
        None
    }

    /// Reads a table against its keys; `place` names it in messages (`[task]`,
    /// `a step`).
    pub fn table<'d>(
        &mut self,
        table: &'d DeTable<'d>,
        span: Span,
        keys: &[Key],
        place: &str,
    ) -> Fields<'d> {
        let before = self.diags.len();
        let mut out = Fields {
            span: span.clone(),
            ..Fields::default()
        };
        for (k, v) in table.iter() {
            let name: &str = k.get_ref();
            let Some(key) = keys.iter().find(|key| key.name == name) else {
                out.unknown_key = true;
                self.error(
                    Diagnostic::new(
                        ErrorKind::UnknownKey {
                            key: name.to_owned(),
                            place: place.to_owned(),
                        },
                        k.span(),
                    )
                    .suggest(did_you_mean(name, keys.iter().map(|k| k.name))),
                );
                continue;
            };
            match self.value(name, v, &key.ty) {
                Some(val) => out.fields.push((
                    name.to_owned(),
                    Field {
                        key_span: k.span(),
                        span: v.span(),
                        val,
                    },
                )),
                None => out.rejected.push(name.to_owned()),
            }
        }
        for key in keys.iter().filter(|k| k.required) {
            if !out.given(key.name) {
                let shown = match key.ty {
                    Ty::Tables(_) => format!("[[{}]]", key.name),
                    Ty::Table(_) => format!("[{}]", key.name),
                    _ => key.name.to_owned(),
                };
                let kind = ErrorKind::MissingKey {
                    key: shown,
                    place: place.to_owned(),
                };
                // The document itself has no header to point at.
                self.error(if span.is_empty() {
                    Diagnostic::whole_file(kind)
                } else {
                    Diagnostic::new(kind, span.clone())
                });
            }
        }
        // Keys in the order of the file (a table is kept sorted by key).
        out.fields.sort_by_key(|(_, f)| f.key_span.start);
        out.had_errors = self.diags.len() > before;
        out
    }

    /// Reads an item of an array of tables (a test, a step, a mutant).
    pub fn item<'d>(
        &mut self,
        item: &'d Spanned<DeValue<'d>>,
        keys: &[Key],
        place: &str,
    ) -> Option<Fields<'d>> {
        match item.get_ref() {
            DeValue::Table(t) => Some(self.table(t, item.span(), keys, place)),
            other => {
                self.error(Diagnostic::new(
                    ErrorKind::WrongType {
                        key: place.to_owned(),
                        expected: "a table".into(),
                        found: other.type_str().into(),
                    },
                    item.span(),
                ));
                None
            }
        }
    }

    /// Each item of an array of strings with its span; a wrong type at the
    /// first item that is not a string.
    fn string_items(
        &mut self,
        key: &str,
        ty: &Ty,
        items: &[Spanned<DeValue<'_>>],
    ) -> Option<Vec<(String, Span)>> {
        let mut out = Vec::new();
        for item in items {
            match item.get_ref() {
                DeValue::String(s) => out.push((s.to_string(), item.span())),
                _ => {
                    self.wrong_type(key, ty, item);
                    return None;
                }
            }
        }
        Some(out)
    }

    fn wrong_type(&mut self, key: &str, ty: &Ty, v: &Spanned<DeValue<'_>>) {
        self.error(Diagnostic::new(
            ErrorKind::WrongType {
                key: key.to_owned(),
                expected: ty.describe(),
                found: found(v.get_ref()),
            },
            v.span(),
        ));
    }

    fn string(&mut self, key: &str, ty: &Ty, v: &Spanned<DeValue<'_>>) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(key, ty, v);
                None
            }
        }
    }

    fn signal(&mut self, key: &str, v: &Spanned<DeValue<'_>>) -> Option<Signal> {
        let name = self.string(key, &Ty::Signal, v)?;
        match signals::parse(&name) {
            Ok(s) => Some(s),
            Err(_) => {
                let bare = name.trim().to_ascii_uppercase();
                let bare = bare.strip_prefix("SIG").unwrap_or(&bare).to_owned();
                let names: Vec<&str> = Signal::iterator().map(|s| &s.as_str()[3..]).collect();
                self.error(
                    Diagnostic::new(
                        ErrorKind::UnknownSignal {
                            key: key.to_owned(),
                            name,
                        },
                        v.span(),
                    )
                    .suggest(did_you_mean(&bare, names).map(|s| format!("SIG{s}"))),
                );
                None
            }
        }
    }

    fn one_of(
        &mut self,
        key: &str,
        ty: &Ty,
        values: &[&str],
        v: &Spanned<DeValue<'_>>,
    ) -> Option<String> {
        let s = self.string(key, ty, v)?;
        if values.contains(&s.as_str()) {
            return Some(s);
        }
        self.error(
            Diagnostic::new(
                ErrorKind::UnknownValue {
                    key: key.to_owned(),
                    value: s.clone(),
                    expected: values.iter().map(|v| v.to_string()).collect(),
                },
                v.span(),
            )
            .suggest(did_you_mean(&s, values.iter().copied())),
        );
        None
    }

    /// Checks one value against its type.
    pub fn value<'d>(
        &mut self,
        key: &str,
        v: &'d Spanned<DeValue<'d>>,
        ty: &Ty,
    ) -> Option<Val<'d>> {
        let span = v.span();
        match ty {
            Ty::Str => self.string(key, ty, v).map(Val::Str),
            Ty::StrOrStrings => match v.get_ref() {
                DeValue::String(s) => Some(Val::Strings(vec![(s.to_string(), v.span())])),
                DeValue::Array(items) => Some(Val::Strings(self.string_items(key, ty, items)?)),
                _ => {
                    self.wrong_type(key, ty, v);
                    None
                }
            },
            Ty::Name => {
                let s = self.string(key, ty, v)?;
                if s.is_empty() {
                    self.error(Diagnostic::new(ErrorKind::Empty { key: key.into() }, span));
                    return None;
                }
                Some(Val::Str(s))
            }
            Ty::Ident => {
                let s = self.string(key, ty, v)?;
                if s.is_empty()
                    || !s
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    self.error(Diagnostic::new(
                        ErrorKind::NotAnIdentifier {
                            key: key.into(),
                            value: s,
                        },
                        span,
                    ));
                    return None;
                }
                Some(Val::Str(s))
            }
            Ty::Regex => {
                let pattern = self.string(key, ty, v)?;
                match regex_lite::Regex::new(&pattern) {
                    Ok(re) => Some(Val::Regex(re)),
                    Err(e) => {
                        // regex-lite says what is wrong, not where: the
                        // marker spans the whole pattern.
                        self.error(Diagnostic::new(
                            ErrorKind::BadRegex {
                                key: key.into(),
                                error: e.to_string(),
                            },
                            span,
                        ));
                        None
                    }
                }
            }
            Ty::Signal => self.signal(key, v).map(Val::Signal),
            Ty::Signals => {
                let DeValue::Array(items) = v.get_ref() else {
                    self.wrong_type(key, ty, v);
                    return None;
                };
                if items.is_empty() {
                    self.error(Diagnostic::new(
                        ErrorKind::Rule(format!("{key}: list at least one signal")),
                        span,
                    ));
                    return None;
                }
                let mut out = Vec::new();
                let mut ok = true;
                for item in items.iter() {
                    match self.signal(key, item) {
                        Some(s) => out.push((s, item.span())),
                        None => ok = false,
                    }
                }
                ok.then_some(Val::Signals(out))
            }
            Ty::OneOf(values) => self.one_of(key, ty, values, v).map(Val::Str),
            Ty::PeerKind => self.one_of(key, ty, &lang::peer_kinds(), v).map(Val::Str),
            Ty::True => match v.get_ref() {
                DeValue::Boolean(true) => Some(Val::Bool(true)),
                _ => {
                    self.error(Diagnostic::new(
                        ErrorKind::OnlyTrue { key: key.into() },
                        span,
                    ));
                    None
                }
            },
            Ty::Bool => match v.get_ref() {
                DeValue::Boolean(b) => Some(Val::Bool(*b)),
                _ => {
                    self.wrong_type(key, ty, v);
                    None
                }
            },
            Ty::Int { min, max } => {
                let n = match v.get_ref() {
                    DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
                    _ => None,
                };
                let Some(n) = n else {
                    self.wrong_type(key, ty, v);
                    return None;
                };
                if !(*min..=*max).contains(&n) {
                    self.error(Diagnostic::new(
                        ErrorKind::OutOfRange {
                            key: key.into(),
                            value: n.to_string(),
                            rule: format!("give {}", lang::describe_range(*min, *max)),
                        },
                        span,
                    ));
                    return None;
                }
                Some(Val::Int(n))
            }
            Ty::Probability => {
                let x = match v.get_ref() {
                    DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
                    DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                        .ok()
                        .map(|n| n as f64),
                    _ => None,
                };
                let Some(x) = x else {
                    self.wrong_type(key, ty, v);
                    return None;
                };
                if !(0.0..=1.0).contains(&x) {
                    self.error(Diagnostic::new(
                        ErrorKind::OutOfRange {
                            key: key.into(),
                            value: x.to_string(),
                            rule: "a probability is 0.0 to 1.0".into(),
                        },
                        span,
                    ));
                    return None;
                }
                Some(Val::Float(x))
            }
            Ty::Strings | Ty::NonEmptyStrings => {
                let DeValue::Array(items) = v.get_ref() else {
                    self.wrong_type(key, ty, v);
                    return None;
                };
                let out = self.string_items(key, ty, items)?;
                if out.is_empty() && matches!(ty, Ty::NonEmptyStrings) {
                    self.error(Diagnostic::new(ErrorKind::Empty { key: key.into() }, span));
                    return None;
                }
                Some(Val::Strings(out))
            }
            Ty::NumberOrVariable => match v.get_ref() {
                DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                    .ok()
                    .map(|n| Val::Number(Value::Int(n))),
                DeValue::String(s) => Some(Val::Number(Value::Var(s.to_string()))),
                _ => {
                    self.wrong_type(key, ty, v);
                    None
                }
            },
            Ty::Table(keys) => match v.get_ref() {
                DeValue::Table(t) => {
                    // `[task]` written as a header, `rlimits = { ... }` inline.
                    let header = self
                        .text
                        .get(span.clone())
                        .is_some_and(|s| s.starts_with('['));
                    let place = if header {
                        format!("[{key}]")
                    } else {
                        format!("`{key}`")
                    };
                    Some(Val::Table(self.table(t, span, keys, &place)))
                }
                _ => {
                    self.wrong_type(key, ty, v);
                    None
                }
            },
            Ty::Tables(_) | Ty::Steps => {
                let DeValue::Array(items) = v.get_ref() else {
                    self.wrong_type(key, ty, v);
                    return None;
                };
                if items.is_empty() {
                    let what = if matches!(ty, Ty::Steps) {
                        "steps: a test needs at least one step".to_owned()
                    } else {
                        format!("{key}: give at least one")
                    };
                    self.error(Diagnostic::new(ErrorKind::Rule(what), span));
                    return None;
                }
                Some(Val::Items(items.iter().collect()))
            }
        }
    }
}

/// `a string "two"`, `an integer`, for messages.
fn found(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("the string {:?}", s.as_ref()),
        DeValue::Integer(i) => format!("the integer {i}"),
        DeValue::Float(f) => format!("the float {f}"),
        DeValue::Boolean(b) => format!("{b}"),
        other => format!("a {}", other.type_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_index_agrees_with_the_place_of_every_offset() {
        for text in ["", "a", "\n", "ab\ncd\n\nef", "é\nü\n", "x\n\n\n"] {
            let r = Reader::new(text);
            for offset in 0..=text.len() {
                if text.is_char_boundary(offset) {
                    assert_eq!(
                        r.line_of(offset),
                        crate::spec::diag::place_of(text, offset).line,
                        "offset {offset} of {text:?}"
                    );
                }
            }
        }
    }
}
