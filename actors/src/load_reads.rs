//! Which load source an endpoint reads next, and what one read's result means (SPEC 10.1):
//! a source that is not there (404, 405, 501) or says nothing parseable is dropped — said
//! once — until the endpoint's next recovery or a reload, and the type's next source is
//! tried (llama.cpp: `/slots`, then `/metrics`); a read that merely failed (a timeout, a
//! refused connection, a 500) keeps its source and lets the last report age.
//!
//! Pure: the actor does the reading and the timing. Nothing here touches health.

use crate::load::{LoadReport, LoadSource};
use crate::profiles::EndpointType;

/// How one read of a source went, as the prober saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadRead {
    Report(LoadReport),
    /// The server has no such source: 404, 405 or 501 (llama-server's answer when `/slots`
    /// or `/metrics` is switched off).
    Absent {
        status: u16,
    },
    /// A 2xx whose body is not that source's format.
    Unparseable(String),
    /// Anything else (timeout, connection, another status): the source stays.
    Failed(String),
}

/// What the actor does after a read.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadStep {
    /// Post this report.
    Post(LoadReport),
    /// Nothing to post; the last report ages.
    Nothing,
    /// The source was dropped (log `why` once). `none_left`: the endpoint has no load signal
    /// any more, so the last report goes too.
    Dropped {
        source: LoadSource,
        why: String,
        none_left: bool,
    },
}

#[derive(Debug, Clone)]
pub struct LoadReads {
    sources: &'static [LoadSource],
    dropped: Vec<bool>,
}

impl LoadReads {
    pub fn new(kind: EndpointType) -> Self {
        let sources = LoadSource::for_type(kind);
        LoadReads {
            sources,
            dropped: vec![false; sources.len()],
        }
    }

    /// The source to read next; `None`: the type has none, or all were dropped.
    pub fn next(&self) -> Option<LoadSource> {
        self.sources
            .iter()
            .zip(&self.dropped)
            .find(|(_, dropped)| !**dropped)
            .map(|(s, _)| *s)
    }

    /// What a read of `source` means.
    pub fn on_read(&mut self, source: LoadSource, read: LoadRead) -> LoadStep {
        let why = match read {
            LoadRead::Report(report) => return LoadStep::Post(report),
            LoadRead::Failed(_) => return LoadStep::Nothing,
            LoadRead::Absent { status } => format!("answered {status}"),
            LoadRead::Unparseable(e) => e,
        };
        let Some(at) = self.sources.iter().position(|s| *s == source) else {
            return LoadStep::Nothing;
        };
        if self.dropped[at] {
            return LoadStep::Nothing;
        }
        self.dropped[at] = true;
        LoadStep::Dropped {
            source,
            why,
            none_left: self.next().is_none(),
        }
    }

    /// The endpoint recovered: every source gets another chance.
    pub fn on_recovery(&mut self) {
        self.dropped.fill(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(running: u64) -> LoadReport {
        LoadReport {
            running: Some(running),
            ..LoadReport::default()
        }
    }

    #[test]
    fn types_without_a_source_read_nothing() {
        for kind in [
            EndpointType::OpenAiCompatible,
            EndpointType::Auto,
            EndpointType::Lemonade,
            EndpointType::LiteLlm,
            EndpointType::LmDeploy,
            EndpointType::DockerModelRunner,
            EndpointType::Omlx,
            EndpointType::VllmMlx,
        ] {
            assert_eq!(LoadReads::new(kind).next(), None, "{kind:?}");
        }
        assert_eq!(
            LoadReads::new(EndpointType::Ollama).next(),
            Some(LoadSource::OllamaPs)
        );
    }

    #[test]
    fn llamacpp_falls_back_from_slots_to_metrics_and_says_so_once() {
        let mut r = LoadReads::new(EndpointType::LlamaCpp);
        assert_eq!(r.next(), Some(LoadSource::LlamaCppSlots));
        let step = r.on_read(LoadSource::LlamaCppSlots, LoadRead::Absent { status: 501 });
        assert_eq!(
            step,
            LoadStep::Dropped {
                source: LoadSource::LlamaCppSlots,
                why: "answered 501".into(),
                none_left: false
            }
        );
        assert_eq!(r.next(), Some(LoadSource::LlamaCppMetrics));
        // A late answer of the dropped source is not news again.
        let late = r.on_read(LoadSource::LlamaCppSlots, LoadRead::Absent { status: 501 });
        assert_eq!(late, LoadStep::Nothing);
        let step = r.on_read(
            LoadSource::LlamaCppMetrics,
            LoadRead::Unparseable("no llamacpp metrics".into()),
        );
        assert!(matches!(
            step,
            LoadStep::Dropped {
                none_left: true,
                ..
            }
        ));
        assert_eq!(r.next(), None);
        r.on_recovery();
        assert_eq!(r.next(), Some(LoadSource::LlamaCppSlots));
    }

    #[test]
    fn a_failed_read_keeps_its_source() {
        let mut r = LoadReads::new(EndpointType::Vllm);
        let step = r.on_read(LoadSource::VllmMetrics, LoadRead::Failed("timeout".into()));
        assert_eq!(step, LoadStep::Nothing);
        assert_eq!(r.next(), Some(LoadSource::VllmMetrics));
        let step = r.on_read(LoadSource::VllmMetrics, LoadRead::Report(report(2)));
        assert_eq!(step, LoadStep::Post(report(2)));
    }
}
