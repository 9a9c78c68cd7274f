//! Human byte sizes for options such as `--max-size 10G`.

/// Parse `1234`, `64K`, `512M`, `10G`, `1T` (binary units; an optional trailing `B` or `iB`).
pub fn parse(text: &str) -> Result<u64, String> {
    let upper = text.trim().to_ascii_uppercase();
    let t = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!("invalid size {text:?}: expected e.g. 500M or 10G"));
    }
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("unknown size unit in {text:?}: use K, M, G or T")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size {text:?}: expected e.g. 500M or 10G"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Format bytes with one binary unit, e.g. `1.5 GiB`.
pub fn show(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse("1234"), Ok(1234));
        assert_eq!(parse("64K"), Ok(64 << 10));
        assert_eq!(parse("10G"), Ok(10 << 30));
        assert_eq!(parse("512MiB"), Ok(512 << 20));
        assert_eq!(parse("2mb"), Ok(2 << 20));
        assert!(parse("").is_err());
        assert!(parse("10X").is_err());
        assert!(parse("-1").is_err());
        assert!(parse("99999999999T").is_err());
        assert_eq!(show(512), "512 B");
        assert_eq!(show(1536 << 20), "1.5 GiB");
    }
}
