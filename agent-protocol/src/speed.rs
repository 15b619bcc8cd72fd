//! Link speeds as lshw (hence hardware-detect) spells them in `network NAME speed` items:
//! `100Mbit/s`, `1Gbit/s`, `2.5Gbit/s`. The agent writes them so; the summary reads them back.

/// A speed in Mbit/s as lshw prints it.
pub fn format(mbps: u32) -> String {
    if mbps >= 1000 && mbps.is_multiple_of(1000) {
        format!("{}Gbit/s", mbps / 1000)
    } else if mbps >= 1000 && mbps.is_multiple_of(100) {
        format!("{}.{}Gbit/s", mbps / 1000, (mbps % 1000) / 100)
    } else {
        format!("{mbps}Mbit/s")
    }
}

/// lshw's speed back to Mbit/s (`1Gbit/s` → 1000); `None` for anything else.
pub fn parse(text: &str) -> Option<u32> {
    let (number, factor) = if let Some(n) = text.strip_suffix("Gbit/s") {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix("Mbit/s") {
        (n, 1.0)
    } else {
        return None;
    };
    let mbps = number.trim().parse::<f64>().ok()? * factor;
    (mbps.is_finite() && mbps > 0.0 && mbps < f64::from(u32::MAX)).then_some(mbps.round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_are_spelled_as_lshw_spells_them_and_read_back() {
        assert_eq!(format(100), "100Mbit/s");
        assert_eq!(format(1000), "1Gbit/s");
        assert_eq!(format(2500), "2.5Gbit/s");
        assert_eq!(format(25000), "25Gbit/s");
        assert_eq!(format(1234), "1234Mbit/s");
        for mbps in [10, 100, 1000, 2500, 10000, 25000, 100000] {
            assert_eq!(parse(&format(mbps)), Some(mbps));
        }
        assert_eq!(parse("fast"), None);
        assert_eq!(parse("-1Gbit/s"), None);
        assert_eq!(parse("NaNGbit/s"), None);
        assert_eq!(parse("1e30Gbit/s"), None);
    }
}
