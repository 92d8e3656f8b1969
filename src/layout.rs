//! A lane layout of the room DAG for drawing, like `git log --graph`, in
//! O(n): one pass over the events in row order.
//!
//! * **Rows**: an event's `depth`, or its arrival position.
//! * **Lanes**: an event continues the lane of its first prev event that no
//!   earlier child has continued; otherwise (a fork, or a second parent's
//!   side of a merge) it opens the leftmost free lane. A lane is freed once
//!   every child of its last event has been placed, and reused only on a
//!   later row, so no two events share a cell.
//!
//! The layout depends only on the events placed so far: adding events never
//! moves earlier ones (the picture stays still while stepping through a room).

use crate::ids::EventIdx;
use crate::pages::PageError;
use crate::room::Room;

/// How rows are assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    /// Row = the event's `depth` (topological height as the sender claims it).
    Depth,
    /// Row = the event's arrival position (one event per row).
    Arrival,
}

/// An event's cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    /// Lane (column), from 0.
    pub lane: u32,
    /// Row.
    pub row: u32,
}

/// The layout of every stored event, indexed by [`EventIdx`].
///
/// # Errors
/// The room's page store failed to read a block of events back.
pub fn layout(room: &Room, rows: Rows) -> Result<Vec<Cell>, PageError> {
    let n = room.events().len();
    // One walk over the events: each one's row, and its prev events (one
    // list, `prev_at` saying where each event's start).
    let mut row = Vec::with_capacity(n);
    let mut prev_at = Vec::with_capacity(n + 1);
    let mut prev_list: Vec<EventIdx> = Vec::with_capacity(n);
    prev_at.push(0);
    room.events().walk(|e, prev, _| -> Result<(), PageError> {
        row.push(match rows {
            Rows::Arrival => e.idx.0,
            Rows::Depth => u32::try_from(e.depth.max(0)).unwrap_or(u32::MAX),
        });
        prev_list.extend_from_slice(prev);
        prev_at.push(prev_list.len());
        Ok(())
    })?;
    let row_of = |i: usize| row[i];
    let prev_events = |i: usize| &prev_list[prev_at[i]..prev_at[i + 1]];
    // Children counts (only edges to stored prev events exist).
    let mut remaining_children = vec![0u32; n];
    for i in 0..n {
        for p in prev_events(i) {
            remaining_children[p.ix()] += 1;
        }
    }
    // Placement order: by row, then arrival (stable for equal depths).
    let mut order: Vec<u32> = (0..n as u32).collect();
    if rows == Rows::Depth {
        order.sort_by_key(|i| (row_of(*i as usize), *i));
    }
    let mut cells = vec![Cell { lane: 0, row: 0 }; n];
    let mut continued = vec![false; n];
    // Per lane: the row of its last event, and whether it is free.
    let mut lane_last_row: Vec<u32> = Vec::new();
    let mut lane_free: Vec<bool> = Vec::new();
    for &i in &order {
        let i = i as usize;
        let row = row_of(i);
        let prevs = prev_events(i);
        let mut lane = None;
        for p in prevs {
            if !continued[p.ix()] && lane.is_none() {
                continued[p.ix()] = true;
                lane = Some(cells[p.ix()].lane);
            }
        }
        // Parents whose every child is now placed free their lane (unless continued here).
        for p in prevs {
            remaining_children[p.ix()] -= 1;
            let pl = cells[p.ix()].lane;
            if remaining_children[p.ix()] == 0
                && Some(pl) != lane
                && lane_last_row.get(pl as usize).is_some_and(|r| *r == cells[p.ix()].row)
            {
                lane_free[pl as usize] = true;
            }
        }
        let lane = lane.unwrap_or_else(|| {
            match lane_free.iter().enumerate().position(|(l, free)| *free && lane_last_row[l] < row) {
                Some(l) => l as u32,
                None => {
                    lane_free.push(false);
                    lane_last_row.push(0);
                    (lane_free.len() - 1) as u32
                }
            }
        });
        lane_free[lane as usize] = false;
        lane_last_row[lane as usize] = row;
        cells[i] = Cell { lane, row };
        if remaining_children[i] == 0 {
            // A leaf (a forward extremity or a dead end): its lane is free from the next row.
            lane_free[lane as usize] = true;
        }
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::demo_room;
    use crate::room::Verification;

    #[test]
    fn cells_are_unique_and_chains_keep_their_lane() {
        let fx = demo_room(120);
        let mut room = Room::new("12").unwrap();
        for e in fx["events"].as_array().unwrap() {
            room.ingest(&e["pdu"].to_string(), Verification::Unsigned);
        }
        for rows in [Rows::Depth, Rows::Arrival] {
            let cells = layout(&room, rows).unwrap();
            let mut seen = std::collections::HashSet::new();
            for c in &cells {
                assert!(seen.insert((c.lane, c.row)), "{rows:?}: two events in one cell {c:?}");
            }
            // A linear run stays in one lane.
            let forks = cells.iter().map(|c| c.lane).max().unwrap();
            assert!(forks >= 1, "the demo room forks");
            assert!(forks < 6, "lanes are reused: {forks}");
        }
    }
}
