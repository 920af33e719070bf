//! The fleet's one-word verdict (SPEC 6 `/internal/health`): `starting`, `healthy` or
//! `unhealthy`. Pure; the status handlers feed it a snapshot's counts and the warm-up latch
//! that `AppState` keeps, and `/internal/ready` answers 200 only for [`FleetHealth::Healthy`].

use serde::Serialize;

use corral_actors::view::StatusCounts as Counts;

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FleetHealth {
    /// Before every endpoint's first check: proxy requests get 503 meanwhile.
    Starting,
    /// At least one endpoint is routable.
    Healthy,
    /// None is.
    Unhealthy,
}

impl FleetHealth {
    /// `warmed_up`: whether the first checks were done, in this snapshot or an earlier one —
    /// a restarted endpoint actor must not take the fleet back to `starting`.
    pub fn of(counts: &Counts, warmed_up: bool) -> FleetHealth {
        match (warmed_up, counts.routable()) {
            (false, _) => FleetHealth::Starting,
            (true, 0) => FleetHealth::Unhealthy,
            (true, _) => FleetHealth::Healthy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(healthy: usize, unhealthy: usize) -> Counts {
        Counts {
            healthy,
            unhealthy,
            total: healthy + unhealthy,
            ..Counts::default()
        }
    }

    #[test]
    fn starting_until_warmed_up_whatever_the_counts() {
        assert_eq!(FleetHealth::of(&counts(3, 0), false), FleetHealth::Starting);
    }

    #[test]
    fn then_follows_routability() {
        assert_eq!(FleetHealth::of(&counts(0, 2), true), FleetHealth::Unhealthy);
        assert_eq!(FleetHealth::of(&counts(1, 2), true), FleetHealth::Healthy);
        let recovering = Counts {
            recovering: 1,
            total: 1,
            ..Counts::default()
        };
        assert_eq!(FleetHealth::of(&recovering, true), FleetHealth::Healthy);
    }

    #[test]
    fn serialises_lowercase() {
        let words: Vec<String> = [
            FleetHealth::Starting,
            FleetHealth::Healthy,
            FleetHealth::Unhealthy,
        ]
        .iter()
        .map(|h| {
            serde_json::to_value(h)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
        assert_eq!(words, ["starting", "healthy", "unhealthy"]);
    }
}
