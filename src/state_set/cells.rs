//! Cells of which few are set at once, in pages (the states' built maps:
//! one cell per state, nearly all empty).

use std::cell::OnceCell;

use super::stored::grow;

/// Cells of which few are set at once, in pages of [`CELLS_PAGE`] allocated
/// when one of their cells is set and freed when the last is taken (a cell
/// per state was 8 bytes a state: 0.9 MiB at Matrix HQ's 111,120 states,
/// nearly all of them empty).
#[derive(Debug)]
pub(super) struct PagedCells<T> {
    pages: Vec<OnceCell<Box<[OnceCell<T>; CELLS_PAGE]>>>,
    len: usize,
}

pub(super) const CELLS_PAGE: usize = 64;

impl<T> Default for PagedCells<T> {
    fn default() -> Self {
        Self { pages: Vec::new(), len: 0 }
    }
}

impl<T> PagedCells<T> {
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn reserve(&mut self, extra: usize) {
        self.pages.reserve_exact((self.len + extra).div_ceil(CELLS_PAGE).saturating_sub(self.pages.len()));
    }

    /// One more cell, empty.
    pub(super) fn push_empty(&mut self) {
        if self.len % CELLS_PAGE == 0 {
            grow(&mut self.pages, 1);
            self.pages.push(OnceCell::new());
        }
        self.len += 1;
    }

    pub(super) fn get(&self, i: usize) -> Option<&T> {
        debug_assert!(i < self.len);
        self.pages[i / CELLS_PAGE].get()?[i % CELLS_PAGE].get()
    }

    /// Cell `i`'s value, set by `init` if empty (its page allocated if
    /// none of its cells is set).
    pub(super) fn get_or_init(&self, i: usize, init: impl FnOnce() -> T) -> &T {
        assert!(i < self.len, "cell {i} of {}", self.len);
        let page = self.pages[i / CELLS_PAGE].get_or_init(|| Box::new(std::array::from_fn(|_| OnceCell::new())));
        page[i % CELLS_PAGE].get_or_init(init)
    }

    /// Empties cell `i`, and frees its page once none of its cells is set.
    pub(super) fn take(&mut self, i: usize) -> Option<T> {
        let page = self.pages[i / CELLS_PAGE].get_mut()?;
        let v = page[i % CELLS_PAGE].take();
        if page.iter().all(|c| c.get().is_none()) {
            self.pages[i / CELLS_PAGE].take();
        }
        v
    }

    /// Keeps the first `len` cells.
    pub(super) fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        (len..self.len.min(len.div_ceil(CELLS_PAGE) * CELLS_PAGE)).for_each(|i| drop(self.take(i)));
        self.pages.truncate(len.div_ceil(CELLS_PAGE));
        self.len = len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cells read back as set; a page is allocated while one of its cells
    /// is set, freed when the last is taken or cut.
    #[test]
    fn paged_cells_hold_pages_only_while_set() {
        let mut cells: PagedCells<Box<usize>> = PagedCells::default();
        (0..200).for_each(|_| cells.push_empty());
        let held = |c: &PagedCells<Box<usize>>| c.pages.iter().filter(|p| p.get().is_some()).count();
        assert_eq!((cells.len(), held(&cells)), (200, 0));
        for i in [3, 5, 70, 199] {
            assert_eq!(**cells.get_or_init(i, || Box::new(i)), i);
            assert_eq!(**cells.get_or_init(i, || Box::new(0)), i, "set once");
        }
        assert_eq!(held(&cells), 3);
        assert_eq!((cells.get(4), cells.get(5).map(|b| **b)), (None, Some(5)));
        assert_eq!(cells.take(3).map(|b| *b), Some(3));
        assert_eq!(held(&cells), 3, "cell 5 holds its page");
        assert_eq!(cells.take(5).map(|b| *b), Some(5));
        assert_eq!((held(&cells), cells.take(5)), (2, None));
        cells.truncate(100);
        assert_eq!((cells.len(), held(&cells), cells.get(70).map(|b| **b)), (100, 1, Some(70)));
        cells.truncate(70);
        assert_eq!((cells.len(), held(&cells)), (70, 0), "the cut cell's page goes");
        (0..10).for_each(|_| cells.push_empty());
        assert_eq!((cells.get(70), **cells.get_or_init(75, || Box::new(75))), (None, 75));
    }
}
