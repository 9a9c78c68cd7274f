//! When and how long to wait before trying again.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime};

/// Bounds on retrying transient failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total, the first included, for bodies that cannot resume (manifests, tag
    /// lists, tokens).
    pub max_attempts: u32,
    /// For blob downloads, which resume: attempts *in a row* that moved the download no
    /// further. An attempt that grew the partial does not count and resets the backoff, so
    /// a flaky network that lets every attempt through part of the way still finishes.
    pub max_stalled_attempts: u32,
    /// The first backoff; it doubles per attempt (with full jitter).
    pub base_delay: Duration,
    /// No single wait is longer than this (`Retry-After` included).
    pub max_delay: Duration,
    /// No new attempt starts after this much time in total.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            // At a 25–30% chance of an attempt moving nothing (a 503, a corrupt body), ten in
            // a row happen about once in a million downloads; a server that never makes
            // progress is still given up on within about a minute of backoff.
            max_stalled_attempts: 10,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(20),
            max_elapsed: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (`attempt` ≥ 1 failed so far). A server's
    /// `Retry-After` is honoured (capped at `max_delay`); otherwise exponential backoff with
    /// full jitter, so many clients failing together do not retry together.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_delay);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.max_delay);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        // Uniform in [cap/2, cap]: enough spread, never a zero wait.
        let half = nanos / 2;
        Duration::from_nanos(half + random_u64() % (half + 1))
    }
}

/// A random number from the std's per-process hash keys; no RNG dependency for jitter.
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// HTTP statuses worth retrying.
pub(crate) fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// `Retry-After`: delay-seconds or an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = parse_imf_fixdate(value)?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

fn parse_imf_fixdate(value: &str) -> Option<SystemTime> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let rest = value.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let h: u64 = hms.next()?.parse().ok()?;
    let m: u64 = hms.next()?.parse().ok()?;
    let s: u64 = hms.next()?.parse().ok()?;
    // IMF-fixdate has a four-digit year; bounding it also keeps the arithmetic below far
    // from overflow whatever a server sends.
    if parts.next()? != "GMT"
        || !(1..=31).contains(&day)
        || !(1970..=9999).contains(&year)
        || h > 23
        || m > 59
        || s > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + m * 60 + s;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert!(parse_retry_after("soon").is_none());
        assert!(parse_retry_after("Sun, 06 Foo 1994 08:49:37 GMT").is_none());
        // Found by the fuzzer: years that overflow the date arithmetic.
        for year in [
            "99999999999999",
            "-9223372036854775808",
            "9223372036854775807",
            "0",
        ] {
            let date = format!("Sun, 06 Nov {year} 08:49:37 GMT");
            assert!(parse_retry_after(&date).is_none(), "{date}");
        }
        assert!(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT").is_some());
    }

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let d1 = p.delay(1, None);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = p.delay(3, None);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            assert!(p.delay(30, None) <= Duration::from_secs(1));
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_millis(10))),
            Duration::from_millis(10)
        );
    }
}
