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
const MAX_DURATION_SECS: f64 = 9_223_372_036.854_775_807;

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
    secs > MAX_DURATION_SECS || secs < -MAX_DURATION_SECS
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
    pub(crate) fn new_matrix_selector_expr(expr: Expr, range: DurationExpr) -> Result<Expr, String> {
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
