/// The root of a complete (perfect) subtree: the `2^level` leaves
/// `[index * 2^level, (index + 1) * 2^level)`.
///
/// Level 0 nodes are leaves. Only complete subtrees are ever stored; the
/// hashes of a tree's ragged right edge are recomputed from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    /// Returns the node of leaf `index`.
    pub fn leaf(index: u64) -> Self {
        NodeId { level: 0, index }
    }

    /// Returns the node at `level` and `index`.
    pub fn new(level: u8, index: u64) -> Self {
        NodeId { level, index }
    }

    /// Returns the index of the first leaf under this node.
    pub fn first_leaf(&self) -> u64 {
        self.index << self.level
    }

    /// Returns the index of the last leaf under this node: the leaf whose
    /// append completes it.
    pub fn last_leaf(&self) -> u64 {
        ((self.index + 1) << self.level) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_its_leaves() {
        let n = NodeId::new(3, 2);
        assert_eq!(n.first_leaf(), 16);
        assert_eq!(n.last_leaf(), 23);
        assert_eq!(NodeId::leaf(7).last_leaf(), 7);
    }
}
