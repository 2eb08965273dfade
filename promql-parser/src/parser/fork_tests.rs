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

//! Tests of the syntax Comet's fork adds (see CHANGES.md); duration expressions are
//! tested in duration_expr.rs.

use crate::parser::token::{T_ADD, T_SUB, T_TRIM_LOWER, T_TRIM_UPPER};
use crate::parser::{parse, Expr, UnaryExpr, VectorSelector};

fn printed(input: &str, expected: &str) -> Expr {
    let expr = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
    assert_eq!(expr.to_string(), expected, "{input}");
    expr
}

fn selector(e: &Expr) -> &VectorSelector {
    match e {
        Expr::Call(c) => selector(&c.args.args[0]),
        Expr::MatrixSelector(ms) => &ms.vs,
        Expr::VectorSelector(vs) => vs,
        other => panic!("no selector: {other:?}"),
    }
}

fn fails(input: &str, err: &str) {
    assert_eq!(parse(input), Err(err.to_string()), "{input}");
}

#[test]
fn numbers_written_as_durations() {
    for (input, expected, val) in [
        (
            "predict_linear(x[1h], 1h)",
            "predict_linear(x[1h], 1h)",
            3600.0,
        ),
        ("time() - 1h", "time() - 1h", 3600.0),
        ("-1h30m", "-1h30m", -5400.0),
        ("0s", "0s", 0.0),
        ("1", "1", 1.0),
    ] {
        let e = printed(input, expected);
        let nl = match &e {
            Expr::Call(c) => c.args.args[1].as_ref().clone(),
            Expr::Binary(b) => b.rhs.as_ref().clone(),
            other => other.clone(),
        };
        match nl {
            Expr::NumberLiteral(nl) => {
                assert_eq!(nl.val, val, "{input}");
                assert_eq!(nl.duration, input != "1", "{input}");
            }
            other => panic!("{input}: {other:?}"),
        }
    }
    // Fill values and @ take durations as seconds.
    printed("x + on(a) fill(1h) y", "x + on (a) fill (3600) y");
    printed("x @ 1m", "x @ 60.000");
}

#[test]
fn anchored_and_smoothed() {
    let e = printed("rate(x[5m] anchored)", "rate(x[5m] anchored)");
    assert!(selector(&e).anchored && !selector(&e).smoothed);
    let e = printed("increase(x[1m] smoothed)", "increase(x[1m] smoothed)");
    assert!(selector(&e).smoothed && !selector(&e).anchored);
    // With @ and offset, in either order; printed as Prometheus's printer does.
    printed("x[5m] anchored offset 1m", "x[5m] anchored offset 1m");
    printed("x[5m] offset 1m anchored", "x[5m] anchored offset 1m");
    printed("x[5m] @ 10 smoothed", "x[5m] smoothed @ 10.000");
    printed("x @ 10 anchored offset 1m", "x @ 10.000 anchored offset 1m");
    let e = printed("x smoothed", "x smoothed");
    assert!(selector(&e).smoothed);
    // Binds tighter than a binary operator.
    let e = printed("a + b anchored", "a + b anchored");
    let Expr::Binary(b) = &e else { panic!() };
    assert!(selector(&b.rhs).anchored && !selector(&b.lhs).anchored);

    fails(
        "x[5m] anchored smoothed",
        "anchored and smoothed modifiers cannot be used together",
    );
    fails(
        "x smoothed anchored",
        "anchored and smoothed modifiers cannot be used together",
    );
    fails(
        "x[5m:1m] anchored",
        "anchored modifier is not supported for subqueries",
    );
    fails(
        "x[5m:1m] smoothed",
        "smoothed modifier is not supported for subqueries",
    );
    fails("rate(x[5m]) anchored", "anchored modifier not implemented");
    fails("1 smoothed", "smoothed modifier not implemented");
}

#[test]
fn new_keywords_are_still_names() {
    for q in [
        "anchored",
        "smoothed",
        "step",
        "range",
        "min_of",
        "max_of",
        "rate(anchored[5m] anchored)",
        r#"smoothed{anchored="3",range="1",step="2"}"#,
        "sum by (step, range, anchored, smoothed, min_of, max_of) (x)",
        "step + range",
    ] {
        printed(q, q);
    }
    // step(), range(), min_of() and max_of() are also functions.
    printed("max_of(1, 2)", "max_of(1, 2)");
    printed("min_of(time(), 2)", "min_of(time(), 2)");
    printed("step()", "step()");
    fails("STEP()", "unknown function with name 'STEP'");
}

#[test]
fn trim_operators() {
    for (input, op) in [
        ("h_test >/ -Inf", T_TRIM_LOWER),
        ("h_test </ +Inf", T_TRIM_UPPER),
        ("h_test </ 1.4142135624", T_TRIM_UPPER),
        ("h_test_2 </ 1.13", T_TRIM_UPPER),
    ] {
        let e = parse(input).unwrap();
        let Expr::Binary(b) = &e else {
            panic!("{input}")
        };
        assert_eq!(b.op.id(), op, "{input}");
    }
    printed("h_test >/ -Inf", "h_test >/ -Inf");
    printed("h_test </ 0", "h_test </ 0");
    // Same precedence as comparisons: below +, above and.
    let e = printed("a </ b + 1", "a </ b + 1");
    let Expr::Binary(b) = &e else { panic!() };
    assert_eq!(b.op.id(), T_TRIM_UPPER);
    let e = printed("a >/ 1 and b", "a >/ 1 and b");
    let Expr::Binary(b) = &e else { panic!() };
    assert!(matches!(b.lhs.as_ref(), Expr::Binary(l) if l.op.id() == T_TRIM_LOWER));
    // Left-associative with the comparisons.
    let e = parse("a > b </ c").unwrap();
    let Expr::Binary(b) = &e else { panic!() };
    assert_eq!(b.op.id(), T_TRIM_UPPER);
    fails(
        "a </ bool 1",
        "bool modifier can only be used on comparison operators",
    );
    // `< /` is still a comparison followed by a syntax error.
    assert!(parse("a < /b").is_err());
}

#[test]
fn info_data_label_selector_may_match_empty() {
    printed(
        r#"info(metric, {data=~".*"})"#,
        r#"info(metric, {data=~".*"})"#,
    );
    printed(
        r#"info(metric_not_matching_target_info, {data=~".*"})"#,
        r#"info(metric_not_matching_target_info, {data=~".*"})"#,
    );
    printed(
        r#"info(metric, {data=~".+"})"#,
        r#"info(metric, {data=~".+"})"#,
    );
    let err = "vector selector must contain at least one non-empty matcher";
    fails(r#"info({data=~".*"})"#, err);
    fails(r#"info({data=~".*"}, {data=~".*"})"#, err);
    fails(r#"rate({a=~".*"}[5m])"#, err);
    fails(r#"x + {a=""}"#, err);
    fails(r#"{a=""}"#, err);
    fails(r#"sum({a=""})"#, err);
    fails(r#"label_replace({a=""}, "a", "b", "c", "d")"#, err);
}

#[test]
fn unary_plus() {
    let e = printed("+x", "+x");
    assert_eq!(
        e,
        Expr::Unary(UnaryExpr::plus(Expr::from(VectorSelector::from("x"))))
    );
    let Expr::Unary(u) = &e else { panic!() };
    assert_eq!(u.op.id(), T_ADD);
    assert!(!u.is_neg());
    let e = printed("-x", "-x");
    let Expr::Unary(u) = &e else { panic!() };
    assert_eq!(u.op.id(), T_SUB);
    printed("-(+x)", "-(+x)");
    printed("+sum(x)", "+sum(x)");
    printed("+(1)", "+(1)");
    // On a number literal the sign is folded in.
    assert_eq!(printed("+1", "1"), Expr::from(1.0));
    assert_eq!(printed("-+1", "-1"), Expr::from(-1.0));
    fails(
        r#"+"s""#,
        "unary expression only allowed on expressions of type scalar or vector, got: string",
    );
    fails(
        "+x[5m]",
        "unary expression only allowed on expressions of type scalar or vector, got: matrix",
    );
}
