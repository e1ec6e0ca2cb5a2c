//! Retry policy: which failures are worth retrying, when to try again, when to give up.
//!
//! Pure functions over numbers (milliseconds); the caller supplies the randomness and the
//! clock, so every rule is tested exactly. Delays live in the database as
//! `next_attempt_at`, never in a sleeping task, so a restart loses no schedule.

use crate::config::RetryConfig;

/// What a delivery attempt's result means for the delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered {
        status: u16,
    },
    /// Try again later (network error, timeout, 408, 429, 5xx). `retry_after_ms` is the
    /// target's own `Retry-After`, if it sent one.
    Retry {
        status: Option<u16>,
        error: String,
        retry_after_ms: Option<u64>,
    },
    /// Trying again cannot help (other 4xx, a payload the target rejects): dead at once.
    Permanent {
        status: Option<u16>,
        error: String,
    },
    /// Held back on purpose (leaver safety): waits in the outbox and is looked at again
    /// after `retry_after_ms`, without counting as a failure of the target.
    Deferred {
        reason: String,
        retry_after_ms: u64,
    },
}

/// Classifies an HTTP answer. 3xx counts as a failure: redirects are not followed, since
/// a signed payload must reach the configured URL and nothing else.
pub fn classify(status: u16, body: &str, retry_after_ms: Option<u64>) -> Outcome {
    let error = || {
        if body.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {body}")
        }
    };
    match status {
        200..=299 => Outcome::Delivered { status },
        408 | 429 | 500..=599 => Outcome::Retry {
            status: Some(status),
            error: error(),
            retry_after_ms: if status == 429 || status == 503 {
                retry_after_ms
            } else {
                None
            },
        },
        300..=399 => Outcome::Retry {
            status: Some(status),
            error: format!("{} (redirects are not followed)", error()),
            retry_after_ms: None,
        },
        _ => Outcome::Permanent {
            status: Some(status),
            error: error(),
        },
    }
}

/// Parses `Retry-After`: delay-seconds, or an HTTP date relative to `now_ms`.
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    let format = time::format_description::well_known::Rfc2822;
    let at = time::OffsetDateTime::parse(value, &format).ok()?;
    let at_ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()?;
    Some(u64::try_from(at_ms.saturating_sub(now_ms)).unwrap_or(0))
}

/// The delay before retry number `attempt` (1 = after the first failure): a uniformly random
/// point in [0, min(max, initial · 2^(attempt−1))] ("full jitter"), so retries from many
/// deliveries spread out instead of arriving together. `unit` is a random number in [0, 1).
pub fn backoff_ms(policy: &RetryConfig, attempt: u32, unit: f64) -> u64 {
    let exp = attempt.saturating_sub(1).min(40);
    let ceiling = policy
        .initial_ms
        .saturating_mul(1u64 << exp)
        .min(policy.max_ms);
    // The floor keeps a burst of failures from retrying in a tight loop.
    let jittered = (ceiling as f64 * unit.clamp(0.0, 1.0)) as u64;
    jittered.max(policy.initial_ms.min(ceiling) / 10)
}

/// When to try a failed delivery again, or `None` when it has been failing for longer than
/// the policy's give-up age (it is then dead). A target's `Retry-After` wins over backoff;
/// it is capped at an hour (or `max_ms`, if longer) so a bogus value cannot park a delivery.
pub fn next_attempt_at(
    policy: &RetryConfig,
    created_at_ms: i64,
    now_ms: i64,
    attempt: u32,
    retry_after_ms: Option<u64>,
    unit: f64,
) -> Option<i64> {
    let age_ms = now_ms.saturating_sub(created_at_ms);
    let max_age_ms = i64::try_from(policy.max_age_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    if age_ms >= max_age_ms {
        return None;
    }
    let delay = match retry_after_ms {
        Some(ms) => ms.min(policy.max_ms.max(3_600_000)),
        None => backoff_ms(policy, attempt, unit),
    };
    Some(now_ms.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryConfig {
        RetryConfig {
            initial_ms: 1000,
            max_ms: 60_000,
            max_age_secs: 3600,
            circuit_after: 5,
        }
    }

    #[test]
    fn classification_follows_http_semantics() {
        assert_eq!(classify(204, "", None), Outcome::Delivered { status: 204 });
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify(status, "", None), Outcome::Retry { .. }),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 410, 422] {
            assert!(
                matches!(classify(status, "", None), Outcome::Permanent { .. }),
                "{status}"
            );
        }
        assert!(matches!(classify(301, "", None), Outcome::Retry { .. }));
        assert_eq!(
            classify(429, "slow down", Some(5000)),
            Outcome::Retry {
                status: Some(429),
                error: "HTTP 429: slow down".into(),
                retry_after_ms: Some(5000)
            }
        );
        // Retry-After only means something on 429 and 503.
        assert!(matches!(
            classify(500, "", Some(5000)),
            Outcome::Retry {
                retry_after_ms: None,
                ..
            }
        ));
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("7", 0), Some(7000));
        assert_eq!(parse_retry_after(" 0 ", 0), Some(0));
        let now = 1_700_000_000_000;
        let date = time::OffsetDateTime::from_unix_timestamp(1_700_000_030)
            .map(|d| d.format(&time::format_description::well_known::Rfc2822))
            .expect("valid")
            .expect("formats");
        assert_eq!(parse_retry_after(&date, now), Some(30_000));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_grows_exponentially_with_full_jitter_and_a_cap() {
        let p = policy();
        assert_eq!(backoff_ms(&p, 1, 0.999_999), 999);
        assert_eq!(backoff_ms(&p, 3, 0.5), 2000);
        assert_eq!(backoff_ms(&p, 30, 0.999_999), 59_999);
        assert_eq!(backoff_ms(&p, u32::MAX, 1.0), 60_000);
        // Jitter never reaches zero: a floor of a tenth of the first delay.
        assert_eq!(backoff_ms(&p, 5, 0.0), 100);
    }

    #[test]
    fn deliveries_give_up_after_the_max_age() {
        let p = policy();
        assert_eq!(next_attempt_at(&p, 0, 10_000, 1, None, 0.5), Some(10_500));
        assert_eq!(
            next_attempt_at(&p, 0, 10_000, 1, Some(120_000), 0.5),
            Some(130_000)
        );
        assert_eq!(
            next_attempt_at(&p, 0, 0, 1, Some(u64::MAX), 0.5),
            Some(3_600_000)
        );
        assert_eq!(next_attempt_at(&p, 0, 3_600_000, 1, None, 0.5), None);
    }
}
