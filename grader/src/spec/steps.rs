//! Steps: a table read against [`lang::ACTIONS`] and [`lang::OPTIONS`],
//! checked in the context of the steps before it (processes started,
//! variables bound), then built into an [`Action`] by its action's build
//! function (named in the table).

use std::collections::BTreeSet;
use std::path::Path;

use nix::sys::signal::Signal;
use toml::de::DeValue;
use toml::Spanned;

use super::diag::{did_you_mean, Diagnostic, ErrorKind};
use super::lang::{self, ActionDef, Binds, Key, Subject};
use super::read::{Fields, Reader, Span, Val};
use super::{Action, Counted, Limits, LineCheck, NumberCheck, Step, StreamName, Target, Value};
use crate::signals;

/// Builds an action from its validated step.
pub type Build = fn(&StepIn<'_, '_>) -> Built;

/// An action, or why the step cannot be one.
pub type Built = Result<Action, Box<Diagnostic>>;

/// What the earlier steps of a test have established.
#[derive(Default)]
pub struct StepContext {
    pub started: Vec<String>,
    /// Variables bound so far (captures and `sent_SIGNAL` counters).
    pub vars: BTreeSet<String>,
}

/// A step being built: its action and its fields.
pub struct StepIn<'a, 't> {
    pub def: &'static ActionDef,
    pub fields: &'a Fields<'t>,
}

impl StepIn<'_, '_> {
    fn value(&self) -> &Val<'_> {
        &self
            .fields
            .get(self.def.name)
            .expect("the action's key is present")
            .val
    }

    fn span(&self) -> Span {
        self.fields.span_of(self.def.name).unwrap_or_default()
    }

    fn str(&self) -> String {
        match self.value() {
            Val::Str(s) => s.clone(),
            _ => String::new(),
        }
    }

    fn int(&self) -> i64 {
        match self.value() {
            Val::Int(n) => *n,
            _ => 0,
        }
    }

    fn signal(&self) -> Signal {
        match self.value() {
            Val::Signal(s) => *s,
            _ => Signal::SIGTERM,
        }
    }

    fn rule(&self, span: Span, message: String) -> Box<Diagnostic> {
        Box::new(Diagnostic::new(ErrorKind::Rule(message), span))
    }

    /// An integer option, or its default from [`lang::OPTIONS`].
    fn int_opt(&self, key: &str) -> i64 {
        self.fields
            .int(key)
            .unwrap_or_else(|| match lang::option_def(key).map(|k| k.default) {
                Some(lang::Default::Int(n)) => n,
                _ => 0,
            })
    }

    fn target(&self) -> Target {
        match self.fields.str("target") {
            Some("child") => Target::Child,
            _ => Target::Process,
        }
    }

    fn args(&self) -> Vec<String> {
        self.fields.strings("args").unwrap_or_default()
    }

    fn number_check(&self) -> NumberCheck {
        NumberCheck {
            capture: self.fields.str("capture").map(str::to_owned),
            at_least: self.fields.number("at_least").cloned(),
            at_most: self.fields.number("at_most").cloned(),
            equals: self.fields.number("equals").cloned(),
        }
    }

    /// What `wait_for` and `expect` check of a matching line.
    fn line_check(&self, re: &regex_lite::Regex) -> Result<LineCheck, Box<Diagnostic>> {
        let groups = re.captures_len() - 1;
        let check = self.number_check();
        if let Some(len) = self.fields.int("payload") {
            if !check.is_empty() {
                return Err(self.rule(
                    self.fields.span_of("payload").unwrap_or_default(),
                    "`payload` checks the captured text; it does not combine with capture/at_least/at_most/equals".into(),
                ));
            }
            if groups != 1 {
                return Err(self.rule(
                    self.span(),
                    format!("`payload` needs exactly one capture group in the regex (the text to compare), found {groups}"),
                ));
            }
            return Ok(LineCheck::Payload(len as usize));
        }
        if !check.is_empty() && groups != 1 {
            return Err(self.rule(
                self.span(),
                format!("capture/at_least/at_most/equals need exactly one capture group in the regex, found {groups}"),
            ));
        }
        Ok(LineCheck::Number(check))
    }

    fn regex(&self) -> regex_lite::Regex {
        match self.value() {
            Val::Regex(re) => re.clone(),
            _ => regex_lite::Regex::new("").expect("the empty regex"),
        }
    }
}

pub(super) fn start(s: &StepIn) -> Built {
    let name = s.str();
    let args = s.args();
    Ok(match s.fields.str("peer") {
        None => Action::Start { name, args },
        Some(kind) => Action::StartPeer {
            name,
            kind: kind.to_owned(),
            args,
        },
    })
}

pub(super) fn send_line(s: &StepIn) -> Built {
    Ok(Action::SendLine(s.str()))
}

pub(super) fn send_payload(s: &StepIn) -> Built {
    Ok(Action::SendPayload(s.int() as usize))
}

pub(super) fn close_stdin(_: &StepIn) -> Built {
    Ok(Action::CloseStdin)
}

pub(super) fn signal(s: &StepIn) -> Built {
    Ok(Action::Signal {
        signal: s.signal(),
        count: s.int_opt("count") as u32,
        spread_ms: s.int_opt("spread_ms") as u64,
        background: s.fields.bool("background").unwrap_or(false),
        target: s.target(),
    })
}

pub(super) fn pause(s: &StepIn) -> Built {
    Ok(Action::Pause {
        max_ms: s.int() as u64,
        target: s.target(),
        count: s.int_opt("count") as u32,
        spread_ms: s.int_opt("spread_ms") as u64,
        background: s.fields.bool("background").unwrap_or(false),
    })
}

pub(super) fn stale(s: &StepIn) -> Built {
    let kind = s.str();
    let args = s.args();
    if args.is_empty() {
        return Err(s.rule(
            s.fields.span_of("args").unwrap_or_else(|| s.span()),
            format!("stale = {kind:?} needs args = [NAME] (a path, name or key), and optionally a value"),
        ));
    }
    Ok(Action::Stale { kind, args })
}

pub(super) fn join(_: &StepIn) -> Built {
    Ok(Action::Join)
}

pub(super) fn wait_for(s: &StepIn) -> Built {
    let re = s.regex();
    let check = s.line_check(&re)?;
    Ok(Action::WaitFor(re, check))
}

pub(super) fn expect(s: &StepIn) -> Built {
    let re = s.regex();
    let check = s.line_check(&re)?;
    let skip = match s.fields.get("skip").map(|f| &f.val) {
        Some(Val::Regex(re)) => Some(re.clone()),
        _ => None,
    };
    Ok(Action::Expect(re, check, skip))
}

pub(super) fn expect_numbered(s: &StepIn) -> Built {
    let template = s.str();
    if template.matches("{}").count() != 1 {
        return Err(s.rule(
            s.span(),
            "expect_numbered: the template needs exactly one {} for the number".into(),
        ));
    }
    let from = s.fields.int("from").unwrap_or_default() as u64;
    let to = s.fields.int("to").unwrap_or_default() as u64;
    if from > to {
        return Err(s.rule(
            s.fields.span_of("to").unwrap_or_default(),
            format!("expect_numbered: from ({from}) is greater than to ({to})"),
        ));
    }
    Ok(Action::ExpectNumbered { template, from, to })
}

pub(super) fn expect_handlers(s: &StepIn) -> Built {
    let Val::Signals(sigs) = s.value() else {
        return Ok(Action::ExpectHandlers(Vec::new()));
    };
    if let Some((sig, span)) = sigs
        .iter()
        .find(|(sig, _)| matches!(sig, Signal::SIGKILL | Signal::SIGSTOP))
    {
        return Err(s.rule(
            span.clone(),
            format!(
                "expect_handlers: {} can never have a handler",
                signals::name(*sig)
            ),
        ));
    }
    Ok(Action::ExpectHandlers(
        sigs.iter().map(|(sig, _)| *sig).collect(),
    ))
}

pub(super) fn wait_blocked(_: &StepIn) -> Built {
    Ok(Action::WaitBlocked)
}

pub(super) fn wait_syscall(s: &StepIn) -> Built {
    Ok(Action::WaitSyscall(s.str()))
}

pub(super) fn wait_file(s: &StepIn) -> Built {
    let path = s.str();
    let p = Path::new(&path);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(s.rule(
            s.span(),
            format!("wait_file = {path:?}: give a path inside the test's scratch directory (relative, no ..)"),
        ));
    }
    Ok(Action::WaitFile(path))
}

pub(super) fn wait_idle(_: &StepIn) -> Built {
    Ok(Action::WaitIdle)
}

pub(super) fn stop_reading(_: &StepIn) -> Built {
    Ok(Action::Reading(false))
}

pub(super) fn resume_reading(_: &StepIn) -> Built {
    Ok(Action::Reading(true))
}

fn count(s: &StepIn, what: Counted) -> Built {
    let check = s.number_check();
    if check.is_empty() {
        return Err(s.rule(
            s.fields.span.clone(),
            format!("{} needs capture, at_least, at_most or equals", s.def.name),
        ));
    }
    Ok(Action::Count(what, check))
}

pub(super) fn count_fds(s: &StepIn) -> Built {
    count(s, Counted::Fds)
}

pub(super) fn count_zombies(s: &StepIn) -> Built {
    count(s, Counted::Zombies)
}

pub(super) fn expect_exit(s: &StepIn) -> Built {
    Ok(Action::ExpectExit(s.int() as i32))
}

pub(super) fn expect_killed_by(s: &StepIn) -> Built {
    Ok(Action::ExpectKilledBy(s.signal()))
}

pub(super) fn expect_eof(_: &StepIn) -> Built {
    Ok(Action::ExpectEof)
}

pub(super) fn expect_alive(_: &StepIn) -> Built {
    Ok(Action::ExpectAlive)
}

pub(super) fn expect_clean(_: &StepIn) -> Built {
    Ok(Action::ExpectClean)
}

/// A step read and checked; `step` is `None` when it had errors.
pub struct ReadStep {
    pub step: Option<Step>,
    pub subject: Option<Subject>,
    pub has_process: bool,
    pub span: Span,
}

/// Reads one step of a test: its keys, its one action, the options that
/// action takes, the processes and variables it uses; then builds it.
pub fn read_step<'d>(
    r: &mut Reader<'_>,
    item: &'d Spanned<DeValue<'d>>,
    keys: &[Key],
    limits: &Limits,
    ctx: &mut StepContext,
) -> ReadStep {
    let span = item.span();
    let mut out = ReadStep {
        step: None,
        subject: None,
        has_process: false,
        span: span.clone(),
    };
    let Some(fields) = r.item(item, keys, "a step") else {
        return out;
    };
    let before = r.diags.len();
    out.has_process = fields.given("process");

    // Exactly one action, wherever its value was wrong.
    let actions: Vec<&'static ActionDef> = {
        let mut given: Vec<(usize, &'static ActionDef)> = lang::ACTIONS
            .iter()
            .filter(|a| fields.given(a.name))
            .map(|a| {
                (
                    fields.get(a.name).map_or(usize::MAX, |f| f.key_span.start),
                    a,
                )
            })
            .collect();
        given.sort_by_key(|(at, _)| *at);
        given.into_iter().map(|(_, a)| a).collect()
    };
    let def = match actions.as_slice() {
        [one] => *one,
        [] => {
            // An unknown key is most likely the misspelt action: that error
            // (with its suggestion) says it all.
            if !fields.unknown_key {
                r.error(Diagnostic::new(
                    ErrorKind::NoAction {
                        actions: lang::ACTIONS.iter().map(|a| a.name.to_owned()).collect(),
                    },
                    span,
                ));
            }
            return out;
        }
        [_, second, ..] => {
            let at = fields
                .get(second.name)
                .map_or(span.clone(), |f| f.key_span.clone());
            r.error(Diagnostic::new(
                ErrorKind::SeveralActions {
                    actions: actions.iter().map(|a| a.name.to_owned()).collect(),
                },
                at,
            ));
            return out;
        }
    };
    out.subject = Some(def.subject);

    // Options that do not belong to the action.
    for (key, field) in &fields.fields {
        if lang::option_def(key).is_some() && !def.takes(key) {
            let kind = if key == "process" && def.subject == Subject::Names {
                ErrorKind::ProcessOnStart
            } else {
                ErrorKind::OptionNotApplicable {
                    option: key.clone(),
                    action: def.name.to_owned(),
                }
            };
            r.error(Diagnostic::new(kind, field.key_span.clone()));
        }
    }
    let missing: Vec<String> = def
        .required
        .iter()
        .filter(|o| !fields.given(o))
        .map(|o| o.to_string())
        .collect();
    if !missing.is_empty() {
        r.error(Diagnostic::new(
            ErrorKind::MissingOption {
                action: def.name.to_owned(),
                options: missing,
            },
            span.clone(),
        ));
    }

    // The process it acts on exists by now.
    match (fields.str("process"), def.subject) {
        (_, Subject::Names) => {}
        (Some(p), _) => {
            if !ctx.started.iter().any(|s| s == p) {
                r.error(
                    Diagnostic::new(
                        ErrorKind::ProcessNotStarted { name: p.to_owned() },
                        fields.span_of("process").unwrap_or_default(),
                    )
                    .suggest(did_you_mean(p, ctx.started.iter().map(String::as_str))),
                );
            }
        }
        (None, Subject::Free) => {}
        (None, _) => {
            if ctx.started.is_empty() && !fields.given("process") {
                r.error(Diagnostic::new(
                    ErrorKind::BeforeStart {
                        action: def.name.to_owned(),
                    },
                    span.clone(),
                ));
            }
        }
    }
    if def.binds == Binds::Process {
        if let Some(name) = fields.str(def.name) {
            if ctx.started.iter().any(|s| s == name) {
                r.error(Diagnostic::new(
                    ErrorKind::AlreadyStarted {
                        name: name.to_owned(),
                    },
                    fields.span_of(def.name).unwrap_or_default(),
                ));
            } else {
                ctx.started.push(name.to_owned());
            }
        }
    }

    // Variables it reads are bound by an earlier step.
    for key in ["at_least", "at_most", "equals"] {
        if let Some(Value::Var(name)) = fields.number(key) {
            if !ctx.vars.contains(name) {
                r.error(
                    Diagnostic::new(
                        ErrorKind::UnboundVariable { name: name.clone() },
                        fields.span_of(key).unwrap_or_default(),
                    )
                    .suggest(did_you_mean(name, ctx.vars.iter().map(String::as_str))),
                );
            }
        }
    }

    let clean = !fields.had_errors && r.diags.len() == before;
    let action = if clean {
        match (def.build)(&StepIn {
            def,
            fields: &fields,
        }) {
            Ok(a) => Some(a),
            Err(d) => {
                r.error(*d);
                None
            }
        }
    } else {
        None
    };

    // What it binds for later steps, whether or not it had errors (so that
    // one mistake is not reported again by every step after it).
    if def.binds == Binds::SentCounter {
        if let Some(Val::Signal(sig)) = fields.get(def.name).map(|f| &f.val) {
            ctx.vars.insert(format!("sent_{}", signals::name(*sig)));
        }
    }
    if let Some(name) = fields.str("capture") {
        ctx.vars.insert(name.to_owned());
    }

    out.step = action.map(|action| Step {
        action,
        process: fields.str("process").map(str::to_owned),
        stream: match fields.str("stream") {
            Some("stderr") => StreamName::Stderr,
            _ => StreamName::Stdout,
        },
        timeout_ms: fields
            .int("timeout_ms")
            .map_or(limits.step_timeout_ms, |n| n as u64),
        line: r.line_of(span.start),
    });
    out
}
