//! Per-destination backoff, as pure functions over [`RetryTimings`]
//! (Synapse: `synapse/util/retryutils.py` `RetryDestinationLimiter`, with
//! the defaults of `synapse/config/federation.py`).
//!
//! * A destination is not contacted while `retry_last_ts + retry_interval > now`.
//! * A failure (no response, a 5xx, a 401 or a 429) sets the interval to
//!   10 min the first time, then multiplies it by 2 × a random factor in
//!   [0.8, 1.4), up to 7 days.
//! * Any other HTTP error (a 4xx from a live server: 400, 403, 404…) neither
//!   backs off nor resets: the server answered, but may still be a
//!   decommissioned one that answers everything with 404. With
//!   `backoff_on_404`, a 404 counts as a failure (Synapse does so for
//!   transaction sending).
//! * Success resets everything.
//! * `ignore_backoff` (key fetching does this): the request is made anyway,
//!   and a failure does not lengthen the interval; success still resets it.

/// First interval after a failure: 10 min (`destination_min_retry_interval`).
pub const MIN_RETRY_INTERVAL_MS: i64 = 10 * 60 * 1000;
/// Each further failure multiplies the interval by this (`destination_retry_multiplier`).
pub const RETRY_MULTIPLIER: f64 = 2.0;
/// The longest interval: 7 days (`destination_max_retry_interval`).
pub const MAX_RETRY_INTERVAL_MS: i64 = 7 * 24 * 3600 * 1000;
/// The random factor's range (`random.uniform(0.8, 1.4)`).
pub const JITTER_RANGE: (f64, f64) = (0.8, 1.4);

/// A destination's backoff state (Synapse's `destinations` row).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryTimings {
    /// When it started failing (ms), if it is failing.
    pub failure_ts: Option<i64>,
    /// The last failed attempt (ms); 0 after a success.
    pub retry_last_ts: i64,
    /// The wait after `retry_last_ts` (ms); 0 after a success.
    pub retry_interval: i64,
}

/// How a request ended, for the backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestResult {
    /// A 2xx answer.
    Success,
    /// An HTTP answer with this non-2xx status.
    Status(u16),
    /// No answer: DNS, connection, TLS, timeout, a body over the cap,
    /// an unreadable body.
    NoResponse,
}

impl RetryTimings {
    /// When the destination may be contacted again, if it is backing off at `now_ms`.
    pub fn backing_off_until(&self, now_ms: i64) -> Option<i64> {
        let until = self.retry_last_ts.saturating_add(self.retry_interval);
        (self.retry_interval > 0 && until > now_ms).then_some(until)
    }

    /// Whether the state says nothing (never failed, or reset): need not be kept.
    pub fn is_clear(&self) -> bool {
        self.failure_ts.is_none() && self.retry_interval == 0
    }
}

/// Whether a result counts as the destination being down (Synapse's
/// `valid_err_code` is the opposite).
pub fn is_failure(result: RequestResult, backoff_on_404: bool) -> bool {
    match result {
        RequestResult::Success => false,
        RequestResult::NoResponse => true,
        RequestResult::Status(404) if backoff_on_404 => true,
        RequestResult::Status(401 | 429) => true,
        RequestResult::Status(s) => s >= 500,
    }
}

/// The state after a request. `random` is a random number in [0, 1).
pub fn after_request(
    timings: RetryTimings,
    result: RequestResult,
    now_ms: i64,
    random: f64,
    backoff_on_404: bool,
    ignore_backoff: bool,
) -> RetryTimings {
    if result == RequestResult::Success {
        return RetryTimings::default();
    }
    if !is_failure(result, backoff_on_404) || ignore_backoff {
        return timings;
    }
    let retry_interval = if timings.retry_interval > 0 {
        let r = if random.is_finite() { random.clamp(0.0, 1.0) } else { 0.5 };
        let factor = JITTER_RANGE.0 + (JITTER_RANGE.1 - JITTER_RANGE.0) * r;
        ((timings.retry_interval as f64 * RETRY_MULTIPLIER * factor) as i64).min(MAX_RETRY_INTERVAL_MS)
    } else {
        MIN_RETRY_INTERVAL_MS
    };
    RetryTimings { failure_ts: timings.failure_ts.or(Some(now_ms)), retry_last_ts: now_ms, retry_interval }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_exponentially_to_a_week() {
        let mut t = RetryTimings::default();
        assert_eq!(t.backing_off_until(0), None);
        t = after_request(t, RequestResult::NoResponse, 1_000, 0.5, false, false);
        assert_eq!(
            t,
            RetryTimings { failure_ts: Some(1_000), retry_last_ts: 1_000, retry_interval: MIN_RETRY_INTERVAL_MS }
        );
        assert_eq!(t.backing_off_until(1_001), Some(1_000 + MIN_RETRY_INTERVAL_MS));
        assert_eq!(t.backing_off_until(1_000 + MIN_RETRY_INTERVAL_MS), None);
        // random 0.5 → factor 1.1 → ×2.2.
        let t2 = after_request(t, RequestResult::Status(502), 2_000_000, 0.5, false, false);
        assert_eq!(t2.retry_interval, (MIN_RETRY_INTERVAL_MS as f64 * 2.2) as i64);
        assert_eq!(t2.failure_ts, Some(1_000), "failure_ts is when it started failing");
        let mut t = t2;
        for _ in 0..30 {
            t = after_request(t, RequestResult::NoResponse, 3_000_000, 0.99, false, false);
        }
        assert_eq!(t.retry_interval, MAX_RETRY_INTERVAL_MS);
    }

    #[test]
    fn which_results_count() {
        let down = |r, b404| after_request(RetryTimings::default(), r, 5, 0.5, b404, false).retry_interval > 0;
        assert!(down(RequestResult::Status(500), false));
        assert!(down(RequestResult::Status(401), false));
        assert!(down(RequestResult::Status(429), false));
        assert!(!down(RequestResult::Status(404), false), "a live server's 404 does not back off");
        assert!(!down(RequestResult::Status(400), false));
        assert!(!down(RequestResult::Status(403), false));
        assert!(down(RequestResult::Status(404), true));
        // A 4xx neither backs off nor resets.
        let failing = after_request(RetryTimings::default(), RequestResult::NoResponse, 5, 0.5, false, false);
        assert_eq!(after_request(failing, RequestResult::Status(404), 10, 0.5, false, false), failing);
        // Success resets.
        assert!(after_request(failing, RequestResult::Success, 10, 0.5, false, false).is_clear());
        // ignore_backoff: no lengthening on failure, reset on success.
        assert_eq!(after_request(failing, RequestResult::NoResponse, 10, 0.5, false, true), failing);
        assert!(after_request(failing, RequestResult::Success, 10, 0.5, false, true).is_clear());
    }
}
