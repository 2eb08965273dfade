//! Rule files (YAML, with PromQL and templates inside), as `comet serve
//! --rule-files` and `/-/reload` read them.
#![no_main]

use comet_query::rules::file::parse_rule_file;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_rule_file("fuzz.yml", text, Duration::from_secs(60));
});
