//! Inputs the fuzzers (`fuzz/`, run by `.ci/fuzz.sh`) found to break an invariant, each
//! pinned to the behaviour a client or operator sees once fixed. The same inputs are in
//! `fuzz/corpus/<target>/` under the names given here, so the fuzzers start from them too.

use scim_relay::scim::filter::{parse_filter, Filter};

/// fuzz/corpus/filter/regression-float-roundtrip: serde_json's default float parser can be
/// off by one unit in the last place, so the canonical text of a filter (which prints the
/// shortest digits that round-trip) parsed to a different number than the filter held.
/// With serde_json's `float_roundtrip` feature every decimal is parsed correctly rounded.
#[test]
fn filter_decimal_literals_are_parsed_exactly_and_print_back() {
    let filter = parse_filter("emaWyiplst[e eq 7777777.77777775777]").expect("parses");
    let Filter::ValuePath(_, inner) = &filter else {
        panic!("a value filter: {filter:?}");
    };
    let Filter::Compare(_, _, literal) = inner.as_ref() else {
        panic!("a comparison: {inner:?}");
    };
    // std's parser is correctly rounded: the number the text denotes.
    assert_eq!(literal.as_f64(), "7777777.77777775777".parse::<f64>().ok());
    let printed = filter.to_string();
    assert_eq!(printed, "emaWyiplst[e eq 7777777.7777777575]");
    assert_eq!(parse_filter(&printed), Ok(filter));
}
