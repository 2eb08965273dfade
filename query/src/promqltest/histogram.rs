//! Arithmetic of the scripts' native histograms: `{{a}}+{{b}}x3` and
//! `{{a}}-{{b}}x3` expand as Prometheus's parser expands them, with
//! `FloatHistogram.Add` and `Sub` (model/histogram/float_histogram.go),
//! so bucket layouts, zero buckets and counter reset hints come out as
//! upstream's expected values assume. Buckets are by absolute index here,
//! so Prometheus's span bookkeeping reduces to ordered inserts.

use comet_schema::histogram::{
    CUSTOM_BUCKETS_SCHEMA, EXPONENTIAL_SCHEMA_MAX, EXPONENTIAL_SCHEMA_MIN,
};

use crate::value::{CounterResetHint, Histogram};

/// Upstream's `ErrHistogramsIncompatibleSchema`.
const INCOMPATIBLE_SCHEMAS: &str =
    "cannot apply this operation on histograms with a mix of exponential and custom bucket schemas";

fn uses_custom_buckets(h: &Histogram) -> bool {
    h.schema == CUSTOM_BUCKETS_SCHEMA
}

fn is_exponential_schema(schema: i32) -> bool {
    (EXPONENTIAL_SCHEMA_MIN..=EXPONENTIAL_SCHEMA_MAX).contains(&schema)
}

/// The values of `base+inc xN` (`subtract`: `base-inc xN`): the base, then
/// each previous value combined with `inc`, N times.
pub fn expand(
    base: &Histogram,
    inc: &Histogram,
    times: u32,
    subtract: bool,
) -> Result<Vec<Histogram>, String> {
    let mut out = Vec::with_capacity(times as usize + 1);
    out.push(base.clone());
    let mut current = base.clone();
    for _ in 0..times {
        // Checked per step as upstream does; the schema never changes, so
        // this fails on the first step or not at all.
        if current.schema > inc.schema {
            return Err(format!(
                "error combining histograms: cannot merge from schema {} to {}",
                inc.schema, current.schema
            ));
        }
        current = combine(current, inc, subtract)?;
        out.push(current.clone());
    }
    Ok(out)
}

/// `FloatHistogram.Add` (or `Sub`) of `other` into `h`.
fn combine(mut h: Histogram, other: &Histogram, subtract: bool) -> Result<Histogram, String> {
    if uses_custom_buckets(&h) != uses_custom_buckets(other) {
        return Err(INCOMPATIBLE_SCHEMAS.into());
    }
    h.reset_hint = adjust_counter_reset(h.reset_hint, other.reset_hint);
    // `a - b` is `a + (-b)` in IEEE arithmetic, so one path serves both.
    let sign = if subtract { -1.0 } else { 1.0 };
    if !uses_custom_buckets(&h) {
        let other_zero_count = reconcile_zero_buckets(&mut h, other);
        h.zero_count += sign * other_zero_count;
    }
    h.count += sign * other.count;
    h.sum += sign * other.sum;

    if uses_custom_buckets(&h) {
        // Custom buckets have no zero bucket and no negative buckets to add.
        if custom_bounds_match(&h.custom_values, &other.custom_values) {
            h.positive = add_buckets(
                h.schema,
                h.zero_threshold,
                subtract,
                h.positive,
                &other.positive,
            );
        } else {
            let bounds = intersect_bounds(&h.custom_values, &other.custom_values);
            h.positive = add_mismatched_custom_buckets(
                subtract,
                &h.positive,
                &h.custom_values,
                &other.positive,
                &other.custom_values,
                &bounds,
            );
            h.custom_values = bounds;
        }
        return Ok(h);
    }

    let mut other_positive = other.positive.clone();
    let mut other_negative = other.negative.clone();
    if other.schema < h.schema {
        h.positive = reduce_resolution(&h.positive, h.schema, other.schema);
        h.negative = reduce_resolution(&h.negative, h.schema, other.schema);
        h.schema = other.schema;
    } else if other.schema > h.schema {
        other_positive = reduce_resolution(&other.positive, other.schema, h.schema);
        other_negative = reduce_resolution(&other.negative, other.schema, h.schema);
    }
    h.positive = add_buckets(
        h.schema,
        h.zero_threshold,
        subtract,
        h.positive,
        &other_positive,
    );
    h.negative = add_buckets(
        h.schema,
        h.zero_threshold,
        subtract,
        h.negative,
        &other_negative,
    );
    Ok(h)
}

/// Upstream's `adjustCounterReset`: equal hints stay, a gauge wins, then
/// unknown; reset against not-reset collides into unknown.
fn adjust_counter_reset(h: CounterResetHint, other: CounterResetHint) -> CounterResetHint {
    use CounterResetHint::{Gauge, Unknown};
    if h == other || h == Gauge {
        h
    } else if other == Gauge {
        Gauge
    } else {
        Unknown
    }
}

/// Upstream's `addBuckets`: every bucket of `b` (zero counts included)
/// is added to `a`, inserted where `a` has none, so the result's layout
/// is the union of both. Leading buckets of `b` within the zero bucket
/// (upper bound <= `threshold`) are left out.
fn add_buckets(
    schema: i32,
    threshold: f64,
    subtract: bool,
    mut a: Vec<(i32, f64)>,
    b: &[(i32, f64)],
) -> Vec<(i32, f64)> {
    let mut below_threshold = true;
    for &(index, count) in b {
        if below_threshold
            && is_exponential_schema(schema)
            && bucket_bound(index, schema) <= threshold
        {
            continue;
        }
        below_threshold = false;
        let count = if subtract { -count } else { count };
        match a.binary_search_by_key(&index, |&(i, _)| i) {
            Ok(at) => a[at].1 += count,
            Err(at) => a.insert(at, (index, count)),
        }
    }
    a
}

/// Upstream's `reduceResolution` for absolute counts: buckets falling into
/// one bucket of the coarser schema are summed; the layout is kept (a
/// merged bucket of zero counts stays).
fn reduce_resolution(buckets: &[(i32, f64)], from: i32, to: i32) -> Vec<(i32, f64)> {
    let shift = (from - to).clamp(0, 31) as u32;
    let mut out: Vec<(i32, f64)> = Vec::with_capacity(buckets.len());
    for &(index, count) in buckets {
        let target = (index.wrapping_sub(1) >> shift).wrapping_add(1);
        match out.last_mut() {
            Some((last, sum)) if *last == target => *sum += count,
            _ => out.push((target, count)),
        }
    }
    out
}

/// Upstream's `reconcileZeroBuckets`: widens the smaller zero bucket of the
/// two to the larger threshold (moved up to a bucket boundary when it falls
/// inside a populated bucket), folding the buckets it covers into the zero
/// count. Changes `h`; returns the zero count `other` would have.
fn reconcile_zero_buckets(h: &mut Histogram, other: &Histogram) -> f64 {
    let mut other_zero_count = other.zero_count;
    let mut other_threshold = other.zero_threshold;
    while other_threshold != h.zero_threshold {
        let before = (other_threshold, h.zero_threshold);
        if h.zero_threshold > other_threshold {
            (other_zero_count, other_threshold) =
                zero_count_for_larger_threshold(other, h.zero_threshold);
        }
        if other_threshold > h.zero_threshold {
            (h.zero_count, h.zero_threshold) = zero_count_for_larger_threshold(h, other_threshold);
            trim_buckets_in_zero_bucket(h);
        }
        // A NaN threshold compares neither way; upstream loops forever.
        if before.0.to_bits() == other_threshold.to_bits()
            && before.1.to_bits() == h.zero_threshold.to_bits()
        {
            break;
        }
    }
    other_zero_count
}

/// Upstream's `zeroCountForLargerThreshold`: the zero count of `h` with its
/// zero bucket widened to `larger`, and the threshold actually used.
fn zero_count_for_larger_threshold(h: &Histogram, mut larger: f64) -> (f64, f64) {
    if larger == h.zero_threshold {
        return (h.zero_count, larger);
    }
    'outer: loop {
        let mut zero_count = h.zero_count;
        for &(index, count) in &h.positive {
            let lower = bucket_bound(index.wrapping_sub(1), h.schema);
            let upper = bucket_bound(index, h.schema);
            if lower >= larger {
                break;
            }
            zero_count += count;
            if upper > larger {
                // Inside a populated bucket: the threshold moves to its
                // upper bound.
                if count != 0.0 {
                    larger = upper;
                }
                break;
            }
        }
        for &(index, count) in &h.negative {
            let lower = -bucket_bound(index, h.schema);
            let upper = -bucket_bound(index.wrapping_sub(1), h.schema);
            if upper <= -larger {
                break;
            }
            zero_count += count;
            if lower < -larger {
                if count != 0.0 {
                    // The positive side must be counted again.
                    larger = -lower;
                    continue 'outer;
                }
                break;
            }
        }
        return (zero_count, larger);
    }
}

/// Upstream's `trimBucketsInZeroBucket`: empties the buckets inside the
/// zero bucket, then compacts, which drops every empty bucket of `h`, not
/// only those.
fn trim_buckets_in_zero_bucket(h: &mut Histogram) {
    for (index, count) in h.positive.iter_mut() {
        if bucket_bound(index.wrapping_sub(1), h.schema) >= h.zero_threshold {
            break;
        }
        *count = 0.0;
    }
    for (index, count) in h.negative.iter_mut() {
        if -bucket_bound(index.wrapping_sub(1), h.schema) <= -h.zero_threshold {
            break;
        }
        *count = 0.0;
    }
    h.positive.retain(|&(_, c)| c != 0.0);
    h.negative.retain(|&(_, c)| c != 0.0);
}

/// Upstream's `CustomBucketBoundsMatch`.
fn custom_bounds_match(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// The bounds both histograms have (upstream's
/// `intersectCustomBucketBounds`).
fn intersect_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(a[i]);
            i += 1;
            j += 1;
        } else if a[i] < b[j] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Upstream's `addCustomBucketsWithMismatches`: both sides mapped onto the
/// common bounds (each bucket into the first common bound at or above its
/// own, else the +Inf bucket) with Kahan sums; empty buckets are dropped.
fn add_mismatched_custom_buckets(
    subtract: bool,
    a: &[(i32, f64)],
    a_bounds: &[f64],
    b: &[(i32, f64)],
    b_bounds: &[f64],
    bounds: &[f64],
) -> Vec<(i32, f64)> {
    let mut sums = vec![0.0; bounds.len() + 1];
    let mut compensation = vec![0.0; bounds.len() + 1];
    let mut map = |buckets: &[(i32, f64)], own_bounds: &[f64], negate: bool| {
        let mut at = 0;
        for &(index, count) in buckets {
            let mut target = bounds.len();
            if let Some(&bound) = usize::try_from(index).ok().and_then(|i| own_bounds.get(i)) {
                while at < bounds.len() {
                    if bounds[at] >= bound {
                        target = at;
                        break;
                    }
                    at += 1;
                }
            }
            let value = if negate { -count } else { count };
            (sums[target], compensation[target]) =
                kahan_inc(value, sums[target], compensation[target]);
        }
    };
    map(a, a_bounds, false);
    map(b, b_bounds, subtract);
    sums.iter()
        .zip(&compensation)
        .enumerate()
        .filter(|(_, (s, c))| !(**s == 0.0 && **c == 0.0))
        .map(|(i, (s, _))| (i as i32, *s))
        .collect()
}

/// Upstream's `kahansum.Inc` (Neumaier's variant).
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// The upper bound of exponential bucket `index` (upstream's
/// `getBoundExponential`), the last finite bucket's being `f64::MAX`.
fn bucket_bound(index: i32, schema: i32) -> f64 {
    if schema < 0 {
        let shift = (-schema) as u32;
        let exp = if shift >= 64 {
            0
        } else {
            i64::from(index) << shift
        };
        if exp == 1024 {
            return f64::MAX;
        }
        return ldexp(1.0, exp);
    }
    if schema > 8 {
        // Not a schema Prometheus has bounds for (it would panic).
        let width = f64::from(1u32 << schema.min(30));
        return (f64::from(index) / width).exp2();
    }
    let entries = 1i32 << schema;
    let frac_index = index & (entries - 1);
    let frac = EXPONENTIAL_BOUNDS[(entries - 1 + frac_index) as usize];
    let exp = i64::from(index >> schema) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp)
}

/// `frac * 2^exp`, as Go's `math.Ldexp` for the values used here.
fn ldexp(frac: f64, exp: i64) -> f64 {
    let mut x = frac;
    let mut exp = exp.clamp(-2200, 2200) as i32;
    while exp > 1023 {
        x *= f64::from_bits(2046 << 52); // 2^1023
        exp -= 1023;
    }
    while exp < -1022 {
        x *= f64::from_bits(1 << 52); // 2^-1022
        exp += 1022;
    }
    x * f64::from_bits(((exp + 1023) as u64) << 52)
}

/// Prometheus's `exponentialBounds` (model/histogram/generic.go): bucket
/// bounds in [0.5, 1) for schemas 0..=8, schema `s` at `2^s - 1 ..
/// 2^(s+1) - 1`. Copied, not computed: `exp2` differs in the last digits
/// for most entries, and a bound compared with a zero threshold must be
/// the same number Prometheus uses.
#[rustfmt::skip]
const EXPONENTIAL_BOUNDS: [f64; 511] = [
    // Schema 0.
    0.5,
    // Schema 1.
    0.5, 0.7071067811865475,
    // Schema 2.
    0.5, 0.5946035575013605, 0.7071067811865475, 0.8408964152537144,
    // Schema 3.
    0.5, 0.5452538663326288, 0.5946035575013605, 0.6484197773255048,
    0.7071067811865475, 0.7711054127039704, 0.8408964152537144, 0.9170040432046711,
    // Schema 4.
    0.5, 0.5221368912137069, 0.5452538663326288, 0.5693943173783458,
    0.5946035575013605, 0.620928906036742, 0.6484197773255048, 0.6771277734684463,
    0.7071067811865475, 0.7384130729697496, 0.7711054127039704, 0.805245165974627,
    0.8408964152537144, 0.8781260801866495, 0.9170040432046711, 0.9576032806985735,
    // Schema 5.
    0.5, 0.5109485743270583, 0.5221368912137069, 0.5335702003384117,
    0.5452538663326288, 0.5571933712979462, 0.5693943173783458, 0.5818624293887887,
    0.5946035575013605, 0.6076236799902344, 0.620928906036742, 0.6345254785958666,
    0.6484197773255048, 0.6626183215798706, 0.6771277734684463, 0.6919549409819159,
    0.7071067811865475, 0.7225904034885232, 0.7384130729697496, 0.7545822137967112,
    0.7711054127039704, 0.7879904225539431, 0.805245165974627, 0.8228777390769823,
    0.8408964152537144, 0.8593096490612387, 0.8781260801866495, 0.8973545375015533,
    0.9170040432046711, 0.9370838170551498, 0.9576032806985735, 0.9785720620876999,
    // Schema 6.
    0.5, 0.5054446430258502, 0.5109485743270583, 0.5165124395106142,
    0.5221368912137069, 0.5278225891802786, 0.5335702003384117, 0.5393803988785598,
    0.5452538663326288, 0.5511912916539204, 0.5571933712979462, 0.5632608093041209,
    0.5693943173783458, 0.5755946149764913, 0.5818624293887887, 0.5881984958251406,
    0.5946035575013605, 0.6010783657263515, 0.6076236799902344, 0.6142402680534349,
    0.620928906036742, 0.6276903785123455, 0.6345254785958666, 0.6414350080393891,
    0.6484197773255048, 0.6554806057623822, 0.6626183215798706, 0.6698337620266515,
    0.6771277734684463, 0.6845012114872953, 0.6919549409819159, 0.6994898362691555,
    0.7071067811865475, 0.7148066691959849, 0.7225904034885232, 0.7304588970903234,
    0.7384130729697496, 0.7464538641456323, 0.7545822137967112, 0.762799075372269,
    0.7711054127039704, 0.7795022001189185, 0.7879904225539431, 0.7965710756711334,
    0.805245165974627, 0.8140137109286738, 0.8228777390769823, 0.8318382901633681,
    0.8408964152537144, 0.8500531768592616, 0.8593096490612387, 0.8686669176368529,
    0.8781260801866495, 0.8876882462632604, 0.8973545375015533, 0.9071260877501991,
    0.9170040432046711, 0.9269895625416926, 0.9370838170551498, 0.9472879907934827,
    0.9576032806985735, 0.9680308967461471, 0.9785720620876999, 0.9892280131939752,
    // Schema 7.
    0.5, 0.5027149505564014, 0.5054446430258502, 0.5081891574554764,
    0.5109485743270583, 0.5137229745593818, 0.5165124395106142, 0.5193170509806894,
    0.5221368912137069, 0.5249720429003435, 0.5278225891802786, 0.5306886136446309,
    0.5335702003384117, 0.5364674337629877, 0.5393803988785598, 0.5423091811066545,
    0.5452538663326288, 0.5482145409081883, 0.5511912916539204, 0.5541842058618393,
    0.5571933712979462, 0.5602188762048033, 0.5632608093041209, 0.5663192597993595,
    0.5693943173783458, 0.572486072215902, 0.5755946149764913, 0.5787200368168754,
    0.5818624293887887, 0.585021884841625, 0.5881984958251406, 0.5913923554921704,
    0.5946035575013605, 0.5978321960199137, 0.6010783657263515, 0.6043421618132907,
    0.6076236799902344, 0.6109230164863786, 0.6142402680534349, 0.6175755319684665,
    0.620928906036742, 0.6243004885946023, 0.6276903785123455, 0.6310986751971253,
    0.6345254785958666, 0.637970889198196, 0.6414350080393891, 0.6449179367033329,
    0.6484197773255048, 0.6519406325959679, 0.6554806057623822, 0.659039800633032,
    0.6626183215798706, 0.6662162735415805, 0.6698337620266515, 0.6734708931164728,
    0.6771277734684463, 0.6808045103191123, 0.6845012114872953, 0.688217985377265,
    0.6919549409819159, 0.6957121878859629, 0.6994898362691555, 0.7032879969095076,
    0.7071067811865475, 0.7109463010845827, 0.7148066691959849, 0.718687998724491,
    0.7225904034885232, 0.7265139979245261, 0.7304588970903234, 0.7344252166684908,
    0.7384130729697496, 0.7424225829363761, 0.7464538641456323, 0.7505070348132126,
    0.7545822137967112, 0.7586795205991071, 0.762799075372269, 0.7669409989204777,
    0.7711054127039704, 0.7752924388424999, 0.7795022001189185, 0.7837348199827764,
    0.7879904225539431, 0.7922691326262467, 0.7965710756711334, 0.8008963778413465,
    0.805245165974627, 0.8096175675974316, 0.8140137109286738, 0.8184337248834821,
    0.8228777390769823, 0.8273458838280969, 0.8318382901633681, 0.8363550898207981,
    0.8408964152537144, 0.8454623996346523, 0.8500531768592616, 0.8546688815502312,
    0.8593096490612387, 0.8639756154809185, 0.8686669176368529, 0.8733836930995842,
    0.8781260801866495, 0.8828942179666361, 0.8876882462632604, 0.8925083056594671,
    0.8973545375015533, 0.9022270839033115, 0.9071260877501991, 0.9120516927035263,
    0.9170040432046711, 0.9219832844793128, 0.9269895625416926, 0.9320230241988943,
    0.9370838170551498, 0.9421720895161669, 0.9472879907934827, 0.9524316709088368,
    0.9576032806985735, 0.9628029718180622, 0.9680308967461471, 0.9732872087896164,
    0.9785720620876999, 0.9838856116165875, 0.9892280131939752, 0.9945994234836328,
    // Schema 8.
    0.5, 0.5013556375251013, 0.5027149505564014, 0.5040779490592088,
    0.5054446430258502, 0.5068150424757447, 0.5081891574554764, 0.509566998038869,
    0.5109485743270583, 0.5123338964485679, 0.5137229745593818, 0.5151158188430205,
    0.5165124395106142, 0.5179128468009786, 0.5193170509806894, 0.520725062344158,
    0.5221368912137069, 0.5235525479396449, 0.5249720429003435, 0.526395386502313,
    0.5278225891802786, 0.5292536613972564, 0.5306886136446309, 0.5321274564422321,
    0.5335702003384117, 0.5350168559101208, 0.5364674337629877, 0.5379219445313954,
    0.5393803988785598, 0.5408428074966075, 0.5423091811066545, 0.5437795304588847,
    0.5452538663326288, 0.5467321995364429, 0.5482145409081883, 0.549700901315111,
    0.5511912916539204, 0.5526857228508706, 0.5541842058618393, 0.5556867516724088,
    0.5571933712979462, 0.5587040757836845, 0.5602188762048033, 0.5617377836665098,
    0.5632608093041209, 0.564787964283144, 0.5663192597993595, 0.5678547070789026,
    0.5693943173783458, 0.5709381019847808, 0.572486072215902, 0.5740382394200894,
    0.5755946149764913, 0.5771552102951081, 0.5787200368168754, 0.5802891060137493,
    0.5818624293887887, 0.5834400184762408, 0.585021884841625, 0.5866080400818185,
    0.5881984958251406, 0.5897932637314379, 0.5913923554921704, 0.5929957828304968,
    0.5946035575013605, 0.5962156912915756, 0.5978321960199137, 0.5994530835371903,
    0.6010783657263515, 0.6027080545025619, 0.6043421618132907, 0.6059806996384005,
    0.6076236799902344, 0.6092711149137041, 0.6109230164863786, 0.6125793968185725,
    0.6142402680534349, 0.6159056423670379, 0.6175755319684665, 0.6192499490999082,
    0.620928906036742, 0.622612415087629, 0.6243004885946023, 0.6259931389331581,
    0.6276903785123455, 0.6293922197748583, 0.6310986751971253, 0.6328097572894031,
    0.6345254785958666, 0.6362458516947014, 0.637970889198196, 0.6397006037528346,
    0.6414350080393891, 0.6431741147730128, 0.6449179367033329, 0.6466664866145447,
    0.6484197773255048, 0.6501778216898253, 0.6519406325959679, 0.6537082229673385,
    0.6554806057623822, 0.6572577939746774, 0.659039800633032, 0.6608266388015788,
    0.6626183215798706, 0.6644148621029772, 0.6662162735415805, 0.6680225691020727,
    0.6698337620266515, 0.6716498655934177, 0.6734708931164728, 0.6752968579460171,
    0.6771277734684463, 0.6789636531064505, 0.6808045103191123, 0.6826503586020058,
    0.6845012114872953, 0.6863570825438342, 0.688217985377265, 0.690083933630119,
    0.6919549409819159, 0.6938310211492645, 0.6957121878859629, 0.6975984549830999,
    0.6994898362691555, 0.7013863456101023, 0.7032879969095076, 0.7051948041086352,
    0.7071067811865475, 0.7090239421602076, 0.7109463010845827, 0.7128738720527471,
    0.7148066691959849, 0.7167447066838943, 0.718687998724491, 0.7206365595643126,
    0.7225904034885232, 0.7245495448210174, 0.7265139979245261, 0.7284837772007218,
    0.7304588970903234, 0.7324393720732029, 0.7344252166684908, 0.7364164454346837,
    0.7384130729697496, 0.7404151139112358, 0.7424225829363761, 0.7444354947621984,
    0.7464538641456323, 0.7484777058836176, 0.7505070348132126, 0.7525418658117031,
    0.7545822137967112, 0.7566280937263048, 0.7586795205991071, 0.7607365094544071,
    0.762799075372269, 0.7648672334736434, 0.7669409989204777, 0.7690203869158282,
    0.7711054127039704, 0.7731960915705107, 0.7752924388424999, 0.7773944698885442,
    0.7795022001189185, 0.7816156449856788, 0.7837348199827764, 0.7858597406461707,
    0.7879904225539431, 0.7901268813264122, 0.7922691326262467, 0.7944171921585818,
    0.7965710756711334, 0.7987307989543135, 0.8008963778413465, 0.8030678282083853,
    0.805245165974627, 0.8074284071024302, 0.8096175675974316, 0.8118126635086642,
    0.8140137109286738, 0.8162207259936375, 0.8184337248834821, 0.820652723822003,
    0.8228777390769823, 0.8251087869603088, 0.8273458838280969, 0.8295890460808079,
    0.8318382901633681, 0.8340936325652911, 0.8363550898207981, 0.8386226785089391,
    0.8408964152537144, 0.8431763167241966, 0.8454623996346523, 0.8477546807446661,
    0.8500531768592616, 0.8523579048290255, 0.8546688815502312, 0.8569861239649629,
    0.8593096490612387, 0.8616394738731368, 0.8639756154809185, 0.8663180910111553,
    0.8686669176368529, 0.871022112577578, 0.8733836930995842, 0.8757516765159389,
    0.8781260801866495, 0.8805069215187917, 0.8828942179666361, 0.8852879870317771,
    0.8876882462632604, 0.890095013257712, 0.8925083056594671, 0.8949281411607002,
    0.8973545375015533, 0.8997875124702672, 0.9022270839033115, 0.9046732696855155,
    0.9071260877501991, 0.909585556079304, 0.9120516927035263, 0.9145245157024483,
    0.9170040432046711, 0.9194902933879467, 0.9219832844793128, 0.9244830347552253,
    0.9269895625416926, 0.92950288621441, 0.9320230241988943, 0.9345499949706191,
    0.9370838170551498, 0.93962450902828, 0.9421720895161669, 0.9447265771954693,
    0.9472879907934827, 0.9498563490882775, 0.9524316709088368, 0.9550139751351947,
    0.9576032806985735, 0.9601996065815236, 0.9628029718180622, 0.9654133954938133,
    0.9680308967461471, 0.9706554947643201, 0.9732872087896164, 0.9759260581154889,
    0.9785720620876999, 0.9812252401044634, 0.9838856116165875, 0.9865531961276168,
    0.9892280131939752, 0.9919100824251095, 0.9945994234836328, 0.9972960560854698,
];
