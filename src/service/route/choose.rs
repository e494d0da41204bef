//! Which target a route tries next (DESIGN §16): among the targets left — with headroom, not
//! cooling down, circuit closed, not tried yet — `priority` takes the first, `headroom` the
//! most free places (ties by order), `weighted` one at random by weight.

use crate::config::Strategy;

/// A target still in the running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    /// The target's place in the route.
    pub at: usize,
    /// Free places; `None`: no limit known.
    pub headroom: Option<u64>,
    pub weight: u32,
}

/// The target to try now, as its place in the route; `None` when none is left. `random`
/// gives a number in `0..n` (the weighted draw).
pub fn pick(strategy: Strategy, open: &[Open], random: impl FnOnce(u64) -> u64) -> Option<usize> {
    match strategy {
        Strategy::Priority => open.first().map(|o| o.at),
        Strategy::Headroom => open
            .iter()
            .rev()
            .max_by_key(|o| o.headroom.unwrap_or(u64::MAX))
            .map(|o| o.at),
        Strategy::Weighted => {
            let total: u64 = open.iter().map(|o| u64::from(o.weight)).sum();
            if total == 0 {
                return open.first().map(|o| o.at);
            }
            let mut draw = random(total);
            for o in open {
                let weight = u64::from(o.weight);
                if draw < weight {
                    return Some(o.at);
                }
                draw -= weight;
            }
            open.last().map(|o| o.at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(at: usize, headroom: Option<u64>, weight: u32) -> Open {
        Open {
            at,
            headroom,
            weight,
        }
    }

    #[test]
    fn priority_takes_the_first_left_and_headroom_the_roomiest_ties_by_order() {
        let left = [
            open(1, Some(2), 1),
            open(2, Some(5), 1),
            open(3, Some(5), 1),
        ];
        assert_eq!(pick(Strategy::Priority, &left, |_| 0), Some(1));
        assert_eq!(pick(Strategy::Headroom, &left, |_| 0), Some(2));
        let unlimited = [open(0, Some(9), 1), open(4, None, 1)];
        assert_eq!(pick(Strategy::Headroom, &unlimited, |_| 0), Some(4));
        assert_eq!(pick(Strategy::Priority, &[], |_| 0), None);
    }

    #[test]
    fn weighted_draws_by_weight() {
        let left = [open(0, None, 1), open(1, None, 3)];
        assert_eq!(pick(Strategy::Weighted, &left, |_| 0), Some(0));
        for draw in 1..4 {
            assert_eq!(pick(Strategy::Weighted, &left, |_| draw), Some(1));
        }
        let mut counts = [0u32; 2];
        for _ in 0..40_000 {
            let at = pick(Strategy::Weighted, &left, |n| fastrand::u64(0..n)).unwrap();
            counts[at] += 1;
        }
        // 1:3 expected; a bound many standard deviations wide, never flaky.
        let share = f64::from(counts[1]) / 40_000.0;
        assert!((0.72..0.78).contains(&share), "{counts:?}");
    }
}
