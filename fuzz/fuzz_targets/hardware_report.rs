//! Arbitrary bytes as the body of `POST /machines/{name}/report` into the agent ↔ boot-services
//! contract's `machinist_agent_protocol::report::parse_report`, which the boot services run.
//!
//! Properties: it never panics; what it accepts has between 1 and `MAX_ITEMS` items, each
//! element at most `ITEM_ELEMENT_MAX_LENGTH` bytes; and the accepted items, written back as a
//! report, parse to the same items.
#![no_main]
#![allow(clippy::panic)] // a broken property is a panic

use libfuzzer_sys::fuzz_target;
use machinist_agent_protocol::report::{ITEM_ELEMENT_MAX_LENGTH, MAX_ITEMS, parse_report};

fuzz_target!(|body: &[u8]| {
    let Ok(report) = parse_report(body) else { return };
    let items = &report.items;
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
    // Written back as the agent writes a report.
    let written = report.to_body();
    assert_eq!(parse_report(&written).as_ref(), Ok(&report), "accepted items do not read back the same");
});
