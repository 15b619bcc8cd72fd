//! Arbitrary bytes as the body of `POST /machines/{name}/report` into
//! `machinist_boot::http::report::parse_report`.
//!
//! Properties: it never panics; what it accepts has between 1 and `MAX_ITEMS` items, each
//! element at most `ITEM_ELEMENT_MAX_LENGTH` bytes; and the accepted items, written back as a
//! report, parse to the same items.
#![no_main]
#![allow(clippy::panic)] // a broken property is a panic

use libfuzzer_sys::fuzz_target;
use machinist_boot::http::report::{MAX_ITEMS, parse_report};
use machinist_crds::common::ITEM_ELEMENT_MAX_LENGTH;

fuzz_target!(|body: &[u8]| {
    let Ok(items) = parse_report(body) else { return };
    assert!((1..=MAX_ITEMS).contains(&items.len()), "accepted a report of {} items", items.len());
    for (index, item) in items.iter().enumerate() {
        for (element, value) in item.elements().iter().enumerate() {
            assert!(
                value.len() <= ITEM_ELEMENT_MAX_LENGTH,
                "accepted items[{index}] element {element} of {} bytes",
                value.len()
            );
        }
    }
    let written = match serde_json::to_vec(&serde_json::json!({ "items": items })) {
        Ok(written) => written,
        Err(error) => panic!("accepted items do not serialize: {error}"),
    };
    assert_eq!(parse_report(&written).as_ref(), Ok(&items), "accepted items do not read back the same");
});
