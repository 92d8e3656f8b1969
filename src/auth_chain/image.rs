//! The auth-chain index in a room image ([`crate::image`]): its three
//! arrays, node → event and node → auth events, as they are.

use super::{AuthChainIndex, AuthNode};
use crate::ids::EventIdx;
use crate::image::{index, ImageError, Reader, Writer};

impl AuthChainIndex {
    /// Writes the index.
    pub(crate) fn write_image(&self, w: &mut Writer<'_>) {
        w.u32s(self.events.iter().map(|e| e.0));
        w.u32s(self.parents.iter().map(|p| p.0));
        w.u32s(self.parents_end.iter().copied());
    }

    /// Reads an index written by [`write_image`](Self::write_image) for a
    /// room of `events` events, checking that every node's event is one of
    /// them and its auth events are nodes indexed before it.
    pub(crate) fn read_image(r: &mut Reader<'_>, events: usize) -> Result<Self, ImageError> {
        let nodes = r.u32s()?;
        for e in &nodes {
            index(*e, events, "an auth node's event")?;
        }
        let parents = r.u32s()?;
        let ends = r.u32s()?;
        let ends_ok = ends.len() == nodes.len()
            && ends.windows(2).all(|w| w[0] <= w[1])
            && ends.last().is_none_or(|e| *e as usize == parents.len());
        if !ends_ok {
            return Err(ImageError::Corrupt("the auth index's parent lists do not add up".into()));
        }
        let mut start = 0;
        for (n, end) in ends.iter().enumerate() {
            for p in &parents[start..*end as usize] {
                // A node's auth events are indexed before it.
                index(*p, n, "an auth node's parent")?;
            }
            start = *end as usize;
        }
        Ok(AuthChainIndex {
            events: nodes.into_iter().map(EventIdx).collect(),
            parents: parents.into_iter().map(AuthNode).collect(),
            parents_end: ends,
        })
    }
}
