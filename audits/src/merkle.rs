//! RFC 6962 / RFC 9162 Merkle trees: hashes, tree heads, inclusion and consistency proofs.
//!
//! * Leaf hash: `SHA-256(0x00 || leaf bytes)`; interior node: `SHA-256(0x01 || left || right)`
//!   (RFC 9162 §2.1.1; the domain separation byte stops a leaf from posing as a node).
//! * `MTH` of `n > 1` leaves splits at `k`, the largest power of two *strictly* below `n`:
//!   `MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`; the empty tree hashes to
//!   `SHA-256("")` (RFC 9162 §2.1.1).
//! * Inclusion proofs are RFC 9162 §2.1.3.1 `PATH`, verified with the §2.1.3.2 algorithm;
//!   consistency proofs are §2.1.4.1 `PROOF`/`SUBPROOF`, verified with §2.1.4.2 (both
//!   unchanged from RFC 6962 §2.1.1–2.1.2, which only gave the generation side).
//!
//! The proof *generators* follow the RFC's recursive definitions over a slice of leaf hashes;
//! the *verifiers* are the RFC's iterative bit-walking algorithms, so each checks the other.
//! The tests additionally compare against a naive implementation written from the RFC over raw
//! leaf data, and against the published certificate-transparency test vectors.

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, a node hash or a tree head.
pub type Hash = [u8; 32];

/// The hash of a leaf's data: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The tree head `MTH` over `leaves` (already leaf-hashed).
pub fn root(leaves: &[Hash]) -> Hash {
    let mut tree = Frontier::default();
    for leaf in leaves {
        tree.push(*leaf);
    }
    tree.root()
}

/// Why a proof cannot be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange {
        /// The requested leaf.
        index: u64,
        /// The requested tree size.
        size: u64,
    },
    /// The tree size exceeds the number of leaves supplied.
    #[error("tree size {size} exceeds the {available} leaves supplied")]
    SizeOutOfRange {
        /// The requested tree size.
        size: u64,
        /// How many leaves were supplied.
        available: u64,
    },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("consistency proof from size {from} to the smaller size {to}")]
    Backwards {
        /// The older tree size.
        from: u64,
        /// The newer tree size.
        to: u64,
    },
}

/// The first `size` leaves, or why there are not that many.
fn prefix(leaves: &[Hash], size: u64) -> Result<&[Hash], ProofError> {
    let available = leaves.len() as u64;
    usize::try_from(size)
        .ok()
        .and_then(|n| leaves.get(..n))
        .ok_or(ProofError::SizeOutOfRange { size, available })
}

/// The largest power of two strictly below `n`; `n` must be at least 2.
fn split_point(n: usize) -> usize {
    // n >= 2, so n - 1 >= 1 and the shift is in range.
    1usize << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// Splits `d` at the largest power of two below its length (length at least 2).
fn split(d: &[Hash]) -> (&[Hash], &[Hash]) {
    d.split_at_checked(split_point(d.len())).unwrap_or((d, &[]))
}

/// The audit path for leaf `index` in the tree of the first `size` leaves
/// (RFC 9162 §2.1.3.1), ordered from the leaf upwards.
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    let d = prefix(leaves, size)?;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let m = usize::try_from(index).map_err(|_| ProofError::IndexOutOfRange { index, size })?;
    let mut proof = Vec::new();
    path(m, d, &mut proof);
    Ok(proof)
}

/// `PATH(m, D[n])`: appends the proof nodes, deepest first.
fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    if d.len() <= 1 {
        return;
    }
    let (left, right) = split(d);
    let k = left.len();
    if m < k {
        path(m, left, out);
        out.push(root(right));
    } else {
        path(m - k, right, out);
        out.push(root(left));
    }
}

/// Checks that `leaf` (a leaf hash) sits at `index` in the tree of `size` leaves whose head is
/// `root`, using the RFC 9162 §2.1.3.2 algorithm.
pub fn verify_inclusion(leaf: Hash, index: u64, size: u64, proof: &[Hash], root: Hash) -> bool {
    if index >= size {
        return false;
    }
    let mut f_n = index;
    let mut s_n = size - 1;
    let mut r = leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == root
}

/// The consistency proof between the tree of the first `from` leaves and the tree of the first
/// `to` leaves (RFC 9162 §2.1.4.1). Empty when `from` is 0 or equals `to`.
pub fn consistency_proof(leaves: &[Hash], from: u64, to: u64) -> Result<Vec<Hash>, ProofError> {
    let d = prefix(leaves, to)?;
    if from > to {
        return Err(ProofError::Backwards { from, to });
    }
    if from == 0 || from == to {
        return Ok(Vec::new());
    }
    // from <= to <= leaves.len(), so it fits in usize.
    let m = usize::try_from(from).map_err(|_| ProofError::Backwards { from, to })?;
    let mut proof = Vec::new();
    subproof(m, d, true, &mut proof);
    Ok(proof)
}

/// `SUBPROOF(m, D[n], b)`: appends the proof nodes, deepest first.
fn subproof(m: usize, d: &[Hash], whole: bool, out: &mut Vec<Hash>) {
    if m == d.len() {
        if !whole {
            out.push(root(d));
        }
        return;
    }
    // m < n here, so n >= 2.
    let (left, right) = split(d);
    let k = left.len();
    if m <= k {
        subproof(m, left, whole, out);
        out.push(root(right));
    } else {
        subproof(m - k, right, false, out);
        out.push(root(left));
    }
}

/// Checks that the tree of `to` leaves with head `root_to` extends the tree of `from` leaves
/// with head `root_from`, using the RFC 9162 §2.1.4.2 algorithm. Equal sizes need an empty
/// proof and equal heads; `from == 0` needs an empty proof and the empty-tree head.
pub fn verify_consistency(
    from: u64,
    to: u64,
    root_from: Hash,
    root_to: Hash,
    proof: &[Hash],
) -> bool {
    if from > to {
        return false;
    }
    if from == to {
        return proof.is_empty() && root_from == root_to;
    }
    if from == 0 {
        return proof.is_empty() && root_from == empty_root();
    }
    // Step 1: an empty path proves nothing between different sizes.
    if proof.is_empty() {
        return false;
    }
    // Step 2: a power-of-two first tree is its own left subtree; prepend its head.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(root_from);
    }
    path.extend_from_slice(proof);
    // Step 3.
    let mut f_n = from - 1;
    let mut s_n = to - 1;
    // Step 4.
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 5.
    let mut nodes = path.iter();
    let Some(first) = nodes.next() else {
        return false;
    };
    let mut f_r = *first;
    let mut s_r = *first;
    // Step 6.
    for c in nodes {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 7.
    f_r == root_from && s_r == root_to && s_n == 0
}

/// A compact Merkle tree: the heads of the perfect subtrees a tree of `size` leaves decomposes
/// into (one per set bit of `size`, largest first). Appending and taking the head cost
/// O(log n) time and memory, so neither `open` nor `verify` holds all leaf hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Frontier {
    size: u64,
    stack: Vec<Hash>,
}

impl Frontier {
    /// The number of leaves.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The heads of the perfect subtrees, largest (leftmost) first: one per set bit of `size`.
    pub(crate) fn heads(&self) -> &[Hash] {
        &self.stack
    }

    /// A tree of `size` leaves from its subtree heads; `None` unless there is exactly one head
    /// per set bit of `size`.
    pub(crate) fn from_heads(size: u64, heads: Vec<Hash>) -> Option<Frontier> {
        (heads.len() == size.count_ones() as usize).then_some(Frontier { size, stack: heads })
    }

    /// Appends a leaf hash.
    pub(crate) fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut s = self.size;
        // Each trailing one bit of the old size is a perfect subtree of the same height as `h`
        // on its left: merge them, as a binary counter carries.
        while s & 1 == 1 {
            if let Some(left) = self.stack.pop() {
                h = node_hash(&left, &h);
            }
            s >>= 1;
        }
        self.stack.push(h);
        self.size += 1;
    }

    /// The tree head: the perfect subtrees folded right to left, which is exactly RFC 6962's
    /// split at the largest power of two below `n`, applied recursively.
    pub(crate) fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(last) => it.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- An independent, naive implementation written straight from RFC 6962 §2.1 over the
    // raw leaf data (it hashes with its own code, recurses on data, recomputes every subtree).

    fn naive_sha(parts: &[&[u8]]) -> Hash {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().into()
    }

    fn naive_mth(d: &[Vec<u8>]) -> Hash {
        match d.len() {
            0 => naive_sha(&[]),
            1 => naive_sha(&[&[0u8], &d[0]]),
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                naive_sha(&[&[1u8], &naive_mth(&d[..k]), &naive_mth(&d[k..])])
            }
        }
    }

    fn naive_k(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn naive_path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
        if d.len() <= 1 {
            return vec![];
        }
        let k = naive_k(d.len());
        if m < k {
            let mut p = naive_path(m, &d[..k]);
            p.push(naive_mth(&d[k..]));
            p
        } else {
            let mut p = naive_path(m - k, &d[k..]);
            p.push(naive_mth(&d[..k]));
            p
        }
    }

    fn naive_subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![naive_mth(d)] };
        }
        let k = naive_k(n);
        if m <= k {
            let mut p = naive_subproof(m, &d[..k], b);
            p.push(naive_mth(&d[k..]));
            p
        } else {
            let mut p = naive_subproof(m - k, &d[k..], false);
            p.push(naive_mth(&d[..k]));
            p
        }
    }

    /// Distinct, variable-length leaf data.
    fn data(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let len = (i * 7) % 13;
                (0..len)
                    .map(|j| (i * 31 + j * 17) as u8)
                    .chain([i as u8])
                    .collect()
            })
            .collect()
    }

    fn hashes(d: &[Vec<u8>]) -> Vec<Hash> {
        d.iter().map(|x| leaf_hash(x)).collect()
    }

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// The certificate-transparency reference leaves (RFC 6962 test data).
    fn ct_leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|s| hex::decode(s).unwrap())
        .collect()
    }

    const CT_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn ct_reference_roots_sizes_0_to_8() {
        let d = ct_leaves();
        let leaves = hashes(&d);
        let mut frontier = Frontier::default();
        assert_eq!(frontier.root(), h(CT_ROOTS[0]));
        for n in 0..=8 {
            assert_eq!(root(&leaves[..n]), h(CT_ROOTS[n]), "root of {n}");
            assert_eq!(naive_mth(&d[..n]), h(CT_ROOTS[n]), "naive root of {n}");
            if n > 0 {
                frontier.push(leaves[n - 1]);
                assert_eq!(frontier.root(), h(CT_ROOTS[n]), "frontier root of {n}");
            }
        }
        assert_eq!(empty_root(), h(CT_ROOTS[0]));
    }

    #[test]
    fn ct_reference_proof_vectors() {
        let leaves = hashes(&ct_leaves());
        // (index, size, path) — the certificate-transparency inclusion vectors.
        let inclusion: [(u64, u64, &[&str]); 4] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, want) in inclusion {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            let got = inclusion_proof(&leaves, index, size).unwrap();
            assert_eq!(got, want, "inclusion {index} in {size}");
            let r = h(CT_ROOTS[size as usize]);
            assert!(verify_inclusion(
                leaves[index as usize],
                index,
                size,
                &got,
                r
            ));
        }
        // (from, to, path) — the certificate-transparency consistency vectors.
        let consistency: [(u64, u64, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (from, to, want) in consistency {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            let got = consistency_proof(&leaves, from, to).unwrap();
            assert_eq!(got, want, "consistency {from} -> {to}");
            let (a, b) = (h(CT_ROOTS[from as usize]), h(CT_ROOTS[to as usize]));
            assert!(verify_consistency(from, to, a, b, &got));
        }
    }

    #[test]
    fn roots_match_naive_for_sizes_0_to_64() {
        let d = data(64);
        let leaves = hashes(&d);
        let mut frontier = Frontier::default();
        assert_eq!(root(&[]), naive_mth(&[]));
        for n in 1..=64 {
            frontier.push(leaves[n - 1]);
            let want = naive_mth(&d[..n]);
            assert_eq!(root(&leaves[..n]), want, "root of {n}");
            assert_eq!(frontier.root(), want, "frontier root of {n}");
            assert_eq!(frontier.size(), n as u64);
        }
    }

    /// Every size 1..=64 and every index: the proof equals the naive `PATH`, verifies, and fails
    /// with a wrong leaf, every wrong index, a wrong root, and a shortened or lengthened path.
    #[test]
    fn inclusion_all_sizes_1_to_64_all_indices() {
        let d = data(64);
        let leaves = hashes(&d);
        let mut checked = 0u32;
        for n in 1..=64usize {
            let r = naive_mth(&d[..n]);
            for m in 0..n {
                let proof = inclusion_proof(&leaves, m as u64, n as u64).unwrap();
                assert_eq!(proof, naive_path(m, &d[..n]), "path {m} in {n}");
                assert!(verify_inclusion(leaves[m], m as u64, n as u64, &proof, r));
                // Wrong leaf.
                let mut bad = leaves[m];
                bad[0] ^= 1;
                assert!(!verify_inclusion(bad, m as u64, n as u64, &proof, r));
                assert!(!verify_inclusion(
                    leaves[(m + 1) % 64],
                    m as u64,
                    n as u64,
                    &proof,
                    r
                ));
                // Every wrong index, with the right leaf and root.
                for j in 0..n {
                    if j != m {
                        assert!(
                            !verify_inclusion(leaves[m], j as u64, n as u64, &proof, r),
                            "leaf {m} proven at {j} in {n}"
                        );
                    }
                }
                assert!(!verify_inclusion(leaves[m], n as u64, n as u64, &proof, r));
                // Wrong root.
                let mut bad_root = r;
                bad_root[31] ^= 0x80;
                assert!(!verify_inclusion(
                    leaves[m], m as u64, n as u64, &proof, bad_root
                ));
                // Tampered, shortened and lengthened paths.
                if let Some(last) = proof.len().checked_sub(1) {
                    let mut p = proof.clone();
                    p[last][0] ^= 1;
                    assert!(!verify_inclusion(leaves[m], m as u64, n as u64, &p, r));
                    assert!(!verify_inclusion(
                        leaves[m],
                        m as u64,
                        n as u64,
                        &proof[..last],
                        r
                    ));
                }
                let mut longer = proof.clone();
                longer.push(r);
                assert!(!verify_inclusion(leaves[m], m as u64, n as u64, &longer, r));
                checked += 1;
            }
        }
        assert_eq!(checked, 64 * 65 / 2);
    }

    /// Every pair 1 <= m <= n <= 64: the proof equals the naive `SUBPROOF`, verifies, and fails
    /// with either head changed or any proof node changed.
    #[test]
    fn consistency_all_pairs_1_to_64() {
        let d = data(64);
        let leaves = hashes(&d);
        let roots: Vec<Hash> = (0..=64).map(|n| naive_mth(&d[..n])).collect();
        let mut checked = 0u32;
        for n in 1..=64usize {
            // From the empty tree: empty proof, empty head.
            assert!(consistency_proof(&leaves, 0, n as u64).unwrap().is_empty());
            assert!(verify_consistency(0, n as u64, roots[0], roots[n], &[]));
            assert!(!verify_consistency(0, n as u64, roots[1], roots[n], &[]));
            for m in 1..=n {
                let proof = consistency_proof(&leaves, m as u64, n as u64).unwrap();
                let want = if m == n {
                    vec![]
                } else {
                    naive_subproof(m, &d[..n], true)
                };
                assert_eq!(proof, want, "proof {m} -> {n}");
                let (a, b) = (m as u64, n as u64);
                assert!(
                    verify_consistency(a, b, roots[m], roots[n], &proof),
                    "{m} -> {n}"
                );
                let mut bad = roots[m];
                bad[0] ^= 1;
                assert!(!verify_consistency(a, b, bad, roots[n], &proof));
                let mut bad = roots[n];
                bad[0] ^= 1;
                assert!(!verify_consistency(a, b, roots[m], bad, &proof));
                for i in 0..proof.len() {
                    let mut p = proof.clone();
                    p[i][5] ^= 0x10;
                    assert!(
                        !verify_consistency(a, b, roots[m], roots[n], &p),
                        "node {i} of {m} -> {n}"
                    );
                }
                if m < n {
                    // Wrong sizes with the same heads and proof.
                    assert!(!verify_consistency(a, b, roots[m], roots[n], &[]));
                    if m > 1 {
                        assert!(!verify_consistency(a - 1, b, roots[m], roots[n], &proof));
                    }
                    assert!(!verify_consistency(b, a, roots[n], roots[m], &proof));
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 64 * 65 / 2);
    }

    #[test]
    fn proof_arguments_are_checked() {
        let leaves = hashes(&data(5));
        assert_eq!(
            inclusion_proof(&leaves, 5, 5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            inclusion_proof(&leaves, 0, 6),
            Err(ProofError::SizeOutOfRange {
                size: 6,
                available: 5
            })
        );
        assert_eq!(
            consistency_proof(&leaves, 4, 3),
            Err(ProofError::Backwards { from: 4, to: 3 })
        );
        assert_eq!(
            consistency_proof(&leaves, 1, 9),
            Err(ProofError::SizeOutOfRange {
                size: 9,
                available: 5
            })
        );
        assert!(!verify_inclusion(leaves[0], 0, 0, &[], empty_root()));
        assert!(!verify_consistency(
            3,
            2,
            root(&leaves[..3]),
            root(&leaves[..2]),
            &[]
        ));
    }
}
