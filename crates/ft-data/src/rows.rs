//! Where training rows come from: a list in memory, or rows described by index over a
//! memory-mapped token cache ([`crate::cache::CachedRows`]), built on demand.

use crate::pack::PackedRow;

/// Training rows by index.
pub trait RowSource: Send + Sync {
    /// Number of rows.
    fn len(&self) -> usize;
    /// Whether there is no row.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Row `i` (`i < len()`).
    fn row(&self, i: usize) -> PackedRow;
}

impl RowSource for Vec<PackedRow> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn row(&self, i: usize) -> PackedRow {
        self[i].clone()
    }
}

/// Rows shared by several readers (the peers of a data-parallel run).
impl<T: RowSource + ?Sized> RowSource for std::sync::Arc<T> {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn row(&self, i: usize) -> PackedRow {
        (**self).row(i)
    }
}
