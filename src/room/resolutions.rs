//! The room's state resolutions, by their distinct input states: the
//! resolved state and how it was resolved. A room read back from its image
//! keeps them as checked numbers and builds the map when it first resolves,
//! is asked how a merge was resolved, or computes its current state with
//! several forward extremities (the current state is their resolution): a
//! room with one forward extremity answers queries after a restart without
//! them (a 150,000-event room has 18,473, whose map took a tenth of its
//! read-back).

use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::Arc;

use crate::event::StateKeyIdx;
use crate::image::{index, ImageError, Reader, Writer};
use crate::state_set::StateSetId;

use super::ResolutionInfo;

/// A resolution: the state it gave and how.
pub(super) type Resolved = (StateSetId, Arc<ResolutionInfo>);

#[derive(Debug, Default)]
pub(super) struct Resolutions {
    map: OnceCell<HashMap<Vec<StateSetId>, Resolved>>,
    /// Read back from an image, each number checked: per resolution its
    /// inputs, the state, the inputs again (as [`ResolutionInfo`] has
    /// them), the conflicted keys, each list after its length, then the
    /// full conflicted set's size as two halves.
    read: Vec<u32>,
}

impl Resolutions {
    fn built(&self) -> &HashMap<Vec<StateSetId>, Resolved> {
        self.map.get_or_init(|| build(&self.read))
    }

    fn built_mut(&mut self) -> &mut HashMap<Vec<StateSetId>, Resolved> {
        self.built();
        self.read = Vec::new();
        self.map.get_mut().expect("just built")
    }

    /// The resolution of these distinct input states (sorted), if made.
    pub(super) fn get(&self, inputs: &[StateSetId]) -> Option<&Resolved> {
        self.built().get(inputs)
    }

    pub(super) fn insert(&mut self, inputs: Vec<StateSetId>, resolved: Resolved) {
        self.built_mut().insert(inputs, resolved);
    }

    /// Keeps the resolutions `keep` says to (rollback of a failed batch).
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&[StateSetId], StateSetId) -> bool) {
        self.built_mut().retain(|k, (v, _)| keep(k, *v));
    }

    pub(super) fn write_image(&self, w: &mut Writer<'_>) {
        let mut resolutions: Vec<_> = self.built().iter().collect();
        resolutions.sort_by(|a, b| a.0.cmp(b.0));
        w.len(resolutions.len());
        for (inputs, (id, info)) in resolutions {
            w.u32s(inputs.iter().map(|s| s.0));
            w.u32(id.0);
            w.u32s(info.inputs.iter().map(|s| s.0));
            w.u32s(info.conflicted_keys.iter().map(|k| k.0));
            w.len(info.full_conflicted_set);
        }
    }

    /// Reads what [`write_image`](Self::write_image) wrote: every state
    /// below `states`, every key below `keys`.
    pub(super) fn read_image(r: &mut Reader<'_>, states: usize, keys: usize) -> Result<Self, ImageError> {
        let n = r.len(28)?;
        let mut read = Vec::new();
        let mut list = Vec::new();
        let mut numbers = |r: &mut Reader<'_>, read: &mut Vec<u32>, below: usize, what: &str| {
            r.u32s_into(&mut list)?;
            read.push(u32::try_from(list.len()).map_err(|_| ImageError::Corrupt(format!("too many {what}s")))?);
            for v in &list {
                read.push(index(*v, below, what)?);
            }
            Ok::<(), ImageError>(())
        };
        for _ in 0..n {
            numbers(r, &mut read, states, "a state")?;
            read.push(index(r.u32()?, states, "a state")?);
            numbers(r, &mut read, states, "a state")?;
            numbers(r, &mut read, keys, "a state key")?;
            // A size, not a count of what follows.
            let full = r.u64()?;
            usize::try_from(full).map_err(|_| ImageError::Corrupt("a conflicted set's size past usize".into()))?;
            read.extend([full as u32, (full >> 32) as u32]);
        }
        Ok(Self { map: OnceCell::new(), read })
    }
}

/// The map from numbers [`Resolutions::read_image`] checked.
fn build(read: &[u32]) -> HashMap<Vec<StateSetId>, Resolved> {
    let mut map = HashMap::new();
    let mut at = 0;
    let list = |at: &mut usize| {
        let n = read[*at] as usize;
        let l = &read[*at + 1..*at + 1 + n];
        *at += 1 + n;
        l
    };
    while at < read.len() {
        let key: Vec<StateSetId> = list(&mut at).iter().map(|s| StateSetId(*s)).collect();
        let id = StateSetId(read[at]);
        at += 1;
        let inputs = list(&mut at).iter().map(|s| StateSetId(*s)).collect();
        let conflicted_keys = list(&mut at).iter().map(|k| StateKeyIdx(*k)).collect();
        let full_conflicted_set = (u64::from(read[at]) | u64::from(read[at + 1]) << 32) as usize;
        at += 2;
        map.insert(key, (id, Arc::new(ResolutionInfo { inputs, conflicted_keys, full_conflicted_set })));
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolutions() -> Resolutions {
        let mut r = Resolutions::default();
        for i in 0..300u32 {
            let inputs = vec![StateSetId(i), StateSetId(i + 1 + i % 7)];
            let info = ResolutionInfo {
                inputs: inputs.clone(),
                conflicted_keys: (0..i % 5).map(StateKeyIdx).collect(),
                full_conflicted_set: (i as usize) << 20,
            };
            r.insert(inputs, (StateSetId(400 + i), Arc::new(info)));
        }
        r
    }

    /// Read back, the map is built when first used, and equals the one written.
    #[test]
    fn resolutions_read_back_are_built_on_first_use() {
        let written = resolutions();
        let read =
            crate::image::round_trip(|w| written.write_image(w), |r| Resolutions::read_image(r, 700, 5)).unwrap();
        assert!(read.map.get().is_none());
        assert_eq!(read.built(), written.built());
        let mut read = read;
        read.retain(|inputs, _| inputs[0].0 < 100);
        assert_eq!(read.built().len(), 100);
        assert!(read.read.is_empty());
    }

    /// A state or key past the room's is refused when read.
    #[test]
    fn resolutions_out_of_range_are_refused() {
        let written = resolutions();
        let read = |states, keys| {
            crate::image::round_trip(|w| written.write_image(w), |r| Resolutions::read_image(r, states, keys))
                .map(|_| ())
        };
        assert!(read(700, 4).is_ok());
        assert!(read(699, 4).is_err());
        assert!(read(700, 3).is_err());
    }
}
