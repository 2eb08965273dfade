//! Numbers and histograms as text the way Go writes them, for the label
//! values `count_values` makes: floats as `strconv.FormatFloat(v, 'f', -1,
//! 64)`, histograms as `FloatHistogram.String()` (whose numbers are `%g`).

use super::native_arith::bound;
use super::stages::let_in;

/// SQL for the text of the float `value` as Go's `strconv.FormatFloat(v,
/// 'f', -1, 64)` writes it (how `count_values` labels its values): the
/// shortest digits that read back as `value`, never in exponent form.
/// ClickHouse's `toString` gives the same digits but switches to an
/// exponent for very large and very small numbers (`3.0381164756586635e300`),
/// which is moved into the digits here.
pub(crate) fn go_float_text(value: &str) -> String {
    // Inline aliases name the pieces of `toString`'s `[-]D[.DDD]eX`.
    let plain = "concat(if(_gf_neg, '-', ''), \
         if(_gf_point >= length(_gf_digits), \
            concat(_gf_digits, repeat('0', toUInt64(_gf_point - length(_gf_digits)))), \
         if(_gf_point <= 0, \
            concat('0.', repeat('0', toUInt64(-_gf_point)), _gf_digits), \
            concat(substring(_gf_digits, 1, _gf_point), '.', substring(_gf_digits, _gf_point + 1)))))";
    let pieces = "(startsWith(_gf_text, '-') AS _gf_neg), \
         (splitByChar('e', if(_gf_neg, substring(_gf_text, 2), _gf_text)) AS _gf_parts), \
         (splitByChar('.', _gf_parts[1]) AS _gf_mantissa), \
         (concat(_gf_mantissa[1], if(length(_gf_mantissa) > 1, _gf_mantissa[2], '')) AS _gf_digits), \
         (toInt64(length(_gf_mantissa[1])) + toInt64OrZero(_gf_parts[2]) AS _gf_point)";
    format!(
        "multiIf(isNaN({value}), 'NaN', {value} = inf, '+Inf', {value} = -inf, '-Inf', \
           position((toString({value}) AS _gf_text), 'e') = 0, _gf_text, \
           tuple({pieces}, {plain}).6)"
    )
}

/// SQL for the float `value` as Go's `%g` writes it: the shortest digits
/// that read back as `value`, in exponent form (`1.5e+06`, `1e-05`: at
/// least two exponent digits) below 1e-4 and from 1e6 on, else plain,
/// which is how ClickHouse's `toString` writes that range. Free of
/// aliases, so it may be used several times in one expression.
pub(crate) fn go_general_text(value: &str) -> String {
    // `toString` writes `D[.DDD]eX` or plain digits with a point: `_gt_a`
    // are all its digits, `_gt_e` the exponent of the first nonzero one.
    let exponent_form = let_in(
        &[(
            "_gt_m",
            &format!("splitByChar('e', toString(abs({value})))"),
        )],
        &let_in(
            &[
                ("_gt_a", "replaceAll(_gt_m[1], '.', '')"),
                (
                    "_gt_pt",
                    "toInt64(length(splitByChar('.', _gt_m[1])[1])) + toInt64OrZero(_gt_m[2])",
                ),
            ],
            &let_in(
                &[
                    (
                        "_gt_d",
                        "replaceRegexpOne(replaceRegexpOne(_gt_a, '^0+', ''), '0+$', '')",
                    ),
                    (
                        "_gt_e",
                        "_gt_pt - 1 - toInt64(length(_gt_a) - length(replaceRegexpOne(_gt_a, '^0+', '')))",
                    ),
                ],
                &format!(
                    "concat(if({value} < 0, '-', ''), substring(_gt_d, 1, 1), \
                       if(length(_gt_d) > 1, concat('.', substring(_gt_d, 2)), ''), \
                       'e', if(_gt_e < 0, '-', '+'), if(abs(_gt_e) < 10, '0', ''), toString(abs(_gt_e)))"
                ),
            ),
        ),
    );
    format!(
        "multiIf(isNaN({value}), 'NaN', {value} = inf, '+Inf', {value} = -inf, '-Inf', \
           {value} = 0 OR (abs({value}) >= 1e-4 AND abs({value}) < 1e6), toString({value}), \
           {exponent_form})"
    )
}

/// SQL for the histogram `h` as Prometheus's `FloatHistogram.String()`
/// writes it: `{count:C, sum:S, ...}` with each bucket that holds
/// something as `[lower,upper):count`, negative ones from the lowest,
/// then the zero bucket, then positive ones (custom buckets: `[-Inf,b]`
/// first, then `(a,b]`).
pub(crate) fn histogram_text(h: &str) -> String {
    let g = go_general_text;
    let bucket = |open: &str, lower: &str, upper: &str, close: &str| {
        format!(
            "concat(', ', {open}, {}, ',', {}, {close}, ':', {})",
            g(lower),
            g(upper),
            g("b.2")
        )
    };
    let custom = format!("{h}.schema = -53");
    let negative = bucket(
        "'['",
        &format!("-{}", bound(h, "b.1")),
        &format!("-{}", bound(h, "b.1 - 1")),
        "')'",
    );
    let positive = bucket(
        &format!("if({custom} AND b.1 = 0, '[', '(')"),
        &bound(h, "b.1 - 1"),
        &bound(h, "b.1"),
        "']'",
    );
    format!(
        "concat('{{count:', {count}, ', sum:', {sum}, \
           arrayStringConcat(arrayMap(b -> {negative}, \
             arrayReverseSort(b -> b.1, arrayFilter(b -> b.2 != 0, arrayZip({h}.negative_index, {h}.negative_counts))))), \
           if({h}.zero_count != 0, concat(', [', {zl}, ',', {zu}, ']:', {zc}), ''), \
           arrayStringConcat(arrayMap(b -> {positive}, \
             arraySort(b -> b.1, arrayFilter(b -> b.2 != 0, arrayZip({h}.positive_index, {h}.positive_counts))))), \
           '}}')",
        count = g(&format!("{h}.count")),
        sum = g(&format!("{h}.sum")),
        zl = g(&format!("-{h}.zero_threshold")),
        zu = g(&format!("{h}.zero_threshold")),
        zc = g(&format!("{h}.zero_count")),
    )
}
