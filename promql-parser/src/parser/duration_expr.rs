// Copyright 2023 Greptime Team
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! Duration expressions (Prometheus 3's `duration_expr`), added by Comet's fork.
//!
//! Inside `[...]` (the range of a matrix selector, the range and step of a subquery)
//! and after `offset`, Prometheus accepts arithmetic on numbers (seconds) and
//! durations, `step()`, `range()`, `min_of(a, b)` and `max_of(a, b)`. A plain literal
//! (possibly signed) keeps the old representation: only the `Duration`/`Offset` field
//! is set and the `*_expr` field stays `None`. Any other expression is kept as written
//! in the `*_expr` field (for Display), and, when it has no `step()`/`range()`, also
//! evaluated at parse time into the `Duration`/`Offset` field. With `step()`/`range()`
//! the field stays unset (zero range, `None` step/offset) until
//! [`Expr::resolve_durations`] is called with the query's step and range.

use std::fmt;
use std::time::Duration;

use crate::parser::ast::{Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector};
use crate::parser::token::{TokenId, T_ADD, T_DIV, T_MAX_OF, T_MOD, T_MUL, T_POW, T_SUB};

/// The largest number of seconds a duration may have: Prometheus stores durations as
/// int64 nanoseconds.
const MAX_DURATION_SECS: f64 = (1u64 << 63) as f64 / 1e9;

/// An arithmetic operator of a duration expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

impl DurationOp {
    pub(crate) fn from_token(id: TokenId) -> Result<Self, String> {
        match id {
            T_ADD => Ok(Self::Add),
            T_SUB => Ok(Self::Sub),
            T_MUL => Ok(Self::Mul),
            T_DIV => Ok(Self::Div),
            T_MOD => Ok(Self::Mod),
            T_POW => Ok(Self::Pow),
            _ => Err("unexpected operator in duration expression".into()),
        }
    }
}

impl fmt::Display for DurationOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Add => "+",
            Self::Sub => "-",
            Self::Mul => "*",
            Self::Div => "/",
            Self::Mod => "%",
            Self::Pow => "^",
        })
    }
}

/// A duration expression as written, e.g. `5m + step() * 2`. Values are in seconds.
#[derive(Debug, Clone, PartialEq)]
pub enum DurationExpr {
    /// A number literal: seconds (`1800`). A sign in front is folded in (`-2`).
    Number(f64),
    /// A duration literal, as its number of seconds (`5m` is 300). A sign in front is
    /// folded in (`-5m`).
    Duration(f64),
    /// `step()`: the query's step (resolution).
    Step,
    /// `range()`: the query's range (end - start; zero for an instant query).
    Range,
    /// Unary minus on a non-literal (`-step()`, `-(5m)`). A unary plus is dropped.
    Neg(Box<DurationExpr>),
    /// `lhs op rhs`.
    Binary {
        op: DurationOp,
        lhs: Box<DurationExpr>,
        rhs: Box<DurationExpr>,
    },
    /// `min_of(a, b)`.
    MinOf(Box<DurationExpr>, Box<DurationExpr>),
    /// `max_of(a, b)`.
    MaxOf(Box<DurationExpr>, Box<DurationExpr>),
    /// Parentheses as written; directly nested ones collapse into one, as in
    /// Prometheus's printer (`((1h))` prints `(1h)`).
    Paren(Box<DurationExpr>),
}

impl DurationExpr {
    /// Whether this is a plain (possibly signed) number or duration literal.
    pub fn is_literal(&self) -> bool {
        matches!(self, Self::Number(_) | Self::Duration(_))
    }

    /// The value of a plain literal, in seconds.
    pub fn literal_value(&self) -> Option<f64> {
        match self {
            Self::Number(v) | Self::Duration(v) => Some(*v),
            _ => None,
        }
    }

    /// Whether the expression uses `step()` or `range()`, so can only be evaluated
    /// once the query's step and range are known.
    pub fn has_params(&self) -> bool {
        match self {
            Self::Number(_) | Self::Duration(_) => false,
            Self::Step | Self::Range => true,
            Self::Neg(e) | Self::Paren(e) => e.has_params(),
            Self::Binary { lhs, rhs, .. } => lhs.has_params() || rhs.has_params(),
            Self::MinOf(a, b) | Self::MaxOf(a, b) => a.has_params() || b.has_params(),
        }
    }

    /// Evaluates the expression to a number of seconds; `step()` and `range()` take
    /// the given values (seconds). Errors as Prometheus's durations.go does.
    pub fn eval(&self, step: f64, range: f64) -> Result<f64, String> {
        Ok(match self {
            Self::Number(v) | Self::Duration(v) => *v,
            Self::Step => step,
            Self::Range => range,
            Self::Neg(e) => -e.eval(step, range)?,
            Self::Paren(e) => e.eval(step, range)?,
            Self::MinOf(a, b) => {
                let (a, b) = (a.eval(step, range)?, b.eval(step, range)?);
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.min(b)
                }
            }
            Self::MaxOf(a, b) => {
                let (a, b) = (a.eval(step, range)?, b.eval(step, range)?);
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.max(b)
                }
            }
            Self::Binary { op, lhs, rhs } => {
                let (l, r) = (lhs.eval(step, range)?, rhs.eval(step, range)?);
                match op {
                    DurationOp::Add => l + r,
                    DurationOp::Sub => l - r,
                    DurationOp::Mul => l * r,
                    DurationOp::Div if r == 0.0 => return Err("division by zero".into()),
                    DurationOp::Div => l / r,
                    DurationOp::Mod if r == 0.0 => return Err("modulo by zero".into()),
                    DurationOp::Mod => l % r,
                    DurationOp::Pow => l.powf(r),
                }
            }
        })
    }

    /// Evaluates the expression as a range or step: it must be greater than 0.
    pub fn eval_range(&self, step: Duration, range: Duration) -> Result<Duration, String> {
        let secs = self.eval_checked(step, range, false)?;
        Ok(Duration::from_millis((secs * 1000.0) as u64))
    }

    /// Evaluates the expression as an offset, which may be negative or zero.
    pub fn eval_offset(&self, step: Duration, range: Duration) -> Result<Offset, String> {
        let secs = self.eval_checked(step, range, true)?;
        // Prometheus truncates to milliseconds: time.Duration(secs*1000) * time.Millisecond.
        let ms = (secs * 1000.0).trunc();
        if ms < 0.0 {
            Ok(Offset::Neg(Duration::from_millis((-ms) as u64)))
        } else {
            Ok(Offset::Pos(Duration::from_millis(ms as u64)))
        }
    }

    fn eval_checked(
        &self,
        step: Duration,
        range: Duration,
        allow_negative: bool,
    ) -> Result<f64, String> {
        let secs = self.eval(step.as_secs_f64(), range.as_secs_f64())?;
        if secs.is_nan() || secs.is_infinite() {
            return Err("duration is NaN or infinite".into());
        }
        if secs <= 0.0 && !allow_negative {
            return Err("duration must be greater than 0".into());
        }
        if out_of_range(secs) {
            return Err("duration is out of range".into());
        }
        Ok(secs)
    }

    /// Prometheus's `wrapParenDurationExpr`: parentheses around parentheses are one pair.
    pub(crate) fn paren(self) -> Self {
        match self {
            Self::Paren(_) => self,
            other => Self::Paren(Box::new(other)),
        }
    }

    /// A unary `+` or `-` (given as its token) in front of a duration expression.
    /// On a literal the sign is folded in; a `+` is otherwise dropped.
    pub(crate) fn unary(op: TokenId, e: Self) -> Result<Self, String> {
        let neg = op == T_SUB;
        match e {
            Self::Number(v) => checked_literal(Self::Number(if neg { -v } else { v })),
            Self::Duration(v) => checked_literal(Self::Duration(if neg { -v } else { v })),
            other if neg => Ok(Self::Neg(Box::new(other))),
            other => Ok(other),
        }
    }

    /// `lhs op rhs`, refusing a literal zero divisor as Prometheus's grammar does.
    pub(crate) fn binary(op: TokenId, lhs: Self, rhs: Self) -> Result<Self, String> {
        let op = DurationOp::from_token(op)?;
        let zero = rhs.literal_value() == Some(0.0);
        match op {
            DurationOp::Div if zero => Err("division by zero".into()),
            DurationOp::Mod if zero => Err("modulo by zero".into()),
            _ => Ok(Self::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            }),
        }
    }

    /// `min_of(a, b)` or `max_of(a, b)`, given the keyword's token.
    pub(crate) fn min_max(op: TokenId, a: Self, b: Self) -> Self {
        if op == T_MAX_OF {
            Self::MaxOf(Box::new(a), Box::new(b))
        } else {
            Self::MinOf(Box::new(a), Box::new(b))
        }
    }

    /// A range or step (`positive_duration_expr`): a literal must be greater than 0.
    pub(crate) fn positive(self) -> Result<Self, String> {
        match self.literal_value() {
            Some(v) if v <= 0.0 || v.is_nan() => Err("duration must be greater than 0".into()),
            _ => Ok(self),
        }
    }

    /// A literal's exact value as a range: seconds rounded to nanoseconds, as Prometheus.
    fn literal_duration(secs: f64) -> Duration {
        Duration::from_nanos((secs * 1e9).round() as u64)
    }
}

/// Whether a number of seconds is outside what a duration (int64 ns) can hold.
fn out_of_range(secs: f64) -> bool {
    !(-MAX_DURATION_SECS..=MAX_DURATION_SECS).contains(&secs)
}

/// A number or duration literal inside a duration expression: refused when it does
/// not fit a duration (Prometheus's `durationLiteralOutOfRange`).
pub(crate) fn checked_literal(e: DurationExpr) -> Result<DurationExpr, String> {
    match e.literal_value() {
        Some(v) if out_of_range(v) || v.is_nan() => Err("duration out of range".into()),
        _ => Ok(e),
    }
}

impl fmt::Display for DurationExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(v) => write!(f, "{}", crate::parser::NumberLiteral::new(*v)),
            Self::Duration(v) => write!(f, "{}", crate::parser::NumberLiteral::new_duration(*v)),
            Self::Step => f.write_str("step()"),
            Self::Range => f.write_str("range()"),
            Self::Neg(e) => write!(f, "-{e}"),
            Self::Binary { op, lhs, rhs } => write!(f, "{lhs} {op} {rhs}"),
            Self::MinOf(a, b) => write!(f, "min_of({a}, {b})"),
            Self::MaxOf(a, b) => write!(f, "max_of({a}, {b})"),
            Self::Paren(e) => write!(f, "({e})"),
        }
    }
}

/// Parse-time evaluation: a constant expression gives its value now, one with
/// `step()`/`range()` gives None (resolved later by [`Expr::resolve_durations`]).
fn const_range(e: &DurationExpr) -> Result<Option<Duration>, String> {
    if let Some(v) = e.literal_value() {
        return Ok(Some(DurationExpr::literal_duration(v)));
    }
    if e.has_params() {
        return Ok(None);
    }
    e.eval_range(Duration::ZERO, Duration::ZERO).map(Some)
}

fn const_offset(e: &DurationExpr) -> Result<Option<Offset>, String> {
    if let Some(v) = e.literal_value() {
        let d = DurationExpr::literal_duration(v.abs());
        return Ok(Some(if v < 0.0 {
            Offset::Neg(d)
        } else {
            Offset::Pos(d)
        }));
    }
    if e.has_params() {
        return Ok(None);
    }
    e.eval_offset(Duration::ZERO, Duration::ZERO).map(Some)
}

/// The `*_expr` field: None for a plain literal.
fn as_written(e: DurationExpr) -> Option<DurationExpr> {
    if e.is_literal() {
        None
    } else {
        Some(e)
    }
}

impl Expr {
    /// `expr[range]` with a duration expression as the range.
    pub(crate) fn new_matrix_selector_expr(
        expr: Expr,
        range: DurationExpr,
    ) -> Result<Expr, String> {
        match expr {
            Expr::VectorSelector(vs) => {
                if vs.offset.is_some() || vs.offset_expr.is_some() {
                    return Err("no offset modifiers allowed before range".into());
                }
                if vs.at.is_some() {
                    return Err("no @ modifiers allowed before range".into());
                }
                let d = const_range(&range)?.unwrap_or_default();
                Ok(Expr::MatrixSelector(MatrixSelector {
                    vs,
                    range: d,
                    range_expr: as_written(range),
                }))
            }
            _ => Err("ranges only allowed for vector selectors".into()),
        }
    }

    /// `expr[range:step]` with duration expressions.
    pub(crate) fn new_subquery_expr_de(
        expr: Expr,
        range: DurationExpr,
        step: Option<DurationExpr>,
    ) -> Result<Expr, String> {
        let range_d = const_range(&range)?.unwrap_or_default();
        let step_d = match &step {
            Some(s) => const_range(s)?,
            None => None,
        };
        Ok(Expr::Subquery(SubqueryExpr {
            expr: Box::new(expr),
            offset: None,
            at: None,
            range: range_d,
            step: step_d,
            range_expr: as_written(range),
            step_expr: step.and_then(as_written),
            offset_expr: None,
        }))
    }

    /// `expr offset <duration expression>`; can only be set once.
    pub(crate) fn offset_duration_expr(self, e: DurationExpr) -> Result<Expr, String> {
        let offset = const_offset(&e)?;
        let written = as_written(e);
        let set = |o: &mut Option<Offset>, oe: &mut Option<DurationExpr>| {
            if o.is_some() || oe.is_some() {
                return Err("offset may not be set multiple times".to_string());
            }
            *o = offset;
            *oe = written;
            Ok(())
        };
        match self {
            Expr::VectorSelector(mut vs) => {
                set(&mut vs.offset, &mut vs.offset_expr)?;
                Ok(Expr::VectorSelector(vs))
            }
            Expr::MatrixSelector(mut ms) => {
                set(&mut ms.vs.offset, &mut ms.vs.offset_expr)?;
                Ok(Expr::MatrixSelector(ms))
            }
            Expr::Subquery(mut s) => {
                set(&mut s.offset, &mut s.offset_expr)?;
                Ok(Expr::Subquery(s))
            }
            _ => Err("offset modifier must be preceded by an vector selector or matrix selector or a subquery".into()),
        }
    }

    /// `expr anchored` (`anchored == true`) or `expr smoothed`.
    pub(crate) fn range_modifier(self, anchored: bool) -> Result<Expr, String> {
        let name = if anchored { "anchored" } else { "smoothed" };
        let set = |vs: &mut VectorSelector| {
            if anchored {
                vs.anchored = true;
            } else {
                vs.smoothed = true;
            }
            if vs.anchored && vs.smoothed {
                Err("anchored and smoothed modifiers cannot be used together".to_string())
            } else {
                Ok(())
            }
        };
        match self {
            Expr::VectorSelector(mut vs) => {
                set(&mut vs)?;
                Ok(Expr::VectorSelector(vs))
            }
            Expr::MatrixSelector(mut ms) => {
                set(&mut ms.vs)?;
                Ok(Expr::MatrixSelector(ms))
            }
            Expr::Subquery(_) => Err(format!("{name} modifier is not supported for subqueries")),
            _ => Err(format!("{name} modifier not implemented")),
        }
    }

    /// Fills every range, step and offset written as a duration expression from that
    /// expression, with `step()` and `range()` taking the given values (the query's
    /// step, and its end - start, zero for an instant query). Constant expressions were
    /// already evaluated at parse time and give the same value again. Walks the whole
    /// AST without recursion.
    pub fn resolve_durations(&mut self, step: Duration, range: Duration) -> Result<(), String> {
        let mut stack: Vec<&mut Expr> = vec![self];
        while let Some(e) = stack.pop() {
            match e {
                Expr::VectorSelector(vs) => resolve_vs(vs, step, range)?,
                Expr::MatrixSelector(ms) => {
                    if let Some(re) = &ms.range_expr {
                        ms.range = re.eval_range(step, range)?;
                    }
                    resolve_vs(&mut ms.vs, step, range)?;
                }
                Expr::Subquery(sq) => {
                    if let Some(re) = &sq.range_expr {
                        sq.range = re.eval_range(step, range)?;
                    }
                    if let Some(se) = &sq.step_expr {
                        sq.step = Some(se.eval_range(step, range)?);
                    }
                    if let Some(oe) = &sq.offset_expr {
                        sq.offset = Some(oe.eval_offset(step, range)?);
                    }
                    stack.push(&mut sq.expr);
                }
                _ => push_children(e, &mut stack),
            }
        }
        Ok(())
    }
}

fn resolve_vs(vs: &mut VectorSelector, step: Duration, range: Duration) -> Result<(), String> {
    if let Some(oe) = &vs.offset_expr {
        vs.offset = Some(oe.eval_offset(step, range)?);
    }
    Ok(())
}

fn push_children<'a>(e: &'a mut Expr, stack: &mut Vec<&'a mut Expr>) {
    match e {
        Expr::Aggregate(a) => {
            if let Some(p) = &mut a.param {
                stack.push(p);
            }
            stack.push(&mut a.expr);
        }
        Expr::Unary(u) => stack.push(&mut u.expr),
        Expr::Binary(b) => {
            stack.push(&mut b.rhs);
            stack.push(&mut b.lhs);
        }
        Expr::Paren(p) => stack.push(&mut p.expr),
        Expr::Subquery(s) => stack.push(&mut s.expr),
        Expr::Call(c) => {
            for arg in c.args.args.iter_mut().rev() {
                stack.push(arg);
            }
        }
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => {}
    }
}

fn children(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Aggregate(a) => {
            let mut v: Vec<&Expr> = vec![&a.expr];
            if let Some(p) = &a.param {
                v.push(p);
            }
            v
        }
        Expr::Unary(u) => vec![&u.expr],
        Expr::Binary(b) => vec![&b.lhs, &b.rhs],
        Expr::Paren(p) => vec![&p.expr],
        Expr::Subquery(s) => vec![&s.expr],
        Expr::Call(c) => c.args.args.iter().map(|a| a.as_ref()).collect(),
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => vec![],
    }
}

/// Whether any range, step or offset in the AST uses `step()` or `range()`, so the
/// query needs [`Expr::resolve_durations`] before it is evaluated. Walks the whole AST
/// without recursion.
pub fn has_duration_params(expr: &Expr) -> bool {
    let uses = |e: &Option<DurationExpr>| e.as_ref().is_some_and(DurationExpr::has_params);
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        let found = match e {
            Expr::VectorSelector(vs) => uses(&vs.offset_expr),
            Expr::MatrixSelector(ms) => uses(&ms.range_expr) || uses(&ms.vs.offset_expr),
            Expr::Subquery(sq) => {
                uses(&sq.range_expr) || uses(&sq.step_expr) || uses(&sq.offset_expr)
            }
            _ => false,
        };
        if found {
            return true;
        }
        stack.extend(children(e));
    }
    false
}

/// Prometheus's "at least one non-empty matcher" check on the selectors that are
/// direct children of `expr` (and on a matrix selector's own selector). It runs as
/// each expression is built, so that a parent can exempt a child: `info()`'s second
/// argument may be a selector whose matchers all match the empty string
/// (`info(metric, {data=~".*"})`). A selector at the root is checked by `parse()`.
pub(crate) fn check_selector_children(expr: &Expr) -> Result<(), String> {
    match expr {
        Expr::MatrixSelector(ms) => check_vs_not_empty(&ms.vs),
        Expr::Call(c) => {
            for (i, arg) in c.args.args.iter().enumerate() {
                let exempt = c.func.name == "info" && i == 1;
                match arg.as_ref() {
                    Expr::VectorSelector(vs) if !exempt => check_vs_not_empty(vs)?,
                    _ => {}
                }
            }
            Ok(())
        }
        _ => {
            for child in children(expr) {
                if let Expr::VectorSelector(vs) = child {
                    check_vs_not_empty(vs)?;
                }
            }
            Ok(())
        }
    }
}

/// The check of [`check_selector_children`] for a selector that is the whole query.
pub(crate) fn check_root_selector(expr: &Expr) -> Result<(), String> {
    match expr {
        Expr::VectorSelector(vs) => check_vs_not_empty(vs),
        _ => Ok(()),
    }
}

fn check_vs_not_empty(vs: &VectorSelector) -> Result<(), String> {
    if vs.name.is_none() && vs.matchers.is_empty_matchers() {
        return Err("vector selector must contain at least one non-empty matcher".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{parse, Expr, NumberLiteral};
    use std::time::Duration;

    const STEP: Duration = Duration::from_secs(10);
    const RANGE: Duration = Duration::from_secs(60);

    /// Parses, checks the query prints as Prometheus's printer does.
    fn printed(input: &str, expected: &str) -> Expr {
        let expr = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(expr.to_string(), expected, "{input}");
        expr
    }

    fn matrix(e: &Expr) -> &MatrixSelector {
        match e {
            Expr::Call(c) => matrix(&c.args.args[0]),
            Expr::MatrixSelector(ms) => ms,
            other => panic!("not a matrix selector: {other:?}"),
        }
    }

    fn subquery(e: &Expr) -> &SubqueryExpr {
        match e {
            Expr::Call(c) => subquery(&c.args.args[0]),
            Expr::Subquery(sq) => sq,
            other => panic!("not a subquery: {other:?}"),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn constant_ranges_are_evaluated_at_parse_time() {
        // From Prometheus's duration_expression.test: each is 30m.
        let cases = [
            (
                "changes(http_requests[26m+4m])",
                "changes(http_requests[26m + 4m])",
            ),
            (
                "changes(http_requests[30m+0s])",
                "changes(http_requests[30m + 0s])",
            ),
            (
                "changes(http_requests[60*30])",
                "changes(http_requests[60 * 30])",
            ),
            (
                "changes(http_requests[2m*15])",
                "changes(http_requests[2m * 15])",
            ),
            (
                "changes(http_requests[2m*(10+5)])",
                "changes(http_requests[2m * (10 + 5)])",
            ),
            (
                "changes(http_requests[29m+60s])",
                "changes(http_requests[29m + 1m])",
            ),
            (
                "changes(http_requests[-5m+35m])",
                "changes(http_requests[-5m + 35m])",
            ),
            (
                "changes(http_requests[1h/2])",
                "changes(http_requests[1h / 2])",
            ),
            (
                "changes(http_requests[(9m30s+30s)*3])",
                "changes(http_requests[(9m30s + 30s) * 3])",
            ),
        ];
        for (input, expected) in cases {
            let e = printed(input, expected);
            let ms = matrix(&e);
            assert_eq!(ms.range, secs(1800), "{input}");
            assert!(ms.range_expr.is_some(), "{input}");
            assert!(!has_duration_params(&e));
        }
        // Modulo binds tighter than minus: 30m1s - (30m1s % 1m) = 30m.
        let e = printed(
            "changes(http_requests[30m1s-30m1s % 1m])",
            "changes(http_requests[30m1s - 30m1s % 1m])",
        );
        assert_eq!(matrix(&e).range, secs(1800));
        let e = printed(
            "changes(http_requests[1h30m % 1h])",
            "changes(http_requests[1h30m % 1h])",
        );
        assert_eq!(matrix(&e).range, secs(1800));
        let e = printed(
            "changes(http_requests[24m+((1.5*2m)+2m)])",
            "changes(http_requests[24m + ((1.5 * 2m) + 2m)])",
        );
        assert_eq!(matrix(&e).range, secs(1740));
    }

    #[test]
    fn plain_literals_keep_no_expression() {
        // A number is seconds; a literal (even signed) is not kept as an expression.
        let e = printed(
            "changes(http_requests[1800])",
            "changes(http_requests[30m])",
        );
        assert_eq!(matrix(&e).range, secs(1800));
        assert_eq!(matrix(&e).range_expr, None);
        let e = printed("foo offset -5m", "foo offset -5m");
        match &e {
            Expr::VectorSelector(vs) => {
                assert_eq!(vs.offset, Some(Offset::Neg(secs(300))));
                assert_eq!(vs.offset_expr, None);
            }
            _ => panic!(),
        }
        // Parentheses make it an expression, printed as written.
        let e = printed("foo[(1m)]", "foo[(1m)]");
        assert_eq!(matrix(&e).range, secs(60));
        assert_eq!(
            matrix(&e).range_expr,
            Some(DurationExpr::Paren(Box::new(DurationExpr::Duration(60.0))))
        );
        printed("foo offset -(5m)", "foo offset -(5m)");
    }

    #[test]
    fn subqueries() {
        let e = printed(
            "sum_over_time(metric1_total[29s+1s:5s+5s])",
            "sum_over_time(metric1_total[29s + 1s:5s + 5s])",
        );
        let sq = subquery(&e);
        assert_eq!((sq.range, sq.step), (secs(30), Some(secs(10))));
        let e = printed(
            "sum_over_time(metric1_total[29s+1s:((((8 - 2) / 3) * 7s) % 4) + 8000ms])",
            "sum_over_time(metric1_total[29s + 1s:((((8 - 2) / 3) * 7s) % 4) + 8s])",
        );
        assert_eq!(subquery(&e).step, Some(secs(10)));
        let e = printed(
            "sum_over_time(metric1_total[29s+1s:20*500ms] offset (20*(((((8 - 2) / 3) * 7s) % 4) + 8000ms)))",
            "sum_over_time(metric1_total[29s + 1s:20 * 500ms] offset (20 * (((((8 - 2) / 3) * 7s) % 4) + 8s)))",
        );
        let sq = subquery(&e);
        assert_eq!(sq.step, Some(secs(10)));
        assert_eq!(sq.offset, Some(Offset::Pos(secs(200))));
        let e = printed(
            "sum_over_time(metric1_total[29s+1s:20*500ms] offset -(20*(((((8 - 2) / 3) * 7s) % 4) + 8000ms)))",
            "sum_over_time(metric1_total[29s + 1s:20 * 500ms] offset -(20 * (((((8 - 2) / 3) * 7s) % 4) + 8s)))",
        );
        assert_eq!(subquery(&e).offset, Some(Offset::Neg(secs(200))));
        let e = printed("foo[5m:step()]", "foo[5m:step()]");
        let sq = subquery(&e);
        assert_eq!((sq.range, sq.step), (secs(300), None));
        assert_eq!(sq.step_expr, Some(DurationExpr::Step));
    }

    #[test]
    fn offset_precedence() {
        // `offset 100 + 2` is `(metric1_total offset 100) + 2`.
        let e = printed(
            "metric1_total offset 100 + 2",
            "metric1_total offset 1m40s + 2",
        );
        match &e {
            Expr::Binary(b) => match b.lhs.as_ref() {
                Expr::VectorSelector(vs) => assert_eq!(vs.offset, Some(Offset::Pos(secs(100)))),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        let e = printed(
            "metric1_total offset (100 + 2)",
            "metric1_total offset (100 + 2)",
        );
        match &e {
            Expr::VectorSelector(vs) => assert_eq!(vs.offset, Some(Offset::Pos(secs(102)))),
            other => panic!("{other:?}"),
        }
        for (input, expected) in [
            ("metric1_total offset 2 ^ 2", "metric1_total offset 2s ^ 2"),
            (
                "metric1_total offset -2 ^ 2",
                "metric1_total offset -2s ^ 2",
            ),
            (
                "metric1_total offset -2 * 2",
                "metric1_total offset -2s * 2",
            ),
            (
                "metric1_total offset step()*0",
                "metric1_total offset step() * 0",
            ),
            (
                "metric1_total offset -step()*2",
                "metric1_total offset -step() * 2",
            ),
            (
                "metric1_total offset step()^0",
                "metric1_total offset step() ^ 0",
            ),
            (
                "metric1_total offset min_of(step(), 1s)+8000",
                "metric1_total offset min_of(step(), 1s) + 8000",
            ),
            (
                "metric1_total offset -min_of(step(), 1s)+8000",
                "metric1_total offset -min_of(step(), 1s) + 8000",
            ),
            (
                "metric1_total offset -(min_of(step(), 1s))+8000",
                "metric1_total offset -(min_of(step(), 1s)) + 8000",
            ),
            (
                "metric1_total offset +min_of(step(), 1s)^0",
                "metric1_total offset min_of(step(), 1s) ^ 0",
            ),
            (
                "metric1_total offset -(min_of(step(), 2s)-5)+8000",
                "metric1_total offset -(min_of(step(), 2s) - 5) + 8000",
            ),
        ] {
            let e = printed(input, expected);
            assert!(matches!(e, Expr::Binary(_)), "{input}: {e:?}");
        }
        for (input, expected, offset) in [
            (
                "metric1_total offset (2 ^ 2)",
                "metric1_total offset (2 ^ 2)",
                4,
            ),
            (
                "metric1_total offset (2 * 2)",
                "metric1_total offset (2 * 2)",
                4,
            ),
            (
                "metric1_total offset (-2 * 2)",
                "metric1_total offset (-2 * 2)",
                -4,
            ),
            (
                "metric1_total offset (-2 ^ 2)",
                "metric1_total offset (-2 ^ 2)",
                -4,
            ),
            ("metric1_total offset -4", "metric1_total offset -4s", -4),
        ] {
            match printed(input, expected) {
                Expr::VectorSelector(vs) => {
                    let want = if offset < 0 {
                        Offset::Neg(secs(4))
                    } else {
                        Offset::Pos(secs(4))
                    };
                    assert_eq!(vs.offset, Some(want), "{input}");
                }
                other => panic!("{input}: {other:?}"),
            }
        }
    }

    #[test]
    fn step_and_range_are_resolved_later() {
        let cases = [
            (
                "count_over_time(metric1_total[step()])",
                "count_over_time(metric1_total[step()])",
                10_000,
            ),
            (
                "count_over_time(metric1_total[step()+1ms])",
                "count_over_time(metric1_total[step() + 1ms])",
                10_001,
            ),
            (
                "count_over_time(metric1_total[(step())+1])",
                "count_over_time(metric1_total[(step()) + 1])",
                11_000,
            ),
            (
                "count_over_time(metric1_total[1+(STep()-5)*2])",
                "count_over_time(metric1_total[1 + (step() - 5) * 2])",
                11_000,
            ),
            (
                "count_over_time(metric1_total[min_of(step()+1,1h)])",
                "count_over_time(metric1_total[min_of(step() + 1, 1h)])",
                11_000,
            ),
            (
                "count_over_time(metric1_total[max_of(min_of(step()+1,1h),1ms)])",
                "count_over_time(metric1_total[max_of(min_of(step() + 1, 1h), 1ms)])",
                11_000,
            ),
            (
                "count_over_time(metric1_total[((max_of(min_of((step()+1),((1h))),1ms)))])",
                "count_over_time(metric1_total[(max_of(min_of((step() + 1), (1h)), 1ms))])",
                11_000,
            ),
            (
                "count_over_time(metric1_total[range()])",
                "count_over_time(metric1_total[range()])",
                60_000,
            ),
        ];
        for (input, expected, ms) in cases {
            let mut e = printed(input, expected);
            assert!(has_duration_params(&e), "{input}");
            assert_eq!(matrix(&e).range, Duration::ZERO, "{input}");
            e.resolve_durations(STEP, RANGE).unwrap();
            assert_eq!(matrix(&e).range, Duration::from_millis(ms), "{input}");
            // Display still prints the expression.
            assert_eq!(e.to_string(), expected);
        }

        for (input, expected, offset) in [
            (
                "metric1_total offset STEP()",
                "metric1_total offset step()",
                Offset::Pos(STEP),
            ),
            (
                "metric1_total offset (step())",
                "metric1_total offset (step())",
                Offset::Pos(STEP),
            ),
            (
                "metric1_total offset (-step()*2)",
                "metric1_total offset (-step() * 2)",
                Offset::Neg(secs(20)),
            ),
            (
                "metric1_total offset (STEP()/10)",
                "metric1_total offset (step() / 10)",
                Offset::Pos(secs(1)),
            ),
            (
                "metric1_total offset min_of(step(), 1s)",
                "metric1_total offset min_of(step(), 1s)",
                Offset::Pos(secs(1)),
            ),
            (
                "metric1_total offset range()",
                "metric1_total offset range()",
                Offset::Pos(RANGE),
            ),
            (
                "metric1_total offset min_of(range(), 8s)",
                "metric1_total offset min_of(range(), 8s)",
                Offset::Pos(secs(8)),
            ),
        ] {
            let mut e = printed(input, expected);
            assert!(has_duration_params(&e));
            e.resolve_durations(STEP, RANGE).unwrap();
            match &e {
                Expr::VectorSelector(vs) => assert_eq!(vs.offset, Some(offset), "{input}"),
                other => panic!("{other:?}"),
            }
        }

        // Nested in a binary expression, a subquery and an aggregation.
        let mut e = printed(
            "sum(rate(foo[step()*2] offset range())) / max_over_time(bar[range():step()])",
            "sum(rate(foo[step() * 2] offset range())) / max_over_time(bar[range():step()])",
        );
        e.resolve_durations(STEP, RANGE).unwrap();
        let Expr::Binary(b) = &e else { panic!() };
        let Expr::Aggregate(a) = b.lhs.as_ref() else {
            panic!()
        };
        let ms = matrix(&a.expr);
        assert_eq!(
            (ms.range, ms.vs.offset.clone()),
            (secs(20), Some(Offset::Pos(RANGE)))
        );
        let sq = subquery(&b.rhs);
        assert_eq!((sq.range, sq.step), (RANGE, Some(STEP)));

        // An instant query has range() = 0: not a valid range.
        let mut e = parse("count_over_time(metric1_total[range()])").unwrap();
        assert_eq!(
            e.resolve_durations(STEP, Duration::ZERO),
            Err("duration must be greater than 0".to_string())
        );
        let mut e = parse("foo offset range()").unwrap();
        e.resolve_durations(STEP, Duration::ZERO).unwrap();
        let Expr::VectorSelector(vs) = &e else {
            panic!()
        };
        assert_eq!(vs.offset, Some(Offset::Pos(Duration::ZERO)));
        // step() - 10s = 0 at a 10s step; step() / (step() - 10s) divides by zero.
        let mut e = parse("foo[step() - 10s]").unwrap();
        assert_eq!(
            e.resolve_durations(STEP, RANGE),
            Err("duration must be greater than 0".to_string())
        );
        let mut e = parse("foo[1m / (step() - 10s)]").unwrap();
        assert_eq!(
            e.resolve_durations(STEP, RANGE),
            Err("division by zero".to_string())
        );
        let mut e = parse("foo[1e9 ^ (step() * 100)]").unwrap();
        assert_eq!(
            e.resolve_durations(STEP, RANGE),
            Err("duration is NaN or infinite".to_string())
        );
    }

    #[test]
    fn duration_expression_errors() {
        let cases = [
            ("foo[5m/0]", "division by zero"),
            ("foo[step()%0]", "modulo by zero"),
            ("foo offset (1m/0s)", "division by zero"),
            ("foo[0]", "duration must be greater than 0"),
            ("foo[-5m]", "duration must be greater than 0"),
            ("foo[5m:-1m]", "duration must be greater than 0"),
            ("foo[5m-5m]", "duration must be greater than 0"),
            ("foo[1m-2m]", "duration must be greater than 0"),
            ("foo[(1m/0.5)%(2m)]", "duration must be greater than 0"),
            ("foo[2 ^ 1000]", "duration is out of range"),
            ("foo[2 ^ 10000]", "duration is NaN or infinite"),
            ("foo[1e9 * 1e9]", "duration is out of range"),
            ("foo offset (1e9*1e9)", "duration is out of range"),
            ("foo offset 1s offset (2s)", "offset may not be set multiple times"),
            ("foo offset step() offset 1s", "offset may not be set multiple times"),
            ("foo offset (1m) offset 1s", "offset may not be set multiple times"),
            ("(foo + bar) offset (1m)", "offset modifier must be preceded by an vector selector or matrix selector or a subquery"),
            ("foo offset 1m [5m]", "no offset modifiers allowed before range"),
            ("foo offset (1m) [5m]", "no offset modifiers allowed before range"),
            ("foo[5m*x]", "unexpected character inside brackets: 'x'"),
            ("foo[5m] offset", "unexpected end of input in offset, expected duration"),
        ];
        for (input, err) in cases {
            assert_eq!(parse(input), Err(err.to_string()), "{input}");
        }
    }

    #[test]
    fn huge_durations_do_not_panic() {
        let cases = [
            ("foo[1e33]", "duration out of range"),
            ("foo[1e10]", "duration out of range"),
            ("foo offset 1e30", "duration out of range"),
            ("foo offset -1e30", "duration out of range"),
            ("foo[5m:1e300]", "duration out of range"),
            ("foo[1e33s]", "not a valid duration string: 1e33s"),
            ("foo[5m] offset 1e33s", "not a valid duration string: 1e33s"),
            ("foo[Inf]", "unexpected character inside brackets: 'I'"),
            ("foo offset Inf", "duration out of range"),
            ("foo offset NaN", "duration out of range"),
        ];
        for (input, err) in cases {
            assert_eq!(parse(input), Err(err.to_string()), "{input}");
        }
        assert_eq!(
            crate::util::parse_duration("1e33"),
            Err("duration out of range".to_string())
        );
        assert_eq!(
            crate::util::parse_duration("-1"),
            Err("duration out of range".to_string())
        );
        // The largest number of seconds that still fits.
        assert!(parse("foo[9223372036]").is_ok());
    }

    #[test]
    fn duration_expr_display() {
        use DurationExpr as D;
        let e = D::Binary {
            op: DurationOp::Mul,
            lhs: Box::new(D::Neg(Box::new(D::Step))),
            rhs: Box::new(D::MaxOf(
                Box::new(D::Number(1.5)),
                Box::new(D::Duration(90.0)),
            )),
        };
        assert_eq!(e.to_string(), "-step() * max_of(1.5, 1m30s)");
        assert_eq!(D::Paren(Box::new(D::Range)).to_string(), "(range())");
        assert_eq!(D::Duration(-300.0).to_string(), "-5m");
        assert_eq!(e.eval(10.0, 0.0), Ok(-900.0));
        assert!(e.has_params());
        assert_eq!(NumberLiteral::new_duration(0.0).to_string(), "0s");
    }
}
