//! `POST /machines/{name}/report`: the hardware report, `{"items": [[class, type, name, value], …]}`
//! — hardware-detect's items, as eDeploy's agent sent them.
//!
//! A report carries between 1 and [`MAX_ITEMS`] items (what `status.hardware.items` holds), each
//! element at most [`ITEM_ELEMENT_MAX_LENGTH`] bytes, strings only, and nothing else: an unknown
//! field is refused, so that a typo on either side shows at once.

pub use machinist_crds::common::{ITEM_ELEMENT_MAX_LENGTH, Quad};
use machinist_crds::machine::HARDWARE_ITEMS_MAX;
use serde::{Deserialize, Serialize};

/// Most items a report may carry.
pub const MAX_ITEMS: usize = HARDWARE_ITEMS_MAX;

/// Default limit of a report body in bytes: a large server's hardware-detect output is about
/// 100 KiB. The boot services' `http.reportLimit` changes it.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// A hardware report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The items, in `hardware-detect`'s `[class, type, name, value]` form.
    pub items: Vec<Quad>,
}

/// What is wrong with a report body.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Not JSON of the report's shape.
    #[error("invalid hardware report: {0}")]
    Shape(String),
    /// No items.
    #[error("invalid hardware report: items is empty")]
    Empty,
    /// Too many items.
    #[error("invalid hardware report: {count} items, at most {MAX_ITEMS} are allowed")]
    TooManyItems {
        /// How many were sent.
        count: usize,
    },
    /// An element longer than [`ITEM_ELEMENT_MAX_LENGTH`] bytes.
    #[error(
        "invalid hardware report: items[{index}] element {element} is {length} bytes long, at most {ITEM_ELEMENT_MAX_LENGTH} are allowed"
    )]
    ElementTooLong {
        /// Which item.
        index: usize,
        /// Which element (0 class, 1 type, 2 name, 3 value).
        element: usize,
        /// Its length.
        length: usize,
    },
}

impl Report {
    /// The JSON body the agent sends.
    pub fn to_body(&self) -> Vec<u8> {
        // A Vec of string quadruples always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks the limits that the JSON shape alone does not.
    pub fn validate(&self) -> Result<(), ReportError> {
        if self.items.is_empty() {
            return Err(ReportError::Empty);
        }
        if self.items.len() > MAX_ITEMS {
            return Err(ReportError::TooManyItems { count: self.items.len() });
        }
        for (index, item) in self.items.iter().enumerate() {
            for (element, value) in item.elements().iter().enumerate() {
                if value.len() > ITEM_ELEMENT_MAX_LENGTH {
                    return Err(ReportError::ElementTooLong { index, element, length: value.len() });
                }
            }
        }
        Ok(())
    }
}

/// Reads and validates a report body.
pub fn parse_report(body: &[u8]) -> Result<Report, ReportError> {
    let report: Report = serde_json::from_slice(body).map_err(|e| ReportError::Shape(e.to_string()))?;
    report.validate()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn reports_are_validated() {
        let report =
            parse_report(br#"{"items": [["system","product","vendor","ACME"],["cpu","logical","number","8"]]}"#)
                .unwrap();
        assert_eq!(report.items[1], Quad::new("cpu", "logical", "number", "8"));
        let shape = |body: &str| match parse_report(body.as_bytes()) {
            Err(ReportError::Shape(message)) => message,
            other => panic!("{body}: {other:?}"),
        };
        assert!(shape(r#"{"items": [["a","b","c"]]}"#).contains("exactly four elements"));
        assert!(shape(r#"{"items": [["a","b","c","d","e"]]}"#).contains("exactly four elements"));
        assert!(shape(r#"{"items": [["a","b","c",4]]}"#).contains("expected a string"));
        assert!(shape(r#"{"items": [["a","b","c","d"]], "extra": 1}"#).contains("unknown field `extra`"));
        assert!(shape(r#"{}"#).contains("missing field `items`"));
        assert!(shape("not json").contains("expected"));
        assert_eq!(parse_report(br#"{"items": []}"#), Err(ReportError::Empty));
        let long =
            format!(r#"{{"items": [["a","b","c","d"],["a","b","c","{}"]]}}"#, "x".repeat(ITEM_ELEMENT_MAX_LENGTH + 1));
        assert_eq!(
            parse_report(long.as_bytes()),
            Err(ReportError::ElementTooLong { index: 1, element: 3, length: ITEM_ELEMENT_MAX_LENGTH + 1 })
        );
        let many = format!(r#"{{"items": [{}]}}"#, vec![r#"["a","b","c","d"]"#; MAX_ITEMS + 1].join(","));
        assert_eq!(parse_report(many.as_bytes()), Err(ReportError::TooManyItems { count: MAX_ITEMS + 1 }));
    }

    #[test]
    fn what_the_agent_sends_is_what_the_boot_services_read() {
        let report = Report { items: vec![Quad::new("disk", "sda", "size", "480"), Quad::new("a", "b", "c", "")] };
        let body = report.to_body();
        assert_eq!(
            String::from_utf8(body.clone()).unwrap(),
            r#"{"items":[["disk","sda","size","480"],["a","b","c",""]]}"#
        );
        assert_eq!(parse_report(&body).unwrap(), report);
    }
}
