//! Rules written in CEL, the Common Expression Language: `when` is an
//! expression over the caller, the upstream and what is asked for, `action`
//! says what a match means.
//!
//! Variables: `caller` (`subject`, `claims`), `upstream`, `method`,
//! `tool.name`, `arguments`, `prompt.name`, `resource.uri`. A rule concerns the
//! requests its variables speak of: one that reads `tool` or `arguments` judges
//! tool calls, `prompt` prompts, `resource` resources; one that reads none of
//! them judges all three.
//!
//! Errors fail closed: a rule that cannot be evaluated (a claim the caller does
//! not have) counts as matching when it denies or asks for approval, and as not
//! matching when it allows.

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::ast::{operators, EntryExpr, Expr, IdedExpr};
use cel::common::value::CelVal;
use cel::objects::{Key, Map};
use cel::parser::Parser;
use cel::{Context, ExecutionError, ResolveResult, Value as Cel};
use serde::Deserialize;
use serde_json::Value;

const VARIABLES: [&str; 7] = ["caller", "upstream", "method", "tool", "arguments", "prompt", "resource"];

/// What a matching rule means.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
    Approve,
}

/// What a request is about.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Target {
    Tool,
    Prompt,
    Resource,
}

/// A compiled rule.
pub struct CelRule {
    pub name: String,
    pub action: Action,
    expr: IdedExpr,
    reads: Vec<&'static str>,
    /// Tests on the name and the arguments that the whole expression needs
    /// true (conjuncts of its top-level `&&`): when one is false, so is the
    /// rule, and it is not evaluated. (CEL's `&&` is false when either side
    /// is, whatever the other: skipping it gives CEL's own answer.)
    guards: Vec<Guard>,
}

/// A conjunct read without the interpreter.
#[derive(Debug, PartialEq)]
enum Guard {
    /// `tool.name == "x"` (or `prompt.name`, `resource.uri`).
    Is(Target, String),
    /// `tool.name.startsWith("x")`.
    StartsWith(Target, String),
    /// `tool.name in ["x", "y"]`.
    OneOf(Target, Vec<String>),
    /// `has(arguments.x)`.
    HasArgument(String),
}

impl CelRule {
    /// Compiles `when`; an expression that does not parse, or names a variable
    /// that does not exist, is refused with the rule's name and the position.
    pub fn new(name: String, when: &str, action: Action) -> Result<CelRule, String> {
        let what = format!("rule {name:?}");
        let mut expr = Parser::new().parse(when).map_err(|errors| {
            let first = errors.errors.first().map(|e| format!("line {}, column {}: {}", e.pos.0, e.pos.1 + 1, e.msg));
            format!("{what}: `when` does not compile: {}", first.unwrap_or_else(|| errors.to_string()))
        })?;
        let mut free = Vec::new();
        free_variables(&expr, &mut Vec::new(), &mut free);
        strict_in(&mut expr);
        let mut reads = Vec::new();
        for variable in free {
            match VARIABLES.iter().find(|v| **v == variable) {
                Some(known) if !reads.contains(known) => reads.push(*known),
                Some(_) => {}
                None => {
                    let at = column_of(when, &variable).map(|c| format!(" at column {c}")).unwrap_or_default();
                    return Err(format!("{what}: unknown variable `{variable}`{at} (known: {})", VARIABLES.join(", ")));
                }
            }
        }
        let mut guards = Vec::new();
        conjunct_guards(&expr, &mut guards);
        Ok(CelRule { name, action, expr, reads, guards })
    }

    /// Whether the rule judges requests about `target`.
    pub fn concerns(&self, target: Target) -> bool {
        let own = match target {
            Target::Tool => self.reads("tool") || self.reads("arguments"),
            Target::Prompt => self.reads("prompt"),
            Target::Resource => self.reads("resource"),
        };
        own || !["tool", "arguments", "prompt", "resource"].iter().any(|v| self.reads(v))
    }

    pub fn reads(&self, variable: &str) -> bool {
        self.reads.contains(&variable)
    }

    /// Whether a guard shows the rule false for a request about `target`
    /// named `name` with these arguments (`None`: not known yet).
    pub fn ruled_out(&self, target: Target, name: &str, arguments: Option<&serde_json::Value>) -> bool {
        self.guards.iter().any(|guard| match guard {
            Guard::Is(t, lit) => *t == target && name != lit,
            Guard::StartsWith(t, lit) => *t == target && !name.starts_with(lit.as_str()),
            Guard::OneOf(t, list) => *t == target && !list.iter().any(|l| l == name),
            Guard::HasArgument(key) => arguments.and_then(Value::as_object).is_some_and(|a| !a.contains_key(key)),
        })
    }

    /// Whether the rule matches; an evaluation error is said in the log and
    /// counts as the stricter answer.
    pub fn matches(&self, scope: &Context) -> bool {
        match scope.resolve(&self.expr) {
            Ok(Cel::Bool(b)) => b,
            outcome => {
                let why = match outcome {
                    Ok(other) => format!("gave {:?}, not a boolean", other.type_of()),
                    Err(e) => e.to_string(),
                };
                let strict = self.action != Action::Allow;
                warn(&format!(
                    "tool-policy: rule {:?} could not be evaluated ({why}); counted as {}",
                    self.name,
                    if strict { "matching" } else { "not matching" }
                ));
                strict
            }
        }
    }
}

/// The guards among the conjuncts of `expr`'s top-level `&&`.
fn conjunct_guards(expr: &IdedExpr, out: &mut Vec<Guard>) {
    let Expr::Call(call) = &expr.expr else {
        if let Expr::Select(select) = &expr.expr {
            if select.test && matches!(&select.operand.expr, Expr::Ident(v) if v == "arguments") {
                out.push(Guard::HasArgument(select.field.clone()));
            }
        }
        return;
    };
    let literal = |e: &IdedExpr| match &e.expr {
        Expr::Literal(CelVal::String(s)) => Some(s.clone()),
        _ => None,
    };
    match (call.func_name.as_str(), call.target.as_deref(), call.args.as_slice()) {
        (operators::LOGICAL_AND, None, [left, right]) => {
            conjunct_guards(left, out);
            conjunct_guards(right, out);
        }
        (operators::EQUALS, None, [a, b]) => {
            let (name, lit) = match (named(a), literal(b), named(b), literal(a)) {
                (Some(t), Some(l), _, _) | (_, _, Some(t), Some(l)) => (t, l),
                _ => return,
            };
            out.push(Guard::Is(name, lit));
        }
        ("startsWith", Some(on), [prefix]) => {
            if let (Some(t), Some(l)) = (named(on), literal(prefix)) {
                out.push(Guard::StartsWith(t, l));
            }
        }
        (IN, None, [item, list]) => {
            let (Some(t), Expr::List(list)) = (named(item), &list.expr) else { return };
            let items: Option<Vec<String>> = list.elements.iter().map(literal).collect();
            if let Some(items) = items.filter(|_| list.optional_indices.is_empty()) {
                out.push(Guard::OneOf(t, items));
            }
        }
        _ => {}
    }
}

/// Which name `expr` is: `tool.name`, `prompt.name` or `resource.uri`.
fn named(expr: &IdedExpr) -> Option<Target> {
    let Expr::Select(select) = &expr.expr else { return None };
    let Expr::Ident(var) = &select.operand.expr else { return None };
    match (var.as_str(), select.field.as_str(), select.test) {
        ("tool", "name", false) => Some(Target::Tool),
        ("prompt", "name", false) => Some(Target::Prompt),
        ("resource", "uri", false) => Some(Target::Resource),
        _ => None,
    }
}

/// Says `message` in Warden's log (on stderr when the tests run natively).
fn warn(message: &str) {
    #[cfg(target_arch = "wasm32")]
    warden_sdk::log::warn(message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{message}");
}

/// The name `in` is given in rules, so that it means what CEL says.
const IN: &str = "@warden_in";

/// The name unary minus is given in rules: `-i` of the least int is an error, not itself.
const NEGATE: &str = "@warden_negate";

/// CEL's standard functions, and `in` as CEL defines it: membership in a
/// list or among a map's keys. (The interpreter would also take
/// `"infra" in "not-infra"` as a substring test, which is true: a group claim
/// sent as a string must not pass a group check.) Anything else is an error,
/// so it fails closed.
pub fn root() -> Context<'static> {
    let mut root = Context::default();
    root.add_function(IN, |left: Cel, right: Cel| -> ResolveResult {
        match (left, right) {
            (any, Cel::List(items)) => Ok(Cel::Bool(items.contains(&any))),
            (any, Cel::Map(map)) => {
                Ok(Cel::Bool(TryInto::<Key>::try_into(any).is_ok_and(|k| map.map.contains_key(&k))))
            }
            (_, other) => {
                Err(ExecutionError::function_error("in", format!("not a list or map: {:?}", other.type_of())))
            }
        }
    });
    root.add_function(NEGATE, |value: Cel| -> ResolveResult {
        match value {
            Cel::Int(i) => {
                i.checked_neg().map(Cel::Int).ok_or_else(|| ExecutionError::function_error("-", "int overflow"))
            }
            Cel::Float(f) => Ok(Cel::Float(-f)),
            other => Err(ExecutionError::function_error("-", format!("cannot negate {:?}", other.type_of()))),
        }
    });
    root
}

/// Points every `in` in `expr` at [`IN`], and every unary minus at [`NEGATE`].
fn strict_in(expr: &mut IdedExpr) {
    match &mut expr.expr {
        Expr::Call(call) => {
            if call.func_name == operators::IN {
                call.func_name = IN.to_owned();
            } else if call.func_name == operators::NEGATE && call.args.len() == 1 && call.target.is_none() {
                call.func_name = NEGATE.to_owned();
            }
            if let Some(target) = &mut call.target {
                strict_in(target);
            }
            call.args.iter_mut().for_each(strict_in);
        }
        Expr::Select(select) => strict_in(&mut select.operand),
        Expr::Comprehension(comp) => {
            for e in
                [&mut comp.iter_range, &mut comp.accu_init, &mut comp.loop_cond, &mut comp.loop_step, &mut comp.result]
            {
                strict_in(e);
            }
        }
        Expr::List(list) => list.elements.iter_mut().for_each(strict_in),
        Expr::Map(map) => map.entries.iter_mut().for_each(|e| strict_in_entry(&mut e.expr)),
        Expr::Struct(s) => s.entries.iter_mut().for_each(|e| strict_in_entry(&mut e.expr)),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn strict_in_entry(entry: &mut EntryExpr) {
    match entry {
        EntryExpr::StructField(field) => strict_in(&mut field.value),
        EntryExpr::MapEntry(entry) => {
            strict_in(&mut entry.key);
            strict_in(&mut entry.value);
        }
    }
}

/// The identifiers `expr` reads that no comprehension around them binds.
fn free_variables(expr: &IdedExpr, bound: &mut Vec<String>, out: &mut Vec<String>) {
    match &expr.expr {
        Expr::Ident(name) => {
            if !name.starts_with('@') && !bound.contains(name) && !out.contains(name) {
                out.push(name.clone());
            }
        }
        Expr::Select(select) => free_variables(&select.operand, bound, out),
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                free_variables(target, bound, out);
            }
            for arg in &call.args {
                free_variables(arg, bound, out);
            }
        }
        Expr::Comprehension(comp) => {
            free_variables(&comp.iter_range, bound, out);
            free_variables(&comp.accu_init, bound, out);
            let depth = bound.len();
            bound.push(comp.iter_var.clone());
            bound.extend(comp.iter_var2.clone());
            bound.push(comp.accu_var.clone());
            free_variables(&comp.loop_cond, bound, out);
            free_variables(&comp.loop_step, bound, out);
            free_variables(&comp.result, bound, out);
            bound.truncate(depth);
        }
        Expr::List(list) => list.elements.iter().for_each(|e| free_variables(e, bound, out)),
        Expr::Map(map) => map.entries.iter().for_each(|e| entry_variables(&e.expr, bound, out)),
        Expr::Struct(s) => s.entries.iter().for_each(|e| entry_variables(&e.expr, bound, out)),
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn entry_variables(entry: &EntryExpr, bound: &mut Vec<String>, out: &mut Vec<String>) {
    match entry {
        EntryExpr::StructField(field) => free_variables(&field.value, bound, out),
        EntryExpr::MapEntry(entry) => {
            free_variables(&entry.key, bound, out);
            free_variables(&entry.value, bound, out);
        }
    }
}

/// The 1-based column where `word` first stands on its own in `source`.
fn column_of(source: &str, word: &str) -> Option<usize> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    source.match_indices(word).find_map(|(at, _)| {
        let before = source[..at].chars().next_back();
        let after = source[at + word.len()..].chars().next();
        (!before.is_some_and(ident) && !after.is_some_and(ident)).then(|| source[..at].chars().count() + 1)
    })
}

/// A JSON value as CEL sees it: integers as `int` (or `uint`, or `double` when
/// they fit neither), objects as maps with string keys.
pub fn to_cel(value: &Value) -> Cel {
    match value {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cel::Int(i),
            (None, Some(u)) => Cel::UInt(u),
            _ => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => map_of(map.iter().map(|(k, v)| (k.as_str(), to_cel(v)))),
    }
}

/// A CEL map from string keys.
pub fn map_of<'a>(entries: impl IntoIterator<Item = (&'a str, Cel)>) -> Cel {
    let map: HashMap<Key, Cel> = entries.into_iter().map(|(k, v)| (Key::from(k), v)).collect();
    Cel::Map(Map { map: Arc::new(map) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_variables_and_syntax_errors_are_named_with_their_place() {
        let e = CelRule::new("r".into(), "tool.name == 'x' && user.admin", Action::Deny).err().unwrap_or_default();
        assert!(e.contains("rule \"r\"") && e.contains("`user`") && e.contains("column 21"), "{e}");
        let e = CelRule::new("bad".into(), "tool.name ==", Action::Deny).err().unwrap_or_default();
        assert!(e.contains("rule \"bad\"") && e.contains("does not compile") && e.contains("column"), "{e}");
        // Comprehension variables are not unknown.
        let r = CelRule::new("ok".into(), "caller.claims.groups.exists(g, g == 'infra')", Action::Allow);
        assert!(r.is_ok());
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        assert!(r.concerns(Target::Tool) && r.concerns(Target::Prompt) && r.reads("caller") && !r.reads("g"));
    }

    #[test]
    fn guards_rule_out_only_what_cannot_match() {
        let rule = |when: &str| CelRule::new("g".into(), when, Action::Deny).unwrap_or_else(|e| panic!("{e}"));
        let r = rule(r#"tool.name == "rm" && caller.claims.x"#);
        assert!(r.ruled_out(Target::Tool, "ls", None) && !r.ruled_out(Target::Tool, "rm", None));
        assert!(!r.ruled_out(Target::Prompt, "ls", None), "a guard on tools says nothing of prompts");
        let r = rule(r#"caller.claims.x && tool.name.startsWith("delete_") && has(arguments.path)"#);
        assert!(r.ruled_out(Target::Tool, "read", None));
        assert!(r.ruled_out(Target::Tool, "delete_x", Some(&serde_json::json!({"other": 1}))));
        assert!(!r.ruled_out(Target::Tool, "delete_x", Some(&serde_json::json!({"path": 1}))));
        assert!(!r.ruled_out(Target::Tool, "delete_x", Some(&serde_json::json!([1]))), "not a map: left to CEL");
        let r = rule(r#"tool.name in ["a", "b"] && true"#);
        assert!(r.ruled_out(Target::Tool, "c", None) && !r.ruled_out(Target::Tool, "b", None));
        // Under `||` or `!`, nothing is a guard.
        for when in [r#"tool.name == "rm" || true"#, r#"!(tool.name == "rm")"#, r#"tool.name != "rm""#] {
            assert!(!rule(when).ruled_out(Target::Tool, "ls", None), "{when}");
        }
    }

    #[test]
    fn numbers_keep_their_kind() {
        assert_eq!(to_cel(&serde_json::json!(3)), Cel::Int(3));
        assert_eq!(to_cel(&serde_json::json!(u64::MAX)), Cel::UInt(u64::MAX));
        assert_eq!(to_cel(&serde_json::json!(1.5)), Cel::Float(1.5));
    }
}
