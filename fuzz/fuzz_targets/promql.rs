//! PromQL from the HTTP API and rule files: parsed, checked and planned
//! into SQL (label matchers and their regexes included), as an instant
//! and as a range query.
#![no_main]

use comet_query::plan::{Grid, PlanSettings, plan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let settings = PlanSettings::default();
    let _ = plan(query, Grid::instant(1_700_000_000_000), &settings);
    let _ = plan(
        query,
        Grid::range(1_699_999_000_000, 1_700_000_000_000, 15_000),
        &settings,
    );
});
