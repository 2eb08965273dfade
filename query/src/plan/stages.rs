//! Named intermediate values of one row, computed inside a single SQL
//! expression.
//!
//! Why not one `SELECT` layer per value, or aliases? ClickHouse 25.8's
//! analyzer hashes every expression it resolves, and a column's hash takes
//! in the whole subquery the column comes from (fixed upstream in 2026,
//! ClickHouse PRs #106957 and #107516). A plan that stacks a layer per
//! intermediate value thus costs the square of its size to analyse: 1-5 s
//! for a `rate` of native histograms, more than running it. Aliases in one
//! layer are worse: their shared subtrees are hashed once per use. A
//! lambda's argument is hashed with that lambda's body alone, so a chain
//! written as `arrayMap((a, b) -> tuple(a, b, next), [tuple(first, ..)])`
//! costs each step only its own size, and ClickHouse still computes every value once.
//!
//! Each step is a lambda whose parameters are the values before it (a
//! tuple's elements spread over the parameters), so every expression is
//! written with the names of the values it reads, and a step carries on
//! only the values a later step or the result reads. Names must not be
//! those of the lambdas' own parameters inside the expressions (`x`, `i`,
//! ...); the planner's start with `_` or are the row's `w` and `t`.

/// A chain of named values over one row; see the module documentation.
/// Each step carries on only the values a later step or the result reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stages {
    /// The values of each step, by name, as written.
    steps: Vec<Vec<(String, String)>>,
}

impl Stages {
    /// The first values, taken from the row's columns or any expression
    /// of them (written as they are: no names are bound yet).
    pub(crate) fn start<N: AsRef<str>, E: AsRef<str>>(values: &[(N, E)]) -> Self {
        Stages::default().then(values)
    }

    /// Adds values computed from the ones before; every earlier value
    /// stays available by name. A value reads the steps before it, never
    /// another value of its own step.
    pub(crate) fn then<N: AsRef<str>, E: AsRef<str>>(mut self, values: &[(N, E)]) -> Self {
        self.steps.push(
            values
                .iter()
                .map(|(n, e)| (n.as_ref().to_string(), e.as_ref().to_string()))
                .collect(),
        );
        self
    }

    /// The expression `value` over the named values: the chain's result.
    pub(crate) fn finish(self, value: &str) -> String {
        // What must be carried out of each step: the names read after it.
        let mut live_after = vec![Vec::new(); self.steps.len()];
        let mut live: Vec<String> = words(value);
        for (k, step) in self.steps.iter().enumerate().rev() {
            live_after[k] = live.clone();
            live.retain(|w| !step.iter().any(|(n, _)| n == w));
            for (_, e) in step {
                live.extend(words(e));
            }
        }
        let mut names: Vec<String> = Vec::new();
        let mut expr = String::new();
        for (k, step) in self.steps.iter().enumerate() {
            let keep = |n: &String| live_after[k].contains(n);
            let mut next: Vec<(String, String)> = names
                .iter()
                .filter(|n| keep(n) && !step.iter().any(|(m, _)| m == *n))
                .map(|n| (n.clone(), n.clone()))
                .collect();
            next.extend(step.iter().filter(|(n, _)| keep(n)).cloned());
            let value = one_value(&next);
            expr = if k == 0 {
                format!("[{value}]")
            } else {
                format!("arrayMap({} -> {value}, {expr})", parameters(&names))
            };
            names = next.into_iter().map(|(n, _)| n).collect();
        }
        if expr.is_empty() {
            return value.to_string();
        }
        format!("arrayMap({} -> {value}, {expr})[1]", parameters(&names))
    }
}

/// The value a step hands on: its values as a tuple, or its one value
/// alone (a lambda of one parameter takes a tuple whole).
fn one_value(values: &[(String, String)]) -> String {
    match values {
        [] => "0".to_string(),
        [(_, v)] => v.clone(),
        _ => {
            let items: Vec<&str> = values.iter().map(|(_, v)| v.as_str()).collect();
            format!("tuple({})", items.join(", "))
        }
    }
}

/// The lambda parameters reading a step's value: one per name (a tuple's
/// elements are spread over several parameters).
fn parameters(names: &[String]) -> String {
    match names {
        [] => "_".to_string(),
        [n] => n.clone(),
        _ => format!("({})", names.join(", ")),
    }
}

/// The words of `expr` that may be names: identifiers, but not tuple
/// fields (after a dot), strings or numbers.
fn words(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let c = bytes[i];
        if c == b'\'' {
            // A string literal (with `\'` escapes).
            i += 1;
            while i < bytes.len() && bytes[i] != b'\'' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            if !c.is_ascii_digit() && !expr[..start].ends_with('.') {
                words.push(expr[start..i].to_string());
            }
        } else {
            i += 1;
        }
    }
    words
}

/// `body` with each name of `values` bound to its value, each computed
/// once: `arrayMap((a, b) -> body, [va], [vb])[1]`. For a large value used
/// several times (pasting it would have ClickHouse analyse each copy).
pub(crate) fn let_in(values: &[(&str, &str)], body: &str) -> String {
    let names: Vec<&str> = values.iter().map(|(n, _)| *n).collect();
    let arrays: Vec<String> = values.iter().map(|(_, v)| format!("[{v}]")).collect();
    format!(
        "arrayMap(({}) -> {body}, {})[1]",
        names.join(", "),
        arrays.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_reads_the_values_before_by_name_and_carries_only_the_live_ones() {
        let sql = Stages::start(&[("w", "w"), ("t", "t"), ("_unused", "f(w)")])
            .then(&[("_n", "length(w)")])
            .then(&[(
                "_last",
                "if(_n > 0, w[_n].2.count, 0) + arrayCount(x -> x.t > t, w)",
            )])
            .finish("tuple(_last, t)");
        assert_eq!(
            sql,
            "arrayMap((t, _last) -> tuple(_last, t), \
             arrayMap((w, t, _n) -> tuple(t, if(_n > 0, w[_n].2.count, 0) + arrayCount(x -> x.t > t, w)), \
             arrayMap((w, t) -> tuple(w, t, length(w)), [tuple(w, t)])))[1]"
        );
    }

    #[test]
    fn a_single_value_is_not_a_tuple() {
        let sql = Stages::start(&[("_a", "f(x)")])
            .then(&[("_b", "_a + 1")])
            .finish("_b * 2");
        assert_eq!(
            sql,
            "arrayMap(_b -> _b * 2, arrayMap(_a -> _a + 1, [f(x)]))[1]"
        );
    }

    #[test]
    fn let_binds_each_value_once() {
        assert_eq!(
            let_in(&[("_h", "f(x)"), ("_k", "2")], "_h * _k + _h"),
            "arrayMap((_h, _k) -> _h * _k + _h, [f(x)], [2])[1]"
        );
    }
}
