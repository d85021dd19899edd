//! Matching one chain in one session: the partial matches kept per depth, and how one
//! stage extends them.

use super::{ChainProgress, ReachedStage};
use crate::policy::model::ChainSpec;

/// Partial matches of one chain in one session.
#[derive(Clone, Debug, Default)]
pub(super) struct ChainMatch {
    /// `partial[k]`: the match with the most recent start that reached stages `0..=k`.
    /// Complete matches are reported and reset, so there are `stages - 1` slots.
    pub(super) partial: Vec<Option<Vec<ReachedStage>>>,
    pub(super) completions: u64,
    pub(super) last_progress: Option<ChainProgress>,
}

impl ChainMatch {
    pub(super) fn new(stages: usize) -> Self {
        Self { partial: vec![None; stages.saturating_sub(1)], completions: 0, last_progress: None }
    }

    pub(super) fn depth(&self) -> usize {
        self.partial.iter().rposition(Option::is_some).map_or(0, |index| index + 1)
    }

    pub(super) fn expire(&mut self, now_ns: i128, window_ns: i128) {
        for slot in &mut self.partial {
            if slot.as_ref().and_then(|stages| stages.first()).is_some_and(|first| now_ns - first.ts_ns > window_ns) {
                *slot = None;
            }
        }
    }
}

/// Feeds one stage to one chain's partial matches; returns the progress to report, if the
/// chain reached a depth it had not reached.
pub(super) fn advance(
    spec: &ChainSpec,
    state: &mut ChainMatch,
    reached: ReachedStage,
    session: u64,
    session_name: &str,
) -> Option<ChainProgress> {
    let stages = spec.stages.len();
    if stages == 0 {
        return None;
    }
    if state.partial.len() != stages - 1 {
        *state = ChainMatch::new(stages);
    }
    state.expire(reached.ts_ns, spec.window_ns());
    let depth_before = state.depth();
    let report = |stages_reached: Vec<ReachedStage>, complete: bool| ChainProgress {
        chain_id: spec.id.clone(),
        description: spec.description.clone(),
        session,
        session_name: session_name.to_string(),
        stages_reached,
        stages_total: stages,
        complete,
        severity: spec.severity,
        mitre: spec.mitre.clone(),
        window_secs: spec.window_secs,
    };
    // Deepest stage first, so one event never fills two stages of the same match (a chain
    // may list a kind twice) and each extension reads the state before this event.
    let mut deepest_new: Option<usize> = None;
    for index in (0..stages).rev() {
        if spec.stages[index] != reached.stage {
            continue;
        }
        let extended = if index == 0 {
            vec![reached]
        } else {
            let Some(prefix) = state.partial[index - 1].as_ref() else {
                continue;
            };
            let mut extended = prefix.clone();
            extended.push(reached);
            extended
        };
        if index == stages - 1 {
            // Complete: report it and start over, so the chain can be reported again.
            state.partial.iter_mut().for_each(|slot| *slot = None);
            state.completions = state.completions.saturating_add(1);
            return Some(report(extended, true));
        }
        let start = extended[0].ts_ns;
        let fresher = state.partial[index].as_ref().is_none_or(|current| start > current[0].ts_ns);
        if fresher {
            state.partial[index] = Some(extended);
            deepest_new = deepest_new.max(Some(index));
        }
    }
    let index = deepest_new?;
    if index < depth_before {
        return None;
    }
    state.partial[index].clone().map(|stages_reached| report(stages_reached, false))
}
