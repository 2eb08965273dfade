//! Binary operators: arithmetic, comparisons (filtering or `bool`), set
//! operators, and vector matching (`on`, `ignoring`, `group_left`,
//! `group_right`).

use promql_parser::parser::{BinModifier, BinaryExpr, Expr, LabelModifier, VectorMatchCardinality};

use super::functions::unparen;
use super::native::no_histogram;
use super::native_arith::{HistogramFloatOp, histogram_sum};
use super::native_ops::{FLOAT_COLUMNS, MIXED_COLUMNS, histograms_equal};
use super::series::SeriesRel;
use super::{Grid, Node, PlanError, Planner, Scalar, bad, fail_if, lit};

/// The SQL of `l op r` for arithmetic and comparison operators.
pub(crate) fn op_sql(op: &str, l: &str, r: &str) -> Result<String, PlanError> {
    Ok(match op {
        "+" | "-" | "*" | "/" => format!("(({l}) {op} ({r}))"),
        "%" => format!("(({l}) % ({r}))"),
        "^" => format!("pow({l}, {r})"),
        "atan2" => format!("atan2({l}, {r})"),
        // NaN never equals anything; spelled out because ClickHouse may turn
        // an equality between join sides into a join key, where NaN = NaN.
        "==" => format!("((({l}) = ({r})) AND NOT isNaN({l}))"),
        "!=" | ">" | "<" | ">=" | "<=" => format!("(({l}) {op} ({r}))"),
        other => return Err(bad(format!("operator {other:?} not allowed here"))),
    })
}

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

/// A label set as Prometheus prints it: `{a="x", b="y"}`.
fn labels_text(labels: &str) -> String {
    format!(
        "concat('{{', arrayStringConcat(arrayMap(x -> concat(x.1, '=\"', \
         replaceAll(replaceAll(replaceAll(x.2, '\\\\', '\\\\\\\\'), '\"', '\\\\\"'), '\\n', '\\\\n'), '\"'), {labels}), ', '), '}}')"
    )
}
/// Whether `e` yields at most one series per matching signature, so that
/// vector matching cannot find two on that side: an aggregation whose
/// output labels the signature fully keeps (`sum(x) / on() sum(y)`,
/// `sum by (job) (a) / sum by (job) (b)`), also under arithmetic with a
/// number. Unknown shapes are not.
fn unique_per_signature(e: &Expr, matching: Option<&LabelModifier>) -> bool {
    match unparen(e) {
        Expr::Aggregate(a) => {
            let op = a.op.to_string().to_lowercase();
            // These keep their input series (and labels) or add a label.
            if matches!(
                op.as_str(),
                "topk" | "bottomk" | "limitk" | "limit_ratio" | "count_values"
            ) {
                return false;
            }
            match (&a.modifier, matching) {
                // Output labels `by`: distinct outputs differ in one of
                // them, which `on` must keep and `ignoring` must not drop.
                (None, _) => true,
                (Some(LabelModifier::Include(by)), Some(LabelModifier::Include(on))) => {
                    by.labels.iter().all(|l| on.labels.contains(l))
                }
                (Some(LabelModifier::Include(by)), Some(LabelModifier::Exclude(ign))) => {
                    by.labels.iter().all(|l| !ign.labels.contains(l))
                }
                (Some(_), None) => true,
                (Some(LabelModifier::Exclude(_)), Some(LabelModifier::Exclude(ign))) => {
                    ign.labels.is_empty()
                }
                (Some(LabelModifier::Exclude(_)), Some(LabelModifier::Include(_))) => false,
            }
        }
        Expr::Binary(b) => match (unparen(&b.lhs), unparen(&b.rhs)) {
            (Expr::NumberLiteral(_), v) | (v, Expr::NumberLiteral(_)) => {
                unique_per_signature(v, matching)
            }
            _ => false,
        },
        _ => false,
    }
}

/// `e` as one step of an arithmetic chain: arithmetic with a number on
/// one side and something else on the other; that operand, the number,
/// and whether the number is on the left.
fn chain_step(e: &BinaryExpr) -> Option<(&Expr, f64, bool)> {
    let op = e.op.to_string().to_lowercase();
    if !matches!(op.as_str(), "+" | "-" | "*" | "/" | "%" | "^" | "atan2") {
        return None;
    }
    match (unparen(&e.lhs), unparen(&e.rhs)) {
        (Expr::NumberLiteral(_), Expr::NumberLiteral(_)) => None,
        (operand, Expr::NumberLiteral(n)) => Some((operand, n.val, false)),
        (Expr::NumberLiteral(n), operand) => Some((operand, n.val, true)),
        _ => None,
    }
}

/// Prometheus's one-to-one error, as an SQL string.
const ONE_TO_ONE: &str =
    "'multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)'";

/// Which sides of a vector matching hold one series per signature.
#[derive(Debug, Clone, Copy)]
struct Unique {
    left: bool,
    right: bool,
}

impl Planner {
    /// The matching signature of the label column `col`: all labels but
    /// the name unless `on`/`ignoring` say otherwise.
    fn signature(&mut self, matching: Option<&LabelModifier>, col: &str) -> String {
        match matching {
            Some(m) => self.grouping_labels(m, col),
            None => self.drop_labels(&["__name__".to_string()], col),
        }
    }

    pub(crate) fn binary(&mut self, b: &BinaryExpr, grid: &Grid) -> Result<Node, PlanError> {
        if let Some(node) = self.arithmetic_chain(b, grid)? {
            return Ok(node);
        }
        let lhs = self.node(&b.lhs, grid)?;
        let rhs = self.node(&b.rhs, grid)?;
        self.combine(b, lhs, rhs, grid)
    }

    /// `v / 1024 / 1024`, `v * 8 / 1000`: arithmetic with numbers, two or
    /// more operators deep, over one operand. A series-major operand takes
    /// all of them in one map of its values (each layer of a statement
    /// costs ClickHouse's analyzer about 2 ms); the operations and their
    /// order are unchanged, so the values are too. `None` when `b` is not
    /// such a chain.
    fn arithmetic_chain(&mut self, b: &BinaryExpr, grid: &Grid) -> Result<Option<Node>, PlanError> {
        // From the outermost operator in: each step's number, and whether
        // it is the left operand.
        let Some((mut operand, number, number_left)) = chain_step(b) else {
            return Ok(None);
        };
        let mut steps: Vec<(&BinaryExpr, f64, bool)> = vec![(b, number, number_left)];
        while let Expr::Binary(inner) = operand {
            let Some((next, number, number_left)) = chain_step(inner) else {
                break;
            };
            steps.push((inner, number, number_left));
            operand = next;
        }
        if steps.len() < 2 {
            return Ok(None);
        }
        let node = self.node(operand, grid)?;
        if let Node::Series(rel) = &node {
            let mut value = "x".to_string();
            for (step, number, number_left) in steps.iter().rev() {
                let op = step.op.to_string().to_lowercase();
                value = if *number_left {
                    op_sql(&op, &lit(*number), &value)?
                } else {
                    op_sql(&op, &value, &lit(*number))?
                };
            }
            return Ok(Some(Node::Series(self.series_map(
                rel,
                &value,
                "toUInt8(1)",
            ))));
        }
        // Another operand: one operator at a time, as without the chain.
        let mut node = node;
        for (step, number, number_left) in steps.iter().rev() {
            let number = Node::Scalar(Scalar::Lit(*number));
            node = if *number_left {
                self.combine(step, number, node, grid)?
            } else {
                self.combine(step, node, number, grid)?
            };
        }
        Ok(Some(node))
    }

    /// `b`'s operator applied to its planned operands.
    fn combine(
        &mut self,
        b: &BinaryExpr,
        lhs: Node,
        rhs: Node,
        grid: &Grid,
    ) -> Result<Node, PlanError> {
        let op = b.op.to_string().to_lowercase();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        // A series-major vector with a constant scalar stays series-major.
        let comparison = is_comparison(&op);
        let op_of = |l: &str, r: &str| op_sql(&op, l, r);
        if let Some(node) = self.mixed_vectors(b, &op, &lhs, &rhs, grid)? {
            return Ok(node);
        }
        match (&lhs, &rhs) {
            (Node::Series(v), Node::Scalar(s)) => {
                if let Some(rel) =
                    self.series_scalar_op(v, &op_of, comparison, s, false, return_bool)?
                {
                    return Ok(Node::Series(rel));
                }
            }
            (Node::Scalar(s), Node::Series(v)) => {
                if let Some(rel) =
                    self.series_scalar_op(v, &op_of, comparison, s, true, return_bool)?
                {
                    return Ok(Node::Series(rel));
                }
            }
            (Node::Series(l), Node::Series(r))
                if !matches!(op.as_str(), "and" | "or" | "unless") =>
            {
                // group_left/group_right and fill() read rows.
                let one_to_one = b.modifier.as_ref().is_none_or(|m| {
                    matches!(m.card, VectorMatchCardinality::OneToOne)
                        && m.fill_values.lhs.is_none()
                        && m.fill_values.rhs.is_none()
                });
                if one_to_one {
                    let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
                    let unique = Unique {
                        left: unique_per_signature(&b.lhs, matching),
                        right: unique_per_signature(&b.rhs, matching),
                    };
                    let rel = self.series_one_to_one(&op, l, r, matching, return_bool, unique)?;
                    return Ok(Node::Series(rel.into()));
                }
            }
            _ => {}
        }
        // Histograms are left out where they are not evaluated yet.
        let as_rows = |planner: &Planner, node: Node| match node {
            Node::Series(rel) => Node::Vector(planner.series_rows(&rel, grid)),
            Node::Mixed(rel) => Node::Vector(Planner::float_rows(&rel)),
            other => other,
        };
        let lhs = as_rows(self, lhs);
        let rhs = as_rows(self, rhs);
        match (lhs, rhs) {
            (Node::Scalar(l), Node::Scalar(r)) => self.scalar_scalar(&op, l, r, grid),
            (Node::Vector(v), Node::Scalar(s)) => {
                self.vector_scalar(&op, &v, s, false, return_bool)
            }
            (Node::Scalar(s), Node::Vector(v)) => self.vector_scalar(&op, &v, s, true, return_bool),
            (Node::Vector(l), Node::Vector(r)) => {
                let modifier = b.modifier.clone().unwrap_or(BinModifier {
                    card: VectorMatchCardinality::OneToOne,
                    matching: None,
                    return_bool: false,
                    fill_values: Default::default(),
                });
                let fills = &modifier.fill_values;
                match op.as_str() {
                    "and" | "or" | "unless" if fills.lhs.is_some() || fills.rhs.is_some() => {
                        Err(bad(format!(
                            "fill modifiers are not allowed with the set operator {op}"
                        )))
                    }
                    "and" | "or" | "unless" => Ok(Node::Vector(self.set_operation(
                        &op,
                        &l,
                        &r,
                        &modifier,
                        FLOAT_COLUMNS,
                    ))),
                    _ => self.vector_vector(&op, &l, &r, &modifier, false),
                }
            }
            _ => Err(bad(
                "binary expression must contain only scalar and instant vector types",
            )),
        }
    }

    fn scalar_scalar(
        &mut self,
        op: &str,
        l: Scalar,
        r: Scalar,
        grid: &Grid,
    ) -> Result<Node, PlanError> {
        let comparison = is_comparison(op);
        let wrap = |e: String| {
            if comparison {
                format!("toFloat64({e})")
            } else {
                e
            }
        };
        if let (Scalar::Lit(a), Scalar::Lit(b)) = (&l, &r)
            && !comparison
        {
            let folded = match op {
                "+" => Some(a + b),
                "-" => Some(a - b),
                "*" => Some(a * b),
                "/" => Some(a / b),
                "^" => Some(a.powf(*b)),
                "%" => Some(a % b),
                "atan2" => Some(a.atan2(*b)),
                _ => None,
            };
            if let Some(v) = folded {
                return Ok(Node::Scalar(Scalar::Lit(v)));
            }
        }
        let as_expr = |s: &Scalar| match s {
            Scalar::Lit(v) => Some(lit(*v)),
            Scalar::Expr(e) => Some(format!("({e})")),
            Scalar::Rel(_) => None,
        };
        if let (Some(a), Some(b)) = (as_expr(&l), as_expr(&r)) {
            return Ok(Node::Scalar(Scalar::Expr(wrap(op_sql(op, &a, &b)?))));
        }
        let lrel = self.scalar_rel(l, grid);
        let rrel = self.scalar_rel(r, grid);
        let value = wrap(op_sql(op, "a.v", "b.v")?);
        Ok(Node::Scalar(Scalar::Rel(format!(
            "SELECT a.t AS t, {value} AS v FROM ({lrel}) AS a INNER JOIN ({rrel}) AS b ON a.t = b.t"
        ))))
    }

    fn vector_scalar(
        &mut self,
        op: &str,
        rel: &str,
        s: Scalar,
        scalar_left: bool,
        return_bool: bool,
    ) -> Result<Node, PlanError> {
        let (from, sv) = self.with_scalar(rel, s, "p1");
        let (l, r) = if scalar_left {
            (sv.as_str(), "a.v")
        } else {
            ("a.v", sv.as_str())
        };
        let expr = op_sql(op, l, r)?;
        let (value, cond, dn) = if is_comparison(op) {
            if return_bool {
                (format!("toFloat64({expr})"), "1".to_string(), "toUInt8(1)")
            } else {
                // The vector's own value survives a filter, whichever side.
                ("a.v".to_string(), expr, "a.dn")
            }
        } else {
            (expr, "1".to_string(), "toUInt8(1)")
        };
        Ok(Node::Vector(format!(
            "SELECT a.labels AS labels, a.t AS t, toFloat64({value}) AS v, {dn} AS dn FROM {from} WHERE {cond}"
        )))
    }

    /// `and`, `or` or `unless` of two relations with the same `columns`
    /// (floats, or floats and histograms).
    fn set_operation(
        &mut self,
        op: &str,
        l: &str,
        r: &str,
        modifier: &BinModifier,
        columns: &str,
    ) -> String {
        let sig = self.signature(modifier.matching.as_ref(), "labels");
        match op {
            "and" => format!(
                "SELECT {columns} FROM ({l}) WHERE ({sig}, t) IN (SELECT {sig}, t FROM ({r}))"
            ),
            "unless" => format!(
                "SELECT {columns} FROM ({l}) WHERE ({sig}, t) NOT IN (SELECT {sig}, t FROM ({r}))"
            ),
            _ => format!(
                "SELECT {columns} FROM ({l}) UNION ALL \
                 SELECT {columns} FROM ({r}) WHERE ({sig}, t) NOT IN (SELECT {sig}, t FROM ({l}))"
            ),
        }
    }

    /// A set operator or a comparison between two instant vectors of which
    /// one may hold histograms: set operators keep the histograms they
    /// select; a comparison pairs floats with floats and histograms with
    /// histograms (only `==` and `!=` are defined between histograms; a
    /// float never compares with a histogram), as Prometheus does. `None`
    /// for what reads the floats only.
    fn mixed_vectors(
        &mut self,
        b: &BinaryExpr,
        op: &str,
        lhs: &Node,
        rhs: &Node,
        grid: &Grid,
    ) -> Result<Option<Node>, PlanError> {
        let set_op = matches!(op, "and" | "or" | "unless");
        let trim = matches!(op, "</" | ">/");
        let any_mixed = matches!(lhs, Node::Mixed(_)) || matches!(rhs, Node::Mixed(_));
        if !any_mixed {
            // Floats are never trimmed: no result, as in Prometheus.
            let instant = |n: &Node| matches!(n, Node::Vector(_) | Node::Series(_));
            let operands = (instant(lhs) || instant(rhs))
                && [lhs, rhs]
                    .iter()
                    .all(|n| instant(n) || matches!(n, Node::Scalar(_)));
            return Ok((trim && operands).then(|| {
                Node::Vector(
                    "SELECT CAST([], 'Array(Tuple(String, String))') AS labels, toInt64(0) AS t, \
                       toFloat64(0) AS v, toUInt8(0) AS dn WHERE 0"
                        .to_string(),
                )
            }));
        }
        let fills = b
            .modifier
            .as_ref()
            .is_some_and(|m| m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some());
        if fills {
            return Ok(None);
        }
        match (lhs, rhs) {
            (Node::Mixed(rel), Node::Scalar(s)) if !is_comparison(op) => {
                return self.mixed_scalar(op, rel, s.clone(), false).map(Some);
            }
            (Node::Scalar(s), Node::Mixed(rel)) if !is_comparison(op) => {
                return self.mixed_scalar(op, rel, s.clone(), true).map(Some);
            }
            _ => {}
        }
        let (Some(l), Some(r)) = (self.mixed_rows(lhs, grid), self.mixed_rows(rhs, grid)) else {
            return Ok(None);
        };
        let modifier = b.modifier.clone().unwrap_or(BinModifier {
            card: VectorMatchCardinality::OneToOne,
            matching: None,
            return_bool: false,
            fill_values: Default::default(),
        });
        if set_op {
            let rel = self.set_operation(op, &l, &r, &modifier, MIXED_COLUMNS);
            return Ok(Some(Node::Mixed(rel)));
        }
        self.vector_vector(op, &l, &r, &modifier, true).map(Some)
    }

    /// One-to-one matching of two series-major vectors: each left series
    /// joins the right series of its signature once (not once per step);
    /// the right side's series of one signature are merged step by step.
    /// Prometheus's errors hold per step: two right series of a signature
    /// present at a step where a left one is (many-to-many), or two left
    /// series of a signature present at a step with a match (one-to-one).
    fn series_one_to_one(
        &mut self,
        op: &str,
        l: &SeriesRel,
        r: &SeriesRel,
        matching: Option<&LabelModifier>,
        return_bool: bool,
        unique: Unique,
    ) -> Result<String, PlanError> {
        // A left series without a match, or filtered, has no value left.
        self.drops_series = true;
        let labels = match matching {
            Some(LabelModifier::Include(ls)) => self.keep_labels(&ls.labels, "m._l"),
            Some(LabelModifier::Exclude(ls)) => self.drop_labels(&ls.labels, "m._l"),
            None => "m._l".to_string(),
        };
        let expr = op_sql(op, "assumeNotNull(a)", "assumeNotNull(b)")?;
        let (value, dn) = if is_comparison(op) {
            if return_bool {
                (format!("toFloat64({expr})"), "toUInt8(1)")
            } else {
                (format!("if({expr}, a, NULL)"), "m._dn")
            }
        } else {
            (format!("toFloat64({expr})"), "toUInt8(1)")
        };
        // The first step where a left value meets two right ones, and the
        // first two right series present there, for the message.
        let bad_step = "arrayFirstIndex((a, c) -> a IS NOT NULL AND c > 1, m._v, o._n)";
        let many_to_many = format!(
            "concat('found duplicate series for the match group ', {}, ' on the right hand-side of the operation: [', \
             {}, ', ', {}, '];many-to-many matching not allowed: matching labels must be unique on one side')",
            labels_text("o._sig"),
            labels_text(&format!(
                "arrayFilter(x -> x.2[{bad_step}] IS NOT NULL, o._members)[1].1"
            )),
            labels_text(&format!(
                "arrayFilter(x -> x.2[{bad_step}] IS NOT NULL, o._members)[2].1"
            )),
        );
        let many_to_many_check = format!("{bad_step} > 0");
        // Two left series meet the right one at a step.
        let one_to_one_check = if unique.right {
            "arrayExists((a, b, k) -> a IS NOT NULL AND b IS NOT NULL AND k > 1, m._v, o._one, m._k)"
        } else {
            "arrayExists((a, c, k) -> a IS NOT NULL AND c = 1 AND k > 1, m._v, o._n, m._k)"
        };
        // A side known to hold one series per signature needs neither its
        // count per step nor its check (nor, on the right, its members).
        let mut checks: Vec<(&str, &str)> = Vec::new();
        if !unique.right {
            checks.push((&many_to_many_check, &many_to_many));
        }
        if !unique.left {
            checks.push((one_to_one_check, ONE_TO_ONE));
        }
        // A side with one series per signature is read in its own layer.
        let left = if unique.left {
            let p = l.projection();
            let sig = self.signature(matching, p.labels());
            p.select(&format!(
                "{} AS _l, {} AS _v, {} AS _dn, {sig} AS _sig",
                p.labels(),
                p.vals(),
                p.dn()
            ))
        } else {
            let l = l.sql();
            let sig = self.signature(matching, "labels");
            format!(
                "SELECT labels AS _l, vals AS _v, dn AS _dn, {sig} AS _sig, \
                   sumForEach(arrayMap(x -> toUInt32(x IS NOT NULL), vals)) OVER (PARTITION BY _sig) AS _k \
                 FROM ({l})"
            )
        };
        let right = if unique.right {
            let p = r.projection();
            let sig = self.signature(matching, p.labels());
            p.select(&format!("{sig} AS _sig, {} AS _one", p.vals()))
        } else {
            let r = r.sql();
            let sig = self.signature(matching, "labels");
            format!(
                "SELECT _sig, arrayMap(c -> if(length(c) = 1, c[1], NULL), _g) AS _one, \
                   arrayMap(c -> length(c), _g) AS _n, _members FROM (\
                     SELECT {sig} AS _sig, groupArrayForEach(vals) AS _g, \
                       arraySort(groupArray((labels, vals))) AS _members \
                     FROM ({r}) GROUP BY _sig)"
            )
        };
        let filter = if checks.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", fail_if(&checks))
        };
        Ok(format!(
            "SELECT {labels} AS labels, \
               arrayMap((a, b) -> if(a IS NULL OR b IS NULL, NULL, toFloat64({value})), m._v, o._one) AS vals, \
               {dn} AS dn \
             FROM ({left}) AS m INNER JOIN ({right}) AS o ON m._sig = o._sig{filter}"
        ))
    }

    /// Vector matching of `l op r`. `mixed`: both are mixed relations and
    /// `op` a comparison; the result keeps the left side's histograms.
    fn vector_vector(
        &mut self,
        op: &str,
        l: &str,
        r: &str,
        modifier: &BinModifier,
        mixed: bool,
    ) -> Result<Node, PlanError> {
        let matching = modifier.matching.as_ref();
        let (many, one, one_is_left, include) = match &modifier.card {
            VectorMatchCardinality::OneToMany(ls) => (r, l, true, Some(ls.labels.to_vec())),
            VectorMatchCardinality::ManyToOne(ls) => (l, r, false, Some(ls.labels.to_vec())),
            _ => (l, r, false, None),
        };
        let sig = self.signature(matching, "labels");
        let labels = match (&include, matching) {
            // group_x: the many side's labels, with the listed ones taken
            // from the one side (removed where it lacks them).
            (Some(include), _) => {
                let own = self.drop_labels(include, "m._l");
                let taken = self.keep_labels(include, "o._l");
                format!("arraySort(arrayConcat({own}, {taken}))")
            }
            (None, Some(LabelModifier::Include(ls))) => self.keep_labels(&ls.labels, "m._l"),
            (None, Some(LabelModifier::Exclude(ls))) => self.drop_labels(&ls.labels, "m._l"),
            (None, None) => "m._l".to_string(),
        };
        // fill_left/fill_right stand in for a missing side's value. As in
        // Prometheus, which swaps the sides of group_right, `fill_left`
        // fills the many side (the left of one-to-one and group_left).
        let fill_many = modifier.fill_values.lhs;
        let fill_one = modifier.fill_values.rhs;
        let filled = |side: &str, fill: Option<f64>| match fill {
            Some(f) => format!("if({side}._p, {side}._v, {})", lit(f)),
            None => format!("{side}._v"),
        };
        let (many_value, one_value) = (filled("m", fill_many), filled("o", fill_one));
        let (lv, rv) = if one_is_left {
            (one_value.as_str(), many_value.as_str())
        } else {
            (many_value.as_str(), one_value.as_str())
        };
        let trim = matches!(op, "</" | ">/");
        let mut expr = if trim {
            "toFloat64(0)".to_string()
        } else {
            op_sql(op, lv, rv)?
        };
        // Mixed sides: floats meet floats; histograms compare for
        // (in)equality with histograms and take `*`, `/` and the trims
        // with floats (see `native_arith`).
        let mut pairs = "1".to_string();
        let mut histogram_out = None;
        if mixed {
            let (lh, rh, lis, ris) = if one_is_left {
                ("o._h", "m._h", "o._is_h", "m._is_h")
            } else {
                ("m._h", "o._h", "m._is_h", "o._is_h")
            };
            let floats = format!("(NOT {lis} AND NOT {ris})");
            if is_comparison(op) {
                let equal = histograms_equal(lh, rh);
                let histograms = match op {
                    "==" => Some(equal),
                    "!=" => Some(format!("NOT {equal}")),
                    _ => None,
                };
                if let Some(histograms) = histograms {
                    expr = format!("if({lis}, {histograms}, {expr})");
                    pairs = format!("{lis} = {ris}");
                } else {
                    pairs = floats;
                }
                histogram_out = Some((lh.to_string(), lis.to_string()));
            } else {
                let left = HistogramFloatOp::of(op, true);
                let right = HistogramFloatOp::of(op, false);
                let mut allowed = Vec::new();
                if !trim {
                    allowed.push(floats);
                }
                if left.is_some() {
                    allowed.push(format!("({lis} AND NOT {ris})"));
                }
                if right.is_some() {
                    allowed.push(format!("(NOT {lis} AND {ris})"));
                }
                let both = match op {
                    "+" => Some(histogram_sum(lh, rh, 1.0)),
                    "-" => Some(histogram_sum(lh, rh, -1.0)),
                    _ => None,
                };
                if both.is_some() {
                    allowed.push(format!("({lis} AND {ris})"));
                }
                pairs = if allowed.is_empty() {
                    "0".to_string()
                } else {
                    allowed.join(" OR ")
                };
                let none = no_histogram();
                let h = format!(
                    "multiIf({lis} AND NOT {ris}, {}, NOT {lis} AND {ris}, {}, {lis} AND {ris}, {}, {none})",
                    left.map_or(none.clone(), |o| o.apply(lh, rv)),
                    right.map_or(none.clone(), |o| o.apply(rh, lv)),
                    both.unwrap_or(none.clone()),
                );
                histogram_out = Some((h, format!("({lis} OR {ris})")));
            }
        } else if trim {
            pairs = "0".to_string();
        }
        let (value, cond, dn) = if is_comparison(op) {
            if modifier.return_bool {
                (format!("toFloat64({expr})"), "1".to_string(), "toUInt8(1)")
            } else {
                (lv.to_string(), expr, "m._dn")
            }
        } else if trim {
            (expr, "1".to_string(), "m._dn")
        } else {
            (expr, "1".to_string(), "toUInt8(1)")
        };
        // Prometheus names the group and two of its series; duplicates on
        // the one side are reported before many matches on the other.
        let side = if one_is_left { "left" } else { "right" };
        let many_to_many = format!(
            "concat('found duplicate series for the match group ', {}, ' on the {side} hand-side of the operation: [', \
             {}, ', ', {}, '];many-to-many matching not allowed: matching labels must be unique on one side')",
            labels_text("o._sig"),
            labels_text("o._dups[1]"),
            labels_text("o._dups[2]"),
        );
        let mut checks = vec![("o._c > 1", many_to_many.as_str())];
        if include.is_none() {
            checks.push(("m._mc > 1", ONE_TO_ONE));
        }
        let checks = fail_if(&checks);
        // A filled-in many side has the match group's labels (and no name).
        let (join, labels, t, dn) = match (fill_many, fill_one) {
            (None, None) => ("INNER", labels, "m._t".to_string(), dn.to_string()),
            (fill_many, fill_one) => (
                match (fill_many.is_some(), fill_one.is_some()) {
                    (true, true) => "FULL OUTER",
                    (true, false) => "RIGHT",
                    _ => "LEFT",
                },
                format!("if(m._p, {labels}, o._sig)"),
                "if(m._p, m._t, o._t)".to_string(),
                format!("if(m._p, {dn}, toUInt8(1))"),
            ),
        };
        // Mixed sides carry their histograms; a result of `bool` is a float.
        let (left_h, right_h, out_h) = match &histogram_out {
            Some((h, is_h)) if !(is_comparison(op) && modifier.return_bool) => (
                ", h AS _h, is_h AS _is_h",
                ", any(h) AS _h, any(is_h) AS _is_h",
                format!(", {h} AS h, {is_h} AS is_h"),
            ),
            Some(_) => (
                ", h AS _h, is_h AS _is_h",
                ", any(h) AS _h, any(is_h) AS _is_h",
                String::new(),
            ),
            None => ("", "", String::new()),
        };
        // Without `join_use_nulls`, a side's missing row reads `_p = 0`.
        let rel = format!(
            "SELECT {labels} AS labels, {t} AS t, toFloat64({value}) AS v{out_h}, {dn} AS dn \
             FROM (SELECT labels AS _l, t AS _t, v AS _v, dn AS _dn, {sig} AS _sig, toUInt8(1) AS _p, \
                   count() OVER (PARTITION BY _sig, _t) AS _mc{left_h} FROM ({many})) AS m \
             {join} JOIN (SELECT {sig} AS _sig, t AS _t, any(v) AS _v, any(labels) AS _l, count() AS _c, \
                   arraySort(groupArray(3)(labels)) AS _dups, toUInt8(1) AS _p{right_h} \
                   FROM ({one}) GROUP BY _sig, _t) AS o \
             ON m._sig = o._sig AND m._t = o._t \
             WHERE {checks} AND {pairs} AND {cond}"
        );
        Ok(if out_h.is_empty() {
            Node::Vector(rel)
        } else {
            Node::Mixed(rel)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::unique_per_signature;
    use crate::plan::parse;
    use promql_parser::parser::Expr;

    /// Whether each side of `query` (a binary expression) is known unique.
    fn sides(query: &str) -> (bool, bool) {
        let Expr::Binary(b) = parse(query).unwrap() else {
            panic!("{query} is not binary")
        };
        let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
        (
            unique_per_signature(&b.lhs, matching),
            unique_per_signature(&b.rhs, matching),
        )
    }

    #[test]
    fn aggregations_that_keep_the_signature_are_unique_per_signature() {
        for (query, want) in [
            ("sum(a) / on() sum(b)", (true, true)),
            ("sum by (job) (a) / sum by (job) (b)", (true, true)),
            (
                "sum by (job) (a) / on (job) (sum by (job) (b) * 2)",
                (true, true),
            ),
            (
                "sum by (job, i) (a) / on (job) sum by (job) (b)",
                (false, true),
            ),
            (
                "sum by (job) (a) / ignoring (job) sum by (job) (b)",
                (false, false),
            ),
            ("sum without (i) (a) / sum without (i) (b)", (true, true)),
            ("sum without (i) (a) / on (job) max(b)", (false, true)),
            ("a / on () sum(b)", (false, true)),
            ("topk(1, a) / on () b", (false, false)),
            ("count_values(\"v\", a) / on () b", (false, false)),
            ("(a + b) / on () sum(b)", (false, true)),
        ] {
            assert_eq!(sides(query), want, "{query}");
        }
    }
}

#[cfg(test)]
mod chain_tests {
    use crate::plan::{Grid, PlanSettings, plan};

    fn layers(query: &str) -> usize {
        let grid = Grid::range(1_700_000_000_000, 1_700_007_200_000, 30_000);
        let plan = plan(query, grid, &PlanSettings::default()).expect(query);
        plan.sql.matches("SELECT").count()
    }

    #[test]
    fn arithmetic_with_numbers_is_one_map() {
        let one = layers("max by (job) (up) / 1048576");
        assert_eq!(layers("max by (job) (up) / 1024 / 1024"), one);
        assert_eq!(layers("2 * (max by (job) (up) + 1) / 8"), one);
        // A comparison filters in the same layer (the series it empties
        // go with a HAVING); an operand that is not a number reads rows.
        assert_eq!(layers("max by (job) (up) / 1024 > 1"), one);
        assert!(layers("max by (job) (up) / 1024 / time()") > one);
        // Row-form operands and scalars still plan.
        layers("sum(up @ 100) / 1024 / 1024");
        layers("time() / 60 / 60");
    }
}
