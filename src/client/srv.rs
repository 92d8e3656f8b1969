//! SRV records in server discovery (spec steps 3.3, 3.4, 4 and 5): the
//! record names, and which record to use (RFC 2782).

/// One SRV record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvRecord {
    /// Priority (lower first).
    pub priority: u16,
    /// Weight within a priority.
    pub weight: u16,
    /// Port.
    pub port: u16,
    /// Target host (a trailing dot is ignored).
    pub target: String,
}

/// An SRV lookup's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SrvAnswer {
    /// Records (possibly none: NXDOMAIN or no SRV records), with the
    /// smallest TTL in seconds.
    Records {
        /// The records.
        records: Vec<SrvRecord>,
        /// Their TTL, in seconds.
        ttl_secs: u32,
    },
    /// The lookup failed (not "no records": the resolver could not answer).
    Error {
        /// Why.
        reason: String,
    },
}

/// `_matrix-fed._tcp.<host>`, or the deprecated `_matrix._tcp.<host>`.
pub fn srv_name(host: &str, deprecated: bool) -> String {
    if deprecated {
        format!("_matrix._tcp.{host}")
    } else {
        format!("_matrix-fed._tcp.{host}")
    }
}

/// RFC 2782 selection: the lowest priority; among its records, one picked
/// with probability proportional to its weight (zero-weight records only
/// when all are zero). `random` in [0, 1).
pub fn choose_srv<'a>(records: &[&'a SrvRecord], random: f64) -> Option<&'a SrvRecord> {
    let best = records.iter().map(|r| r.priority).min()?;
    let tier: Vec<&SrvRecord> = records.iter().copied().filter(|r| r.priority == best).collect();
    let total: u32 = tier.iter().map(|r| u32::from(r.weight)).sum();
    let r = if random.is_finite() { random.clamp(0.0, 0.999_999) } else { 0.0 };
    if total == 0 {
        return tier.get((r * tier.len() as f64) as usize).copied();
    }
    let mut target = (r * f64::from(total)) as u32;
    for rec in &tier {
        let w = u32::from(rec.weight);
        if target < w {
            return Some(rec);
        }
        target -= w;
    }
    tier.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_choice() {
        let a = SrvRecord { priority: 1, weight: 1, port: 1, target: "a.example".into() };
        let b = SrvRecord { priority: 1, weight: 3, port: 2, target: "b.example".into() };
        let recs = [&a, &b];
        assert_eq!(choose_srv(&recs, 0.0).unwrap().target, "a.example");
        assert_eq!(choose_srv(&recs, 0.24).unwrap().target, "a.example");
        assert_eq!(choose_srv(&recs, 0.25).unwrap().target, "b.example");
        assert_eq!(choose_srv(&recs, 0.99).unwrap().target, "b.example");
        assert!(choose_srv(&[], 0.5).is_none());
    }
}
