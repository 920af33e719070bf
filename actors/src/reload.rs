//! What a reload does to the fleet (SPEC 2): the running endpoints' settings against the new
//! file's, endpoint by endpoint (by name).
//!
//! Pure: the supervisor asks for a [`Plan`] and carries it out. An endpoint whose `url`, `type`
//! and `health_checks` are unchanged keeps its actor — status, breakers, counters and models —
//! and only takes its new settings; one whose backend changed is replaced by a fresh actor.

use std::sync::Arc;

use crate::settings::EndpointSettings;

/// How the running fleet becomes the configured one.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// New names: start an actor.
    pub add: Vec<Arc<EndpointSettings>>,
    /// Names no longer configured: retire their actors (in-flight requests finish).
    pub remove: Vec<Arc<str>>,
    /// Another backend behind the same name: retire the actor and start a fresh one.
    pub replace: Vec<Arc<EndpointSettings>>,
    /// The same backend with other settings: the running actor takes them in place.
    pub reconfigure: Vec<Arc<EndpointSettings>>,
    /// Untouched.
    pub keep: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty()
            && self.remove.is_empty()
            && self.replace.is_empty()
            && self.reconfigure.is_empty()
    }
}

/// Compares `running` with `wanted` (both keyed by name; names are unique in each).
pub fn plan<'a>(
    running: impl IntoIterator<Item = &'a Arc<EndpointSettings>>,
    wanted: &[Arc<EndpointSettings>],
) -> Plan {
    let running: Vec<&Arc<EndpointSettings>> = running.into_iter().collect();
    let mut out = Plan::default();
    for new in wanted {
        match running.iter().find(|old| old.name == new.name) {
            None => out.add.push(new.clone()),
            Some(old) if ***old == **new => out.keep += 1,
            Some(old) if same_backend(old, new) => out.reconfigure.push(new.clone()),
            Some(_) => out.replace.push(new.clone()),
        }
    }
    for old in running {
        if !wanted.iter().any(|new| new.name == old.name) {
            out.remove.push(old.name.clone());
        }
    }
    out
}

/// Whether two settings describe the same backend watched the same way, so that its state
/// (status, breakers, counters, models) still means something under the new settings.
fn same_backend(old: &EndpointSettings, new: &EndpointSettings) -> bool {
    old.url == new.url && old.kind == new.kind && old.health_checks == new.health_checks
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::profiles::EndpointType;

    fn endpoint(name: &str, url: &str) -> Arc<EndpointSettings> {
        Arc::new(EndpointSettings::new(name, url, EndpointType::Vllm))
    }

    fn with(
        e: &Arc<EndpointSettings>,
        f: impl FnOnce(&mut EndpointSettings),
    ) -> Arc<EndpointSettings> {
        let mut s = (**e).clone();
        f(&mut s);
        Arc::new(s)
    }

    #[test]
    fn nothing_changed_is_an_empty_plan() {
        let a = endpoint("a", "http://a:1");
        let p = plan([&a], &[a.clone()]);
        assert!(p.is_empty());
        assert_eq!(p.keep, 1);
    }

    #[test]
    fn new_and_gone_names_are_added_and_removed() {
        let (a, b) = (endpoint("a", "http://a:1"), endpoint("b", "http://b:1"));
        let p = plan([&a], &[b.clone()]);
        assert_eq!(p.add, [b]);
        assert_eq!(p.remove, [Arc::<str>::from("a")]);
    }

    #[test]
    fn other_settings_of_the_same_backend_are_taken_in_place() {
        let a = endpoint("a", "http://a:1");
        let faster = with(&a, |s| s.check_interval = Duration::from_secs(1));
        let p = plan([&a], &[faster.clone()]);
        assert_eq!(p.reconfigure, [faster]);
        assert!(p.replace.is_empty() && p.add.is_empty() && p.remove.is_empty());
    }

    #[test]
    fn another_backend_behind_the_name_is_a_fresh_actor() {
        let a = endpoint("a", "http://a:1");
        for changed in [
            with(&a, |s| s.url = "http://a:2".into()),
            with(&a, |s| s.kind = EndpointType::Ollama),
            with(&a, |s| s.health_checks = false),
        ] {
            let p = plan([&a], &[changed.clone()]);
            assert_eq!(p.replace, [changed]);
        }
    }
}
