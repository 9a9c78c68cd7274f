//! `Range: bytes=…` parsing (RFC 9110 §14), for one range at a time.

/// What a request's `Range` header asks of a representation of `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Selection {
    /// The whole representation (no header, or a multi-range request, which a server may
    /// answer in full).
    Full,
    /// Bytes `start..end` (end exclusive), with `start < end <= len`.
    Partial { start: usize, end: usize },
    /// A malformed or unsatisfiable range: answered `416`.
    Unsatisfiable,
}

/// Interprets the value of a `Range` header against a representation of `len` bytes.
pub(crate) fn select(header: &str, len: usize) -> Selection {
    let Some((unit, set)) = header.split_once('=') else {
        return Selection::Unsatisfiable;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Selection::Unsatisfiable;
    }
    if set.contains(',') {
        return Selection::Full;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return Selection::Unsatisfiable;
    };
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.is_empty(), last.is_empty()) {
        (true, true) => None,
        // `-N`: the last N bytes.
        (true, false) => number(last)
            .filter(|&suffix| suffix > 0)
            .map(|suffix| (len.saturating_sub(suffix), len)),
        // `N-`: from N to the end.
        (false, true) => number(first).map(|start| (start, len)),
        // `N-M`: inclusive bounds, M clamped to the end.
        (false, false) => match (number(first), number(last)) {
            (Some(start), Some(last)) if last >= start => {
                Some((start, last.saturating_add(1).min(len)))
            }
            _ => None,
        },
    };
    match range {
        Some((start, end)) if start < end && end <= len => Selection::Partial { start, end },
        _ => Selection::Unsatisfiable,
    }
}

/// A run of ASCII digits (no sign, no spaces), as the grammar demands.
fn number(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::Selection::{Full, Partial, Unsatisfiable};
    use super::*;

    #[test]
    fn single_ranges() {
        assert_eq!(select("bytes=0-", 10), Partial { start: 0, end: 10 });
        assert_eq!(select("bytes=4-", 10), Partial { start: 4, end: 10 });
        assert_eq!(select("bytes=2-5", 10), Partial { start: 2, end: 6 });
        assert_eq!(select("bytes=2-500", 10), Partial { start: 2, end: 10 });
        assert_eq!(select("bytes=-3", 10), Partial { start: 7, end: 10 });
        assert_eq!(select("bytes=-30", 10), Partial { start: 0, end: 10 });
        assert_eq!(select("Bytes = 1-1", 10), Partial { start: 1, end: 2 });
    }

    #[test]
    fn bad_or_unsatisfiable_ranges() {
        for header in [
            "bytes=10-",
            "bytes=5-2",
            "bytes=-0",
            "bytes=-",
            "bytes=a-",
            "bytes=+1-",
            "items=0-",
            "bytes",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(select(header, 10), Unsatisfiable, "{header}");
        }
        assert_eq!(select("bytes=0-", 0), Unsatisfiable);
    }

    #[test]
    fn multi_range_gets_the_whole_body() {
        assert_eq!(select("bytes=0-1,4-5", 10), Full);
    }
}
