//! Merkle Search Trees: node decoding and encoding, full walks, edits on partial trees,
//! and the sync 1.1 inversion proof.
//!
//! An ATProto repository maps keys (`collection/rkey`) to record CIDs in an MST
//! (protocol.md §3). A key's depth is the number of leading zero bits of SHA-256(key),
//! halved; a node at height `h` holds the keys of depth `h` in its range, with subtrees of
//! height `h - 1` between them. The tree shape is a function of the key set alone, so the
//! root CID commits to the whole map.
//!
//! [`Tree`] holds a possibly *partial* tree: nodes are loaded lazily from a
//! [`BlockSource`] (a firehose commit's CAR slice), unloaded subtrees stay as CIDs, and an
//! edit that needs a block the source lacks fails with [`MstError::MissingBlock`].
//! [`invert_ops`] undoes a commit's operations on the partial tree of its new root and
//! returns the root it reaches, which must equal the commit's `prevData`.
//!
//! Nodes are checked as they are loaded: exact shape (`{e: [{k, p, t, v}], l}` with `l`
//! and `t` present, null or a DAG-CBOR link), canonical prefix compression, strictly
//! increasing keys, every key's depth equal to the node's height, children exactly one
//! level down, at most [`MAX_NODE_ENTRIES`] entries, and no node reached twice.
//! Node encoding is written by hand for the fixed shape and re-encodes loaded nodes to
//! their original bytes.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::car::Car;
use super::cbor::{CborError, CidRef, DAG_CBOR, Reader, cid_bytes_for, sha256};

/// Most entries one node may hold. With fanout 4 a node averages about four entries; this
/// bounds the work a hostile node can cause without touching honest repositories.
pub const MAX_NODE_ENTRIES: usize = 1024;
/// Longest key accepted (a repository path is an NSID of at most 317 bytes, `/`, and a
/// record key of at most 512).
pub const MAX_KEY_LEN: usize = 1024;

/// The encoding of the empty tree's only node, `{e: [], l: null}`.
pub const EMPTY_NODE: [u8; 7] = [0xa2, 0x61, b'e', 0x80, 0x61, b'l', 0xf6];

/// The root CID of the empty tree (`bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm`).
pub fn empty_root() -> DagCid {
    DagCid::of_block(&EMPTY_NODE)
}

/// The depth of `key` in an MST: leading zero bits of SHA-256(key), divided by two.
pub fn key_depth(key: &[u8]) -> u8 {
    let digest = sha256(key);
    let mut zeros = 0u32;
    for byte in digest {
        if byte == 0 {
            zeros += 8;
        } else {
            zeros += byte.leading_zeros();
            break;
        }
    }
    // At most 256 / 2 = 128.
    (zeros / 2) as u8
}

/// The length of the longest common prefix of `a` and `b`, in bytes.
pub fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A CIDv1 with codec DAG-CBOR and a SHA-256 digest (36 bytes): the form of every MST node
/// link, and of commit CIDs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DagCid([u8; 36]);

/// The prefix every such CID starts with: version 1, DAG-CBOR, SHA-256, 32 bytes.
const NODE_CID_PREFIX: [u8; 4] = [0x01, 0x71, 0x12, 0x20];

impl DagCid {
    /// The CID of `bytes` as a DAG-CBOR block.
    pub fn of_block(bytes: &[u8]) -> Self {
        DagCid(cid_bytes_for(DAG_CBOR, bytes))
    }

    /// Accepts binary CID bytes only if they have the shape of an MST node link.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: [u8; 36] = bytes.try_into().ok()?;
        (bytes[..4] == NODE_CID_PREFIX).then_some(DagCid(bytes))
    }

    /// Accepts a link only if it has the shape of an MST node link.
    pub fn from_cid_ref(cid: &CidRef<'_>) -> Option<Self> {
        Self::from_bytes(cid.bytes())
    }

    /// The binary CID.
    pub fn bytes(&self) -> &[u8; 36] {
        &self.0
    }
}

impl PartialEq<CidRef<'_>> for DagCid {
    fn eq(&self, other: &CidRef<'_>) -> bool {
        other.bytes() == self.0
    }
}

impl fmt::Display for DagCid {
    /// The base32 string form (`bafyrei…`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match CidRef::from_bytes(&self.0) {
            Ok(cid) => fmt::Display::fmt(&cid, f),
            // Unreachable: the constructors only admit the fixed, parseable prefix.
            Err(_) => f.write_str("<invalid cid>"),
        }
    }
}

impl fmt::Debug for DagCid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DagCid({self})")
    }
}

/// Why an MST could not be read, edited or proven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MstError {
    /// A node needed for the operation is not among the available blocks.
    #[error("MST node {0} is not in the available blocks")]
    MissingBlock(DagCid),
    /// A node block is not valid DAG-CBOR.
    #[error("MST node {cid}: {source}")]
    Cbor {
        /// The node.
        cid: DagCid,
        /// What the CBOR reader rejected.
        source: CborError,
    },
    /// A node block does not have the node shape `{e: [{k, p, t, v}], l}`.
    #[error("MST node {cid}: {what}")]
    Shape {
        /// The node.
        cid: DagCid,
        /// What is wrong.
        what: &'static str,
    },
    /// A node has more than [`MAX_NODE_ENTRIES`] entries.
    #[error("MST node {cid} has {entries} entries (limit {MAX_NODE_ENTRIES})")]
    TooManyEntries {
        /// The node.
        cid: DagCid,
        /// How many it declares.
        entries: usize,
    },
    /// Keys not canonically prefix-compressed, or not strictly increasing.
    #[error("MST node {cid}: {what}")]
    KeyOrder {
        /// The node (for keys out of order across nodes, the node of the later key).
        cid: DagCid,
        /// What is wrong.
        what: &'static str,
    },
    /// A key sits at a height its hash does not give it.
    #[error("MST node {cid}: key of depth {depth} in a node at height {height}")]
    WrongDepth {
        /// The node.
        cid: DagCid,
        /// The depth of one of its keys.
        depth: u8,
        /// The height the node sits at.
        height: u8,
    },
    /// A node reached twice: a tree never shares subtrees (keys are unique).
    #[error("MST node {0} reached twice")]
    DuplicateNode(DagCid),
    /// A key is empty or longer than [`MAX_KEY_LEN`].
    #[error("MST key of {0} bytes is empty or too long")]
    BadKey(usize),
    /// A key is not UTF-8 (a full walk returns keys as repository paths).
    #[error("MST key is not UTF-8")]
    KeyNotUtf8,
    /// The tree's in-memory structure contradicts itself (a bug, or a node that slipped
    /// past the checks); the operation is abandoned.
    #[error("inconsistent MST: {0}")]
    Inconsistent(&'static str),
    /// The same path appears twice in one commit's operations.
    #[error("duplicate path {0} in operations")]
    DuplicatePath(String),
    /// Inverting a create or update: the path is not in the tree.
    #[error("{0}: not in the tree to invert")]
    KeyNotFound(String),
    /// Inverting a delete: the path is already in the tree.
    #[error("{0}: already in the tree before re-inserting a deleted record")]
    KeyPresent(String),
    /// Inverting a create or update: the tree holds another value than the operation's `cid`.
    #[error("{0}: tree value differs from the operation's cid")]
    ValueMismatch(String),
}

impl MstError {
    /// Whether the error says only that a needed block was not supplied.
    pub fn is_missing_block(&self) -> bool {
        matches!(self, MstError::MissingBlock(_))
    }
}

/// Where [`Tree`] finds node blocks by CID.
pub trait BlockSource<'a> {
    /// The bytes of the block with this CID, if available (already checked against it).
    fn block(&self, cid: &DagCid) -> Option<&'a [u8]>;
}

impl<'a, S: BlockSource<'a> + ?Sized> BlockSource<'a> for &S {
    fn block(&self, cid: &DagCid) -> Option<&'a [u8]> {
        (**self).block(cid)
    }
}

impl<'a> BlockSource<'a> for HashMap<DagCid, &'a [u8]> {
    fn block(&self, cid: &DagCid) -> Option<&'a [u8]> {
        self.get(cid).copied()
    }
}

impl<'a> BlockSource<'a> for Car<'a> {
    fn block(&self, cid: &DagCid) -> Option<&'a [u8]> {
        self.get_bytes(&cid.0)
    }
}

/// A block source with no blocks, for trees built from scratch.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBlocks;

impl<'a> BlockSource<'a> for NoBlocks {
    fn block(&self, _cid: &DagCid) -> Option<&'a [u8]> {
        None
    }
}

/// An MST key, stored inline when short (repository paths are usually under 48 bytes)
/// so loading a node does not allocate once per key.
#[derive(Clone)]
enum Key {
    Inline { len: u8, bytes: [u8; Key::INLINE] },
    Heap(Box<[u8]>),
}

impl Key {
    const INLINE: usize = 46;
}

impl From<&[u8]> for Key {
    fn from(key: &[u8]) -> Self {
        if key.len() <= Key::INLINE {
            let mut bytes = [0u8; Key::INLINE];
            bytes[..key.len()].copy_from_slice(key);
            Key::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            Key::Heap(key.into())
        }
    }
}

impl std::ops::Deref for Key {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Key::Heap(bytes) => bytes,
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self))
    }
}

/// A key and its record CID.
#[derive(Debug)]
struct Leaf<'a> {
    key: Key,
    value: CidRef<'a>,
}

/// A subtree pointer: not loaded yet, or loaded.
#[derive(Debug)]
enum Child<'a> {
    Stub(DagCid),
    Node(Box<Node<'a>>),
}

/// One item of a node, in key order: subtrees and leaves interleaved, never two subtrees
/// in a row (the encoding's `l` is a leading subtree, each entry's `t` a following one).
#[derive(Debug)]
enum Item<'a> {
    Leaf(Leaf<'a>),
    Child(Child<'a>),
}

#[derive(Debug)]
struct Node<'a> {
    items: Vec<Item<'a>>,
    /// The height all of this node's keys have; children sit one lower.
    height: u8,
    /// The node's CID while it is unchanged since it was loaded or last encoded.
    cid: Option<DagCid>,
}

impl<'a> Node<'a> {
    fn new(height: u8, items: Vec<Item<'a>>) -> Self {
        Node {
            items,
            height,
            cid: None,
        }
    }

    /// A node for `items`, or `None` if there are none (empty subtrees do not exist).
    fn non_empty(height: u8, items: Vec<Item<'a>>) -> Option<Self> {
        (!items.is_empty()).then(|| Node::new(height, items))
    }
}

fn child_item(node: Node<'_>) -> Item<'_> {
    Item::Child(Child::Node(Box::new(node)))
}

/// Where a key falls among a node's items.
enum Pos {
    /// A leaf with this key is at the index.
    Leaf(usize),
    /// The subtree at the index covers the key's range.
    Child(usize),
    /// No item covers the key; an item for it would be inserted at the index.
    Gap(usize),
}

fn locate(items: &[Item<'_>], key: &[u8]) -> Pos {
    // The first leaf whose key is not below `key`: either the key itself, or the end of
    // the gap the key falls in (whose subtree, if any, is the item just before it).
    let at = items
        .iter()
        .position(|item| matches!(item, Item::Leaf(leaf) if &*leaf.key >= key))
        .unwrap_or(items.len());
    if let Some(Item::Leaf(leaf)) = items.get(at)
        && &*leaf.key == key
    {
        return Pos::Leaf(at);
    }
    match at.checked_sub(1).map(|i| (i, &items[i])) {
        Some((i, Item::Child(_))) => Pos::Child(i),
        _ => Pos::Gap(at),
    }
}

/// The height a node is expected at when it is decoded.
#[derive(Clone, Copy)]
enum Height {
    /// A root: its first key gives the height, and it must have keys unless it is the
    /// empty tree's node.
    Root,
    /// A node below a parent at `h + 1`.
    At(u8),
    /// Unknown (a node checked on its own): keys must share one depth.
    Any,
}

/// The set of nodes loaded so far: a short list (the usual case, a handful of nodes),
/// turned into a hash set if it grows.
#[derive(Debug, Default)]
struct Seen {
    few: Vec<DagCid>,
    many: Option<HashSet<DagCid>>,
}

impl Seen {
    /// Longest list before switching to a hash set.
    const FEW: usize = 32;

    /// Adds `cid`; false if it was already there.
    fn insert(&mut self, cid: DagCid) -> bool {
        if let Some(many) = &mut self.many {
            return many.insert(cid);
        }
        if self.few.contains(&cid) {
            return false;
        }
        if self.few.len() < Self::FEW {
            if self.few.capacity() == 0 {
                // A commit's inversion usually loads under 16 nodes.
                self.few.reserve_exact(16);
            }
            self.few.push(cid);
        } else {
            let mut many: HashSet<DagCid> = self.few.drain(..).collect();
            many.insert(cid);
            self.many = Some(many);
        }
        true
    }

    fn len(&self) -> usize {
        self.many.as_ref().map_or(self.few.len(), HashSet::len)
    }
}

/// Loads nodes from a block source, remembering which it has loaded.
#[derive(Debug)]
struct Loader<B> {
    blocks: B,
    seen: Seen,
}

impl<'a, B: BlockSource<'a>> Loader<B> {
    fn new(blocks: B) -> Self {
        Loader {
            blocks,
            seen: Seen::default(),
        }
    }

    /// Loads and checks the node `cid`.
    fn load(&mut self, cid: DagCid, height: Height) -> Result<Node<'a>, MstError> {
        // Look the block up first: a missing block leaves nothing marked as seen, so a later
        // attempt reports the block as missing again rather than as a duplicate.
        let bytes = self.blocks.block(&cid).ok_or(MstError::MissingBlock(cid))?;
        if !self.seen.insert(cid) {
            return Err(MstError::DuplicateNode(cid));
        }
        let mut node = decode_node(bytes, cid, height)?;
        node.cid = Some(cid);
        Ok(node)
    }

    /// Replaces a stub with its loaded node at `height` and returns the node.
    fn ensure<'c>(
        &mut self,
        child: &'c mut Child<'a>,
        height: u8,
    ) -> Result<&'c mut Node<'a>, MstError> {
        if let Child::Stub(cid) = *child {
            *child = Child::Node(Box::new(self.load(cid, Height::At(height))?));
        }
        match child {
            Child::Node(node) => Ok(node),
            Child::Stub(_) => Err(MstError::Inconsistent("stub after loading")),
        }
    }

    /// Takes a subtree as a loaded node at `height`.
    fn take(&mut self, child: Child<'a>, height: u8) -> Result<Node<'a>, MstError> {
        match child {
            Child::Stub(cid) => self.load(cid, Height::At(height)),
            Child::Node(node) => Ok(*node),
        }
    }
}

/// One entry as encoded, before prefix decompression and checks.
struct RawEntry<'a> {
    suffix: &'a [u8],
    prefix: u64,
    right: Option<CidRef<'a>>,
    value: CidRef<'a>,
}

const NODE_SHAPE: &str = "node must be a map of exactly e and l";
const ENTRY_SHAPE: &str = "entry must be a map of exactly k, p, t and v";
const LINK_SHAPE: &str = "subtree link is not a DAG-CBOR SHA-256 CID";

/// Builds a node from its entries, checking them as they come: canonical prefix
/// compression, strictly increasing keys, one depth for all keys.
struct Builder<'a> {
    cid: DagCid,
    items: Vec<Item<'a>>,
    /// The previous key (then the current one) in `key[..len]`, to undo prefix
    /// compression without allocating.
    key: [u8; MAX_KEY_LEN],
    len: usize,
    depth: Option<u8>,
    has_children: bool,
}

impl<'a> Builder<'a> {
    fn new(cid: DagCid, entries: usize, height: Height) -> Self {
        let mut items = Vec::with_capacity(entries * 2 + 1);
        // Slot 0 is for `l`, which the encoding puts after the entries.
        items.push(Item::Child(Child::Stub(cid)));
        Builder {
            cid,
            items,
            key: [0; MAX_KEY_LEN],
            len: 0,
            depth: match height {
                Height::At(h) => Some(h),
                Height::Root | Height::Any => None,
            },
            has_children: false,
        }
    }

    fn entry(&mut self, entry: RawEntry<'a>) -> Result<(), MstError> {
        let cid = self.cid;
        let order = |what| MstError::KeyOrder { cid, what };
        let first = self.items.len() == 1;
        let prefix = usize::try_from(entry.prefix).unwrap_or(usize::MAX);
        if prefix > self.len {
            return Err(order("prefix length exceeds the previous key"));
        }
        let key_len = prefix + entry.suffix.len();
        if key_len == 0 || key_len > MAX_KEY_LEN {
            return Err(MstError::BadKey(key_len));
        }
        if !first {
            // Canonical compression: the suffix starts exactly where the keys differ; and
            // with the prefix shared, the suffix alone decides the order.
            let rest = &self.key[prefix..self.len];
            if !rest.is_empty() && entry.suffix.first() == rest.first() {
                return Err(order("prefix length is not the common prefix"));
            }
            if entry.suffix <= rest {
                return Err(order("keys not strictly increasing"));
            }
        }
        self.key[prefix..key_len].copy_from_slice(entry.suffix);
        self.len = key_len;
        let key = &self.key[..key_len];
        let depth = key_depth(key);
        match self.depth {
            Some(height) if height != depth => {
                return Err(MstError::WrongDepth { cid, depth, height });
            }
            Some(_) => {}
            None => self.depth = Some(depth),
        }
        self.items.push(Item::Leaf(Leaf {
            key: Key::from(key),
            value: entry.value,
        }));
        if let Some(link) = entry.right {
            let link = DagCid::from_cid_ref(&link).ok_or(MstError::Shape {
                cid,
                what: LINK_SHAPE,
            })?;
            self.items.push(Item::Child(Child::Stub(link)));
            self.has_children = true;
        }
        Ok(())
    }

    fn finish(mut self, left: Option<CidRef<'_>>, height: Height) -> Result<Node<'a>, MstError> {
        let cid = self.cid;
        let shape = |what| MstError::Shape { cid, what };
        match left {
            Some(link) => {
                self.items[0] = Item::Child(Child::Stub(
                    DagCid::from_cid_ref(&link).ok_or(shape(LINK_SHAPE))?,
                ));
                self.has_children = true;
            }
            None => {
                self.items.remove(0);
            }
        }
        let items = self.items;
        let height = match (height, self.depth) {
            (Height::At(_), _) if items.is_empty() => {
                return Err(shape("empty node below the root"));
            }
            (_, Some(h)) | (Height::At(h), None) => h,
            // No keys: the empty tree's node...
            (Height::Root | Height::Any, None) if items.is_empty() => 0,
            // ...or a node that only points down, which a root must not be.
            (Height::Root, None) => return Err(shape("root node has no keys")),
            // Unknown height, no keys: any height above 0 admits the subtree.
            (Height::Any, None) => 1,
        };
        if self.has_children && height == 0 {
            return Err(shape("subtree link below height 0"));
        }
        Ok(Node {
            items,
            height,
            cid: None,
        })
    }
}

/// Decodes and checks one node block (whose CID, for errors, is `cid`).
fn decode_node(bytes: &[u8], cid: DagCid, height: Height) -> Result<Node<'_>, MstError> {
    match decode_fast(bytes, cid, height) {
        Some(result) => result,
        None => decode_strict(bytes, cid, height),
    }
}

/// A link as canonical nodes encode it: tag 42, `bytes(37)`, `0x00`, a 36-byte CIDv1.
const LINK_HEAD: [u8; 5] = [0xd8, 0x2a, 0x58, 0x25, 0x00];

/// The fast path: nodes as every implementation writes them (short heads, 36-byte CIDs).
/// Returns `None` at the first deviation from that shape, and the strict decoder then
/// decides; so this path accepts nothing the strict one would reject.
fn decode_fast(bytes: &[u8], cid: DagCid, height: Height) -> Option<Result<Node<'_>, MstError>> {
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let out = bytes.get(*at..*at + n)?;
        *at += n;
        Some(out)
    };
    let expect = |at: &mut usize, want: &[u8]| -> Option<()> {
        (take(at, want.len())? == want).then_some(())
    };
    // A short head of major type `major`: argument below 256, in shortest form.
    let head = |at: &mut usize, major: u8| -> Option<usize> {
        let b = *bytes.get(*at)?;
        *at += 1;
        match b ^ (major << 5) {
            n @ 0..=23 => Some(usize::from(n)),
            24 => {
                let n = *bytes.get(*at)?;
                *at += 1;
                (n >= 24).then_some(usize::from(n))
            }
            _ => None,
        }
    };
    let link = |at: &mut usize| -> Option<CidRef<'_>> {
        expect(at, &LINK_HEAD)?;
        CidRef::from_bytes(take(at, 36)?).ok()
    };

    expect(&mut at, &[0xa2, 0x61, b'e'])?;
    let entries = head(&mut at, 4)?;
    if entries > MAX_NODE_ENTRIES {
        return None;
    }
    let mut builder = Builder::new(cid, entries, height);
    for _ in 0..entries {
        expect(&mut at, &[0xa4, 0x61, b'k'])?;
        let len = head(&mut at, 2)?;
        let suffix = take(&mut at, len)?;
        expect(&mut at, &[0x61, b'p'])?;
        let prefix = head(&mut at, 0)? as u64;
        expect(&mut at, &[0x61, b't'])?;
        let right = if bytes.get(at) == Some(&NULL) {
            at += 1;
            None
        } else {
            Some(link(&mut at)?)
        };
        expect(&mut at, &[0x61, b'v'])?;
        let value = link(&mut at)?;
        if let Err(e) = builder.entry(RawEntry {
            suffix,
            prefix,
            right,
            value,
        }) {
            return Some(Err(e));
        }
    }
    expect(&mut at, &[0x61, b'l'])?;
    let left = if bytes.get(at) == Some(&NULL) {
        at += 1;
        None
    } else {
        Some(link(&mut at)?)
    };
    if at != bytes.len() {
        return None;
    }
    Some(builder.finish(left, height))
}

/// The strict path: any valid DAG-CBOR, checked field by field.
fn decode_strict(bytes: &[u8], cid: DagCid, height: Height) -> Result<Node<'_>, MstError> {
    let cbor = |source| MstError::Cbor { cid, source };
    let shape = |what| MstError::Shape { cid, what };
    let mut r = Reader::new(bytes);
    if r.map_len().map_err(cbor)? != 2 || r.text().map_err(cbor)? != "e" {
        return Err(shape(NODE_SHAPE));
    }
    let entries = r.array_len().map_err(cbor)?;
    if entries > MAX_NODE_ENTRIES {
        return Err(MstError::TooManyEntries { cid, entries });
    }
    let mut builder = Builder::new(cid, entries, height);
    for _ in 0..entries {
        if r.map_len().map_err(cbor)? != 4 || r.text().map_err(cbor)? != "k" {
            return Err(shape(ENTRY_SHAPE));
        }
        let suffix = r.bytes().map_err(cbor)?;
        if r.text().map_err(cbor)? != "p" {
            return Err(shape(ENTRY_SHAPE));
        }
        let prefix = r.uint().map_err(cbor)?;
        if r.text().map_err(cbor)? != "t" {
            return Err(shape(ENTRY_SHAPE));
        }
        let right = r.nullable_link().map_err(cbor)?;
        if r.text().map_err(cbor)? != "v" {
            return Err(shape(ENTRY_SHAPE));
        }
        let value = r.link().map_err(cbor)?;
        builder.entry(RawEntry {
            suffix,
            prefix,
            right,
            value,
        })?;
    }
    if r.text().map_err(cbor)? != "l" {
        return Err(shape(NODE_SHAPE));
    }
    let left = r.nullable_link().map_err(cbor)?;
    r.finish().map_err(cbor)?;
    builder.finish(left, height)
}

/// Appends a CBOR head (major type and argument) in shortest form.
fn write_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Appends a DAG-CBOR link: tag 42 over `bytes(0x00 ‖ cid)`.
fn write_link(out: &mut Vec<u8>, cid: &[u8]) {
    if let Ok(cid) = <&[u8; 36]>::try_from(cid) {
        // The usual 36-byte CID: one copy of the whole link.
        let mut link = [0u8; 41];
        link[..5].copy_from_slice(&LINK_HEAD);
        link[5..].copy_from_slice(cid);
        out.extend_from_slice(&link);
    } else {
        out.extend_from_slice(&[0xd8, 0x2a]);
        write_head(out, 2, cid.len() as u64 + 1);
        out.push(0);
        out.extend_from_slice(cid);
    }
}

const NULL: u8 = 0xf6;

/// The CID of a subtree whose node CIDs are already computed.
fn child_cid(child: &Child<'_>) -> DagCid {
    match child {
        Child::Stub(cid) => *cid,
        // `node_cid` computes children before parents, so this is always set.
        Child::Node(node) => node.cid.unwrap_or_else(empty_root),
    }
}

/// Writes a node's canonical DAG-CBOR encoding into `out` (cleared first). The CIDs of
/// loaded children must already be computed.
fn encode_node(node: &Node<'_>, out: &mut Vec<u8>) {
    out.clear();
    let (left, items) = match node.items.split_first() {
        Some((Item::Child(child), rest)) => (Some(child_cid(child)), rest),
        _ => (None, node.items.as_slice()),
    };
    let entries = items
        .iter()
        .filter(|item| matches!(item, Item::Leaf(_)))
        .count();
    // An entry with both links is about 100 bytes plus its key suffix.
    out.reserve(16 + entries * 128);
    // {"e": [...], "l": ...}: keys in DAG-CBOR order.
    out.extend_from_slice(&[0xa2, 0x61, b'e']);
    write_head(out, 4, entries as u64);
    let mut prev: &[u8] = &[];
    let mut rest = items.iter();
    let mut next = rest.next();
    while let Some(item) = next {
        next = rest.next();
        // Two subtrees in a row never occur; a subtree is consumed with its leaf below.
        let Item::Leaf(leaf) = item else {
            continue;
        };
        let key: &[u8] = &leaf.key;
        let prefix = common_prefix_len(prev, key);
        let suffix = &key[prefix..];
        // {"k", "p", "t", "v"}.
        out.extend_from_slice(&[0xa4, 0x61, b'k']);
        write_head(out, 2, suffix.len() as u64);
        out.extend_from_slice(suffix);
        out.extend_from_slice(&[0x61, b'p']);
        write_head(out, 0, prefix as u64);
        out.extend_from_slice(&[0x61, b't']);
        match next {
            Some(Item::Child(child)) => {
                write_link(out, &child_cid(child).0);
                next = rest.next();
            }
            _ => out.push(NULL),
        }
        out.extend_from_slice(&[0x61, b'v']);
        write_link(out, leaf.value.bytes());
        prev = key;
    }
    out.extend_from_slice(&[0x61, b'l']);
    match left {
        Some(cid) => write_link(out, &cid.0),
        None => out.push(NULL),
    }
}

/// Computes (and caches) the CIDs of a node and its changed descendants.
fn node_cid(node: &mut Node<'_>, buf: &mut Vec<u8>) -> DagCid {
    if let Some(cid) = node.cid {
        return cid;
    }
    for item in &mut node.items {
        if let Item::Child(Child::Node(child)) = item {
            node_cid(child, buf);
        }
    }
    encode_node(node, buf);
    let cid = DagCid::of_block(buf);
    node.cid = Some(cid);
    cid
}

/// Decodes an MST node on its own (keys must share one depth) and encodes it again.
///
/// For a canonical node the result equals the input; tests use this to check the encoder.
pub fn reencode_node(bytes: &[u8]) -> Result<Vec<u8>, MstError> {
    let cid = DagCid::of_block(bytes);
    let node = decode_node(bytes, cid, Height::Any)?;
    let mut out = Vec::with_capacity(bytes.len());
    encode_node(&node, &mut out);
    Ok(out)
}

/// An MST, possibly partial: loaded nodes are edited in memory, unloaded subtrees are kept
/// as CIDs and loaded from the block source when an edit reaches them.
///
/// After an error the tree's contents are unspecified: drop it.
#[derive(Debug)]
pub struct Tree<'a, B> {
    root: Child<'a>,
    /// Height of the root (0 for the empty tree).
    height: u8,
    loader: Loader<B>,
    /// Scratch space for encoding nodes.
    buf: Vec<u8>,
}

impl<'a, B: BlockSource<'a>> Tree<'a, B> {
    /// An empty tree (root `{e: [], l: null}`) that loads nothing.
    pub fn empty(blocks: B) -> Self {
        Tree {
            root: Child::Node(Box::new(Node::new(0, Vec::new()))),
            height: 0,
            loader: Loader::new(blocks),
            buf: Vec::new(),
        }
    }

    /// The tree rooted at `root`, whose node must be in `blocks`; other nodes are loaded
    /// when needed.
    pub fn load(blocks: B, root: DagCid) -> Result<Self, MstError> {
        let mut loader = Loader::new(blocks);
        let node = loader.load(root, Height::Root)?;
        Ok(Tree {
            height: node.height,
            root: Child::Node(Box::new(node)),
            loader,
            buf: Vec::new(),
        })
    }

    /// How many node blocks have been loaded from the block source.
    pub fn loaded_nodes(&self) -> usize {
        self.loader.seen.len()
    }

    fn root_node(&mut self) -> Result<&mut Node<'a>, MstError> {
        self.loader.ensure(&mut self.root, self.height)
    }

    /// The value stored under `key`.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<CidRef<'a>>, MstError> {
        let depth = key_depth(key);
        if depth > self.height {
            return Ok(None);
        }
        let Tree { root, loader, .. } = self;
        let mut node = loader.ensure(root, self.height)?;
        loop {
            match locate(&node.items, key) {
                Pos::Leaf(i) => {
                    return Ok(match &node.items[i] {
                        Item::Leaf(leaf) => Some(leaf.value),
                        Item::Child(_) => None,
                    });
                }
                Pos::Child(i) if node.height > depth => {
                    let below = node.height - 1;
                    let Item::Child(child) = &mut node.items[i] else {
                        return Err(MstError::Inconsistent("child position holds a leaf"));
                    };
                    node = loader.ensure(child, below)?;
                }
                _ => return Ok(None),
            }
        }
    }

    /// Sets `key` to `value` and returns the value it replaced.
    pub fn insert(
        &mut self,
        key: &[u8],
        value: CidRef<'a>,
    ) -> Result<Option<CidRef<'a>>, MstError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(MstError::BadKey(key.len()));
        }
        let depth = key_depth(key);
        let root = self.root_node()?;
        if root.items.is_empty() {
            *root = Node::new(
                depth,
                vec![Item::Leaf(Leaf {
                    key: key.into(),
                    value,
                })],
            );
            self.height = depth;
            return Ok(None);
        }
        // A key above the root: push layers on top; the insert then splits below.
        while self.height < depth {
            let old = std::mem::replace(&mut self.root, Child::Stub(empty_root()));
            self.height += 1;
            self.root = Child::Node(Box::new(Node::new(self.height, vec![Item::Child(old)])));
        }
        let Tree { root, loader, .. } = self;
        let node = loader.ensure(root, self.height)?;
        put(node, key, depth, value, loader)
    }

    /// Removes `key` and returns its value, if it was present.
    pub fn remove(&mut self, key: &[u8]) -> Result<Option<CidRef<'a>>, MstError> {
        let depth = key_depth(key);
        if depth > self.height {
            return Ok(None);
        }
        let Tree { root, loader, .. } = self;
        let node = loader.ensure(root, self.height)?;
        let old = delete(node, key, depth, loader)?;
        if old.is_some() {
            self.trim()?;
        }
        Ok(old)
    }

    /// Drops root levels that only point down. When the new root is a stub whose block is
    /// at hand, it is loaded and trimming goes on (a create that added a level above the
    /// old root leaves a new, present node with only a left link: undoing it must reach the
    /// old root). A stub whose block is missing stops the trimming: its keys are unknown,
    /// and the result is then compared with `prevData` as it is.
    fn trim(&mut self) -> Result<(), MstError> {
        loop {
            if let Child::Stub(cid) = self.root {
                if self.height == 0 {
                    return Ok(());
                }
                match self.loader.load(cid, Height::At(self.height)) {
                    Ok(node) => self.root = Child::Node(Box::new(node)),
                    Err(MstError::MissingBlock(_)) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            let Child::Node(node) = &mut self.root else {
                return Ok(());
            };
            if node.items.is_empty() {
                self.height = 0;
                node.height = 0;
                return Ok(());
            }
            if node.items.len() != 1 || self.height == 0 {
                return Ok(());
            }
            match node.items.pop() {
                Some(Item::Child(child)) => {
                    self.root = child;
                    self.height -= 1;
                }
                Some(leaf) => {
                    node.items.push(leaf);
                    return Ok(());
                }
                None => return Ok(()),
            }
        }
    }

    /// The root CID, encoding every changed node.
    pub fn root_cid(&mut self) -> DagCid {
        match &mut self.root {
            Child::Stub(cid) => *cid,
            Child::Node(node) => node_cid(node, &mut self.buf),
        }
    }

    /// Every loaded node's CID and encoding, root first (for building proofs and tests).
    pub fn node_blocks(&mut self) -> Vec<(DagCid, Vec<u8>)> {
        self.root_cid();
        let mut out = Vec::new();
        if let Child::Node(node) = &self.root {
            collect_blocks(node, &mut out);
        }
        out
    }

    /// Checks that the keys of all loaded nodes, read in tree order, strictly increase
    /// (each node checks its own keys on load; this covers keys across nodes). Call it
    /// after [`Tree::root_cid`] so an error can name the node.
    pub fn check_loaded_order(&self) -> Result<(), MstError> {
        let mut prev: Option<&[u8]> = None;
        if let Child::Node(node) = &self.root {
            check_order(node, &mut prev)?;
        }
        Ok(())
    }
}

fn collect_blocks(node: &Node<'_>, out: &mut Vec<(DagCid, Vec<u8>)>) {
    let mut buf = Vec::new();
    encode_node(node, &mut buf);
    out.push((node.cid.unwrap_or_else(|| DagCid::of_block(&buf)), buf));
    for item in &node.items {
        if let Item::Child(Child::Node(child)) = item {
            collect_blocks(child, out);
        }
    }
}

fn check_order<'n>(node: &'n Node<'_>, prev: &mut Option<&'n [u8]>) -> Result<(), MstError> {
    for item in &node.items {
        match item {
            Item::Leaf(leaf) => {
                if prev.is_some_and(|p| p >= &*leaf.key) {
                    return Err(MstError::KeyOrder {
                        cid: node.cid.unwrap_or_else(empty_root),
                        what: "keys out of order across nodes",
                    });
                }
                *prev = Some(&leaf.key);
            }
            Item::Child(Child::Node(child)) => check_order(child, prev)?,
            Item::Child(Child::Stub(_)) => {}
        }
    }
    Ok(())
}

/// One level below `height`, for a node that has children.
fn below(height: u8) -> Result<u8, MstError> {
    height
        .checked_sub(1)
        .ok_or(MstError::Inconsistent("subtree below height 0"))
}

/// Inserts or replaces `key` (of `depth` ≤ the node's height) under `node`.
fn put<'a, B: BlockSource<'a>>(
    node: &mut Node<'a>,
    key: &[u8],
    depth: u8,
    value: CidRef<'a>,
    loader: &mut Loader<B>,
) -> Result<Option<CidRef<'a>>, MstError> {
    let pos = locate(&node.items, key);
    if node.height == depth {
        match pos {
            Pos::Leaf(i) => {
                let Item::Leaf(leaf) = &mut node.items[i] else {
                    return Err(MstError::Inconsistent("leaf position holds a child"));
                };
                let old = std::mem::replace(&mut leaf.value, value);
                if old != value {
                    node.cid = None;
                }
                return Ok(Some(old));
            }
            Pos::Gap(i) => {
                node.items.insert(
                    i,
                    Item::Leaf(Leaf {
                        key: key.into(),
                        value,
                    }),
                );
            }
            Pos::Child(i) => {
                // The new key splits the subtree that spans it.
                let Item::Child(child) = node.items.remove(i) else {
                    return Err(MstError::Inconsistent("child position holds a leaf"));
                };
                let sub = loader.take(child, below(node.height)?)?;
                let (left, right) = split(sub, key, loader)?;
                let mut new = Vec::with_capacity(3);
                new.extend(left.map(child_item));
                new.push(Item::Leaf(Leaf {
                    key: key.into(),
                    value,
                }));
                new.extend(right.map(child_item));
                node.items.splice(i..i, new);
            }
        }
        node.cid = None;
        return Ok(None);
    }
    let child_height = below(node.height)?;
    match pos {
        Pos::Child(i) => {
            let Item::Child(child) = &mut node.items[i] else {
                return Err(MstError::Inconsistent("child position holds a leaf"));
            };
            let child = loader.ensure(child, child_height)?;
            let old = put(child, key, depth, value, loader)?;
            if old != Some(value) {
                node.cid = None;
            }
            Ok(old)
        }
        Pos::Gap(i) => {
            // A new subtree (with empty intermediate levels down to the key's depth).
            let mut child = Node::new(child_height, Vec::new());
            put(&mut child, key, depth, value, loader)?;
            node.items.insert(i, child_item(child));
            node.cid = None;
            Ok(None)
        }
        Pos::Leaf(_) => Err(MstError::Inconsistent("key found at the wrong height")),
    }
}

/// The parts of a subtree left and right of a key; empty parts do not exist.
type Halves<'a> = (Option<Node<'a>>, Option<Node<'a>>);

/// Splits a subtree around `key` (absent, and deeper in the tree than this node's keys).
fn split<'a, B: BlockSource<'a>>(
    mut node: Node<'a>,
    key: &[u8],
    loader: &mut Loader<B>,
) -> Result<Halves<'a>, MstError> {
    let height = node.height;
    match locate(&node.items, key) {
        Pos::Leaf(_) => Err(MstError::Inconsistent(
            "split key found at the wrong height",
        )),
        // The whole node is on one side: it is unchanged and keeps its CID.
        Pos::Gap(0) => Ok((None, Some(node))),
        Pos::Gap(i) if i == node.items.len() => Ok((Some(node), None)),
        Pos::Gap(i) => {
            let right = node.items.split_off(i);
            Ok((
                Node::non_empty(height, node.items),
                Node::non_empty(height, right),
            ))
        }
        Pos::Child(i) => {
            let rest = node.items.split_off(i + 1);
            let Some(Item::Child(child)) = node.items.pop() else {
                return Err(MstError::Inconsistent("child position holds a leaf"));
            };
            let sub = loader.take(child, below(height)?)?;
            let (lower_left, lower_right) = split(sub, key, loader)?;
            let mut left = node.items;
            left.extend(lower_left.map(child_item));
            let mut right = Vec::with_capacity(rest.len() + 1);
            right.extend(lower_right.map(child_item));
            right.extend(rest);
            Ok((
                Node::non_empty(height, left),
                Node::non_empty(height, right),
            ))
        }
    }
}

/// Removes `key` (of `depth` ≤ the node's height) from under `node`.
fn delete<'a, B: BlockSource<'a>>(
    node: &mut Node<'a>,
    key: &[u8],
    depth: u8,
    loader: &mut Loader<B>,
) -> Result<Option<CidRef<'a>>, MstError> {
    match locate(&node.items, key) {
        Pos::Leaf(i) => {
            let Item::Leaf(leaf) = &node.items[i] else {
                return Err(MstError::Inconsistent("leaf position holds a child"));
            };
            let old = leaf.value;
            let child_before = i > 0 && matches!(node.items[i - 1], Item::Child(_));
            let child_after = matches!(node.items.get(i + 1), Some(Item::Child(_)));
            if child_before && child_after {
                // The subtrees on both sides of the key become one.
                let mut three: Vec<Item<'a>> = node.items.drain(i - 1..=i + 1).collect();
                let (Some(Item::Child(right)), Some(_), Some(Item::Child(left))) =
                    (three.pop(), three.pop(), three.pop())
                else {
                    return Err(MstError::Inconsistent("merge neighbours are not subtrees"));
                };
                let merged = merge(left, right, below(node.height)?, loader)?;
                node.items.insert(i - 1, child_item(merged));
            } else {
                node.items.remove(i);
            }
            node.cid = None;
            Ok(Some(old))
        }
        Pos::Child(i) if node.height > depth => {
            let child_height = below(node.height)?;
            let Item::Child(child) = &mut node.items[i] else {
                return Err(MstError::Inconsistent("child position holds a leaf"));
            };
            let child = loader.ensure(child, child_height)?;
            let old = delete(child, key, depth, loader)?;
            if old.is_some() {
                if child.items.is_empty() {
                    node.items.remove(i);
                }
                node.cid = None;
            }
            Ok(old)
        }
        _ => Ok(None),
    }
}

/// Joins two adjacent subtrees at `height`, merging their facing edges all the way down.
fn merge<'a, B: BlockSource<'a>>(
    left: Child<'a>,
    right: Child<'a>,
    height: u8,
    loader: &mut Loader<B>,
) -> Result<Node<'a>, MstError> {
    let mut left = loader.take(left, height)?;
    let right = loader.take(right, height)?;
    let mut right_items = right.items.into_iter().peekable();
    if matches!(left.items.last(), Some(Item::Child(_)))
        && matches!(right_items.peek(), Some(Item::Child(_)))
    {
        let (Some(Item::Child(lower_left)), Some(Item::Child(lower_right))) =
            (left.items.pop(), right_items.next())
        else {
            return Err(MstError::Inconsistent("merge edges are not subtrees"));
        };
        let lower = merge(lower_left, lower_right, below(height)?, loader)?;
        left.items.push(child_item(lower));
    }
    left.items.extend(right_items);
    left.cid = None;
    Ok(left)
}

/// What a commit operation did to one path, with the CIDs inversion checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// A record was created with this CID.
    Create {
        /// The new record.
        cid: CidRef<'a>,
    },
    /// A record was replaced.
    Update {
        /// The new record.
        cid: CidRef<'a>,
        /// The record it replaced.
        prev: CidRef<'a>,
    },
    /// A record was deleted.
    Delete {
        /// The record that was deleted.
        prev: CidRef<'a>,
    },
}

/// One operation of a commit, as inversion needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op<'a> {
    /// The MST key, `collection/rkey`.
    pub path: &'a str,
    /// What happened there.
    pub change: Change<'a>,
}

/// Undoes `ops` on the (partial) tree rooted at `root` and returns the root reached.
///
/// Each operation is checked as it is undone: a create's key must hold its `cid` (and is
/// removed); an update's key must hold its `cid` (and gets `prev` back); a deleted key must
/// be absent (and gets `prev` back). Duplicate paths are rejected. Deletes are undone first,
/// then the rest by path, as the reference implementation does (the result does not depend
/// on the order, but the blocks an order needs might). For a valid commit the returned root
/// equals its `prevData`; the caller compares.
pub fn invert_ops<'a, B: BlockSource<'a>>(
    blocks: B,
    root: DagCid,
    ops: &[Op<'a>],
) -> Result<DagCid, MstError> {
    let mut order: Vec<&Op<'a>> = ops.iter().collect();
    order.sort_unstable_by_key(|op| op.path);
    if let Some(pair) = order.windows(2).find(|pair| pair[0].path == pair[1].path) {
        return Err(MstError::DuplicatePath(pair[0].path.to_owned()));
    }
    order.sort_by_key(|op| !matches!(op.change, Change::Delete { .. }));

    let mut tree = Tree::load(blocks, root)?;
    for op in order {
        let path = op.path;
        match op.change {
            Change::Create { cid } => match tree.remove(path.as_bytes())? {
                Some(value) if value == cid => {}
                Some(_) => return Err(MstError::ValueMismatch(path.to_owned())),
                None => return Err(MstError::KeyNotFound(path.to_owned())),
            },
            Change::Update { cid, prev } => match tree.insert(path.as_bytes(), prev)? {
                Some(value) if value == cid => {}
                Some(_) => return Err(MstError::ValueMismatch(path.to_owned())),
                None => return Err(MstError::KeyNotFound(path.to_owned())),
            },
            Change::Delete { prev } => {
                if tree.insert(path.as_bytes(), prev)?.is_some() {
                    return Err(MstError::KeyPresent(path.to_owned()));
                }
            }
        }
    }
    let root = tree.root_cid();
    tree.check_loaded_order()?;
    Ok(root)
}

/// Walks a complete tree in key order and returns every `(key, record CID)`.
///
/// Every node must be present; each is checked as in [`Tree`], keys must increase across the
/// whole walk, and keys must be UTF-8 (repository paths).
pub fn walk<'a, B: BlockSource<'a>>(
    blocks: B,
    root: DagCid,
) -> Result<Vec<(String, CidRef<'a>)>, MstError> {
    let mut loader = Loader::new(blocks);
    let node = loader.load(root, Height::Root)?;
    let mut out = Vec::new();
    walk_node(node, &mut loader, &mut out)?;
    Ok(out)
}

fn walk_node<'a, B: BlockSource<'a>>(
    node: Node<'a>,
    loader: &mut Loader<B>,
    out: &mut Vec<(String, CidRef<'a>)>,
) -> Result<(), MstError> {
    let height = node.height;
    let cid = node.cid.unwrap_or_else(empty_root);
    for item in node.items {
        match item {
            Item::Leaf(leaf) => {
                if out
                    .last()
                    .is_some_and(|(prev, _)| prev.as_bytes() >= &*leaf.key)
                {
                    return Err(MstError::KeyOrder {
                        cid,
                        what: "keys out of order across nodes",
                    });
                }
                let key = String::from_utf8(leaf.key.to_vec()).map_err(|_| MstError::KeyNotUtf8)?;
                out.push((key, leaf.value));
            }
            Item::Child(child) => {
                let child = loader.take(child, below(height)?)?;
                walk_node(child, loader, out)?;
            }
        }
    }
    Ok(())
}
