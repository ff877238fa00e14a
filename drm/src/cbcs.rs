//! The `cbcs` sample cipher (ISO/IEC 23001-7 §10.4): AES-128-CBC over each subsample's
//! protected bytes, by pattern (`crypt` blocks encrypted, then `skip` blocks clear, repeated:
//! 1:9 for video), the chain restarting from the constant IV at every subsample; a partial
//! last block stays clear. A pattern of 0:0 encrypts every whole block (audio).

use std::ops::Range;

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncrypt, InnerIvInit, KeyInit};
use aes::{Aes128, Block};
use weir_media::{protected_runs, Subsample};

/// Blocks of 16 bytes.
const BLOCK: usize = 16;
/// Chains encrypted side by side: AES-NI pipelines 8 blocks, so 8 independent CBC chains
/// run at its throughput where one chain waits on each block's latency.
const LANES: usize = 8;

type Decryptor = cbc::Decryptor<Aes128>;

/// `sample` encrypted in place with `key` and the constant `iv`: the protected bytes of each
/// of `subsamples` (the whole sample when there are none), by the pattern `crypt`:`skip`
/// (16-byte blocks). Bytes the map does not cover (a map shorter than the sample) are left
/// clear.
pub fn encrypt_sample(
    key: &[u8; 16],
    iv: &[u8; 16],
    sample: &mut [u8],
    subsamples: &[Subsample],
    pattern: (u8, u8),
) {
    let mut runs = Vec::with_capacity(subsamples.len().max(1));
    protected_runs(sample.len(), subsamples, 0, &mut runs);
    encrypt_runs(key, iv, sample, &runs, pattern);
}

/// `data` encrypted in place with `key` and the constant `iv`: each of `runs` (byte ranges
/// of `data`, not overlapping; one per subsample's protected bytes, or per whole sample) is
/// one CBC chain from `iv`, over the whole blocks the pattern `crypt`:`skip` selects (0:0 or
/// n:0: every whole block); a partial last block stays clear, as do bytes no run covers
/// and the parts of runs past the end of `data`.
///
/// Up to [`LANES`] chains are encrypted together, one block of each per AES call, so a
/// fragment's many short chains (slices, audio frames) take AES's throughput, not its
/// latency times their length.
pub fn encrypt_runs(
    key: &[u8; 16],
    iv: &[u8; 16],
    data: &mut [u8],
    runs: &[Range<usize>],
    (crypt, skip): (u8, u8),
) {
    let aes = Aes128::new(key.into());
    // A chain's blocks: `group` consecutive blocks every `stride` blocks.
    let (group, stride) = if crypt == 0 || skip == 0 {
        (1, 1)
    } else {
        (usize::from(crypt), usize::from(crypt) + usize::from(skip))
    };
    let len = data.len();
    let skip_bytes = (stride - group) * BLOCK;
    let iv = u128::from_ne_bytes(*iv);
    let mut pending = runs.iter().filter_map(|r| {
        let end = r.start + (r.end.min(len).saturating_sub(r.start)) / BLOCK * BLOCK;
        (r.start < end).then_some(Chain {
            next: r.start,
            end,
            left_in_group: group,
            prev: iv,
        })
    });
    let mut lanes: [Option<Chain>; LANES] = Default::default();
    lanes.iter_mut().for_each(|lane| *lane = pending.next());
    let mut blocks = [Block::default(); LANES];
    let mut at = [0usize; LANES];
    let mut lane_of = [0usize; LANES];
    loop {
        let mut n = 0;
        for (i, lane) in lanes.iter_mut().enumerate() {
            // The lane's next block; its chain done, the next run's first.
            let next = loop {
                let Some(chain) = lane.as_mut() else {
                    break None;
                };
                if let Some(o) = chain.next(group, skip_bytes) {
                    break Some(o);
                }
                *lane = pending.next();
            };
            let (Some(o), Some(chain)) = (next, lane.as_ref()) else {
                continue;
            };
            let mut plain = [0u8; BLOCK];
            plain.copy_from_slice(&data[o..o + BLOCK]);
            blocks[n] = (u128::from_ne_bytes(plain) ^ chain.prev)
                .to_ne_bytes()
                .into();
            (at[n], lane_of[n]) = (o, i);
            n += 1;
        }
        if n == 0 {
            return;
        }
        aes.encrypt_blocks(&mut blocks[..n]);
        for k in 0..n {
            data[at[k]..at[k] + BLOCK].copy_from_slice(&blocks[k]);
            if let Some(chain) = lanes[lane_of[k]].as_mut() {
                chain.prev = u128::from_ne_bytes(blocks[k].into());
            }
        }
    }
}

/// One CBC chain of [`encrypt_runs`]: the offset of its next block, the end of its whole
/// blocks, the blocks left in the current crypt group, and the last ciphertext block (the
/// IV at first).
struct Chain {
    next: usize,
    end: usize,
    left_in_group: usize,
    prev: u128,
}

impl Chain {
    /// The offset of the chain's next block, if any: `group` blocks in a row, then
    /// `skip_bytes` left clear.
    fn next(&mut self, group: usize, skip_bytes: usize) -> Option<usize> {
        let at = self.next;
        if at >= self.end {
            return None;
        }
        self.left_in_group -= 1;
        self.next += BLOCK;
        if self.left_in_group == 0 {
            self.left_in_group = group;
            self.next += skip_bytes;
        }
        Some(at)
    }
}

/// `sample` decrypted in place: the inverse of [`encrypt_sample`] (what a player's CDM does),
/// one chain at a time, so that it checks the interleaved encryption independently.
pub fn decrypt_sample(
    key: &[u8; 16],
    iv: &[u8; 16],
    sample: &mut [u8],
    subsamples: &[Subsample],
    pattern: (u8, u8),
) {
    let aes = Aes128::new(key.into());
    let mut gathered = Vec::new();
    let mut runs = Vec::new();
    protected_runs(sample.len(), subsamples, 0, &mut runs);
    for run in runs {
        apply(&mut sample[run], pattern, &mut gathered, |buf| {
            let _ = Decryptor::inner_iv_init(aes.clone(), iv.into())
                .decrypt_padded_mut::<NoPadding>(buf);
        });
    }
}

/// Runs `cbc` (a CBC pass from the constant IV over whole blocks) on the blocks of `run` the
/// pattern selects: in place when they are contiguous (no skip), else gathered into
/// `scratch` and scattered back.
fn apply(run: &mut [u8], (crypt, skip): (u8, u8), scratch: &mut Vec<u8>, cbc: impl Fn(&mut [u8])) {
    let whole = run.len() / BLOCK * BLOCK;
    if crypt == 0 || skip == 0 {
        cbc(&mut run[..whole]);
        return;
    }
    let (crypt, stride) = (
        usize::from(crypt) * BLOCK,
        (usize::from(crypt) + usize::from(skip)) * BLOCK,
    );
    scratch.clear();
    for at in (0..whole).step_by(stride) {
        scratch.extend_from_slice(&run[at..(at + crypt).min(whole)]);
    }
    cbc(scratch);
    let mut from = 0;
    for at in (0..whole).step_by(stride) {
        let n = crypt.min(whole - at);
        run[at..at + n].copy_from_slice(&scratch[from..from + n]);
        from += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn subsamples() -> impl Strategy<Value = Vec<Subsample>> {
        proptest::collection::vec(
            (0u16..300, 0u32..900).prop_map(|(clear, protected)| Subsample { clear, protected }),
            0..6,
        )
    }

    #[test]
    fn the_pattern_leaves_nine_blocks_of_ten_and_partial_blocks_clear() {
        let key = [7u8; 16];
        let iv = [9u8; 16];
        // 5 clear bytes, then 20 blocks + 5 bytes protected, then 3 clear bytes.
        let plain: Vec<u8> = (0..5 + 325 + 3).map(|i| i as u8).collect();
        let map = [Subsample {
            clear: 5,
            protected: 325,
        }];
        let mut c = plain.clone();
        encrypt_sample(&key, &iv, &mut c, &map, (1, 9));
        let changed = |from: usize, to: usize| plain[from..to] != c[from..to];
        assert!(!changed(0, 5), "clear bytes");
        assert!(changed(5, 21), "block 0 is encrypted");
        assert!(!changed(21, 165), "blocks 1-9 are skipped");
        assert!(changed(165, 181), "block 10 is encrypted");
        assert!(
            !changed(181, 333),
            "the rest, the partial block and the clear tail"
        );
        // The second encrypted block chains on the first (CBC), not on the IV.
        let mut alone = plain[165..181].to_vec();
        encrypt_sample(&key, &iv, &mut alone, &[], (1, 9));
        assert_ne!(alone, c[165..181]);
    }

    #[test]
    fn every_subsample_restarts_from_the_constant_iv() {
        let key = [1u8; 16];
        let iv = [2u8; 16];
        let mut two = vec![0xabu8; 64];
        let map = [
            Subsample {
                clear: 0,
                protected: 32,
            },
            Subsample {
                clear: 0,
                protected: 32,
            },
        ];
        encrypt_sample(&key, &iv, &mut two, &map, (0, 0));
        assert_eq!(two[..32], two[32..], "same bytes, same IV, same ciphertext");
        assert_ne!(two[..16], two[16..32], "chained within a subsample");
    }

    proptest! {
        #[test]
        fn decrypting_gives_the_sample_back(
            key in any::<[u8; 16]>(),
            iv in any::<[u8; 16]>(),
            plain in proptest::collection::vec(any::<u8>(), 0..3000),
            map in subsamples(),
            pattern in prop_oneof![Just((1u8, 9u8)), Just((0, 0)), (1u8..4, 0u8..10)],
        ) {
            let mut c = plain.clone();
            encrypt_sample(&key, &iv, &mut c, &map, pattern);
            prop_assert_eq!(c.len(), plain.len());
            decrypt_sample(&key, &iv, &mut c, &map, pattern);
            prop_assert_eq!(c, plain);
        }

        #[test]
        fn a_fragments_chains_encrypted_together_decrypt_one_by_one(
            key in any::<[u8; 16]>(),
            iv in any::<[u8; 16]>(),
            samples in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..1500), subsamples()),
                0..30,
            ),
            pattern in prop_oneof![Just((1u8, 9u8)), Just((0, 0)), (1u8..4, 0u8..10)],
        ) {
            // A fragment's payload: the samples back to back, every protected run one chain
            // (more chains than lanes, of every length), encrypted by one call.
            let plain: Vec<u8> = samples.iter().flat_map(|(d, _)| d.iter().copied()).collect();
            let mut runs = Vec::new();
            let mut base = 0;
            for (d, map) in &samples {
                protected_runs(d.len(), map, base, &mut runs);
                base += d.len();
            }
            let mut c = plain.clone();
            encrypt_runs(&key, &iv, &mut c, &runs, pattern);
            // Each sample decrypts on its own, chain by chain.
            let mut at = 0;
            for (d, map) in &samples {
                let mut one = c[at..at + d.len()].to_vec();
                decrypt_sample(&key, &iv, &mut one, map, pattern);
                prop_assert_eq!(&one, d);
                at += d.len();
            }
        }
    }
}
