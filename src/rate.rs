//! Per-credential rate limits, one implementation for every door (MCP tool calls over
//! stdio and HTTP, `api`'s REST requests and git's fetches and pushes): a token bucket
//! per credential, refilled at the stricter of the server's `--rate-limit` and the
//! token's own rate.
//!
//! A call is charged once its credential has been admitted by the front door, never
//! before: a request without a credential, or with one that is refused, spends no
//! credential's budget, so nobody can drain another's by guessing. The bucket is keyed
//! on the credential (a hash prefix of the token, the account key's id), not on the
//! address it comes from, so agents behind one address keep budgets of their own.
//!
//! Buckets live in the memory of one process: several processes on one data directory
//! each allow the full rate.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::rules::{BadRate, Rate};
use crate::scope::{Credential, Scope};

/// Buckets kept before the full ones are dropped (a full bucket is the same as none).
const MAX_TRACKED: usize = 10_000;

/// A call refused for going past its credential's rate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "rate limited: this credential may make {amount} calls per {unit} (bursts of up to {burst}) and has used them up; retry in {retry_after_secs} s"
)]
pub struct Limited {
    amount: u32,
    unit: &'static str,
    burst: u32,
    /// Whole seconds until one more call is allowed (at least 1), for `Retry-After`.
    pub retry_after_secs: u64,
}

/// One credential's bucket.
#[derive(Debug, Clone)]
struct Bucket {
    /// Calls left, fractional while refilling.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
    /// The rate it was last charged at, so a refund never overfills it.
    rate: Rate,
}

impl Bucket {
    /// A bucket that starts full: a credential's first calls are never refused.
    fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate.burst),
            at: now,
            rate,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second()).min(f64::from(rate.burst));
        self.at = now;
        self.rate = rate;
    }

    /// Take one call, or say how long until one is available.
    fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / rate.per_second(),
            ))
        }
    }

    fn is_full(&self, now: Instant) -> bool {
        let mut probe = self.clone();
        probe.refill(self.rate, now);
        probe.tokens >= f64::from(self.rate.burst)
    }
}

/// The time source, injected so the tests are deterministic.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// The buckets of every credential a server has charged, and the server's own limit.
pub struct RateLimiter {
    /// `--rate-limit`; `None`: only tokens minted with a rate are limited.
    default: Option<Rate>,
    clock: Clock,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("default", &self.default)
            .finish()
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::with_clock(None, Arc::new(Instant::now))
    }
}

impl RateLimiter {
    /// A limiter applying `default` (`--rate-limit`) to every credential, and each
    /// token's own rate where it is stricter.
    pub fn new(default: Option<Rate>) -> Arc<Self> {
        Arc::new(Self::with_clock(default, Arc::new(Instant::now)))
    }

    /// [`RateLimiter::new`] reading the time from `clock`.
    pub fn with_clock(default: Option<Rate>, clock: Clock) -> Self {
        Self {
            default,
            clock,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn buckets(&self) -> std::sync::MutexGuard<'_, HashMap<String, Bucket>> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Charge one call to the credential `key`, whose own rate is `own`; refused when
    /// its bucket is empty. Nothing is tracked for a credential without any limit.
    pub fn take(&self, key: &str, own: Option<Rate>) -> Result<(), Limited> {
        let Some(rate) = Rate::stricter(self.default, own) else {
            return Ok(());
        };
        let now = (self.clock)();
        let mut buckets = self.buckets();
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(key) {
            buckets.retain(|_, b| !b.is_full(now));
        }
        let bucket = buckets
            .entry(key.to_string())
            .or_insert_with(|| Bucket::full(rate, now));
        bucket.take(rate, now).map_err(|wait| Limited {
            amount: rate.amount,
            unit: rate.unit_word(),
            burst: rate.burst,
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        })
    }

    /// Give back a call charged to `key` (the call was refused after all).
    pub fn refund(&self, key: &str) {
        if let Some(b) = self.buckets().get_mut(key) {
            b.tokens = (b.tokens + 1.0).min(f64::from(b.rate.burst));
        }
    }

    /// Credentials with a bucket.
    pub fn tracked(&self) -> usize {
        self.buckets().len()
    }
}

/// The bucket a scope's calls are charged to: its credential, never its address.
pub fn credential_key(scope: &Scope) -> String {
    match scope.credential() {
        // A token minted by a delegating token spends its lineage's budget: children
        // do not multiply their ancestor's rate.
        Credential::RepoToken(t) => match scope.lineage_root() {
            Some(root) if root.len() >= 24 => format!("token {}", &root[..24]),
            _ => format!("token {}", &crate::credentials::secrets::hash(t)[..24]),
        },
        Credential::AccountKey => match scope.account_key() {
            Some((_, id)) if !id.is_empty() => format!("key {id}"),
            _ => "account key".to_string(),
        },
        // Every caller without a credential shares one budget, as they share one
        // count of sessions.
        Credential::Anonymous => "anonymous".to_string(),
        Credential::Operator => match scope.account_key() {
            Some((_, id)) if !id.is_empty() => format!("key {id}"),
            _ => "operator".to_string(),
        },
    }
}

/// One request's (or tool call's) charge: at most one, however many times the front
/// door is passed while it runs.
struct Meter {
    limiter: Arc<RateLimiter>,
    charged: Mutex<Option<String>>,
    /// Set by [`refused`]: the call ended in a refusal.
    refused: std::sync::atomic::AtomicBool,
}

tokio::task_local! {
    static METER: Arc<Meter>;
}

/// Run `work` as one metered call on `limiter`: the first [`charge`] inside it takes
/// from its credential's bucket, and when the call ended in a refusal (`refused` says
/// so of its answer, or [`refused`] was called inside it) the charge is given back,
/// since only work done counts.
pub async fn metered<T>(
    limiter: &Arc<RateLimiter>,
    work: impl std::future::Future<Output = T>,
    refused: impl FnOnce(&T) -> bool,
) -> T {
    let meter = Arc::new(Meter {
        limiter: limiter.clone(),
        charged: Mutex::new(None),
        refused: Default::default(),
    });
    let out = METER.scope(meter.clone(), work).await;
    if refused(&out) || meter.refused.load(std::sync::atomic::Ordering::Relaxed) {
        let key = meter
            .charged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(key) = key {
            limiter.refund(&key);
        }
    }
    out
}

/// Say that the call under way ended in a refusal, so its charge is given back.
pub fn refused() {
    let _ = METER.try_with(|m| m.refused.store(true, std::sync::atomic::Ordering::Relaxed));
}

/// Charge the call under way to `scope`'s credential, once; called by the front door
/// of each surface right after it admitted the credential. Outside [`metered`] (a
/// command, a test driving a handler) nothing is charged.
pub fn charge(scope: &Scope) -> Result<(), Limited> {
    METER
        .try_with(|m| {
            let mut charged = m.charged.lock().unwrap_or_else(|p| p.into_inner());
            if charged.is_some() {
                return Ok(());
            }
            let key = credential_key(scope);
            m.limiter.take(&key, scope.rate())?;
            *charged = Some(key);
            Ok(())
        })
        .unwrap_or(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock the test moves by hand.
    fn clock() -> (Clock, Arc<Mutex<Instant>>) {
        let now = Arc::new(Mutex::new(Instant::now()));
        let read = now.clone();
        (Arc::new(move || *read.lock().unwrap()), now)
    }

    fn advance(now: &Mutex<Instant>, by: Duration) {
        let mut n = now.lock().unwrap();
        *n += by;
    }

    fn rate(s: &str) -> Rate {
        s.parse().unwrap()
    }

    #[test]
    fn rates_read_as_people_write_them_and_print_back_the_same() {
        assert_eq!(rate("120/m"), Rate::new(120, 60, 120).unwrap());
        assert_eq!(rate(" 10 / sec "), Rate::new(10, 1, 10).unwrap());
        assert_eq!(rate("600/hour,burst=5"), Rate::new(600, 3600, 5).unwrap());
        assert_eq!(rate("120/m,burst=20").to_string(), "120/m,burst=20");
        assert_eq!(rate("120/min,burst=120").to_string(), "120/m");
        for bad in [
            "",
            "120",
            "0/m",
            "5/d",
            "-1/s",
            "2/m,burst=0",
            "2/m,b=3",
            "1000001/s",
            "x/m",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
        let e = "5/d".parse::<Rate>().unwrap_err().to_string();
        assert!(e.contains("120/m"), "{e}");
    }

    #[test]
    fn the_stricter_rate_wins_in_refill_and_burst() {
        let a = rate("60/m,burst=100");
        let b = rate("2/s,burst=10");
        assert_eq!(
            Rate::stricter(Some(a), Some(b)),
            Some(rate("60/m,burst=10"))
        );
        assert_eq!(Rate::stricter(None, Some(b)), Some(b));
        assert_eq!(Rate::stricter(Some(a), None), Some(a));
        assert_eq!(Rate::stricter(None, None), None);
        assert!(rate("1/s").within(&rate("60/m")));
        assert!(!rate("61/m").within(&rate("1/s")));
        assert!(!rate("1/s,burst=61").within(&rate("60/m")));
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let (clock, now) = clock();
        let limiter = RateLimiter::with_clock(Some(rate("60/m,burst=3")), clock);
        for _ in 0..3 {
            limiter.take("a", None).unwrap();
        }
        let refused = limiter.take("a", None).unwrap_err();
        assert_eq!(refused.retry_after_secs, 1);
        assert!(refused.to_string().contains("retry in 1 s"), "{refused}");
        advance(&now, Duration::from_millis(999));
        assert!(limiter.take("a", None).is_err());
        advance(&now, Duration::from_millis(1));
        limiter.take("a", None).unwrap();
        // Refilled over a long pause, but never past the burst.
        advance(&now, Duration::from_secs(3600));
        for _ in 0..3 {
            limiter.take("a", None).unwrap();
        }
        assert!(limiter.take("a", None).is_err());
    }

    #[test]
    fn each_credential_has_its_own_bucket() {
        let (clock, _) = clock();
        let limiter = RateLimiter::with_clock(Some(rate("1/h")), clock);
        limiter.take("a", None).unwrap();
        let refused = limiter.take("a", None).unwrap_err();
        assert_eq!(refused.retry_after_secs, 3600);
        limiter.take("b", None).unwrap();
    }

    #[test]
    fn a_token_rate_applies_without_a_server_rate_and_the_stricter_wins() {
        let (clock, _) = clock();
        let unlimited = RateLimiter::with_clock(None, clock.clone());
        for _ in 0..100 {
            unlimited.take("a", None).unwrap();
        }
        assert_eq!(unlimited.tracked(), 0, "nothing kept without a limit");
        unlimited.take("t", Some(rate("1/m"))).unwrap();
        assert!(unlimited.take("t", Some(rate("1/m"))).is_err());
        let loose = RateLimiter::with_clock(Some(rate("100/s")), clock);
        loose.take("t", Some(rate("2/m"))).unwrap();
        loose.take("t", Some(rate("2/m"))).unwrap();
        assert_eq!(
            loose
                .take("t", Some(rate("2/m")))
                .unwrap_err()
                .retry_after_secs,
            30
        );
    }

    #[test]
    fn a_refund_gives_back_one_call_and_never_overfills() {
        let (clock, _) = clock();
        let limiter = RateLimiter::with_clock(Some(rate("2/h")), clock);
        limiter.take("a", None).unwrap();
        limiter.take("a", None).unwrap();
        limiter.refund("a");
        limiter.take("a", None).unwrap();
        assert!(limiter.take("a", None).is_err());
        limiter.refund("a");
        limiter.refund("a");
        limiter.refund("a");
        limiter.take("a", None).unwrap();
        limiter.take("a", None).unwrap();
        assert!(limiter.take("a", None).is_err());
    }

    #[tokio::test]
    async fn a_metered_call_is_charged_once_and_refunded_when_refused() {
        let (clock, _) = clock();
        let limiter = Arc::new(RateLimiter::with_clock(Some(rate("2/h")), clock));
        let id: crate::model::RepoId = "3f2a6c1e-8b0d-4c5e-9a7f-1d2e3c4b5a69".parse().unwrap();
        let scope = Scope::operator([id]);
        // Outside a metered call nothing is charged.
        for _ in 0..5 {
            charge(&scope).unwrap();
        }
        let twice = || async {
            charge(&scope)?;
            charge(&scope)
        };
        metered(&limiter, twice(), |_| false).await.unwrap();
        metered(&limiter, twice(), |_| true).await.unwrap();
        let noted = || async {
            charge(&scope)?;
            refused();
            Ok::<(), Limited>(())
        };
        metered(&limiter, noted(), |_| false).await.unwrap();
        metered(&limiter, twice(), |_| false).await.unwrap();
        assert!(metered(&limiter, twice(), |_| false).await.is_err());
    }
}
