//! The `cbcs` sample cipher (ISO/IEC 23001-7 §10.4): AES-128-CBC over each subsample's
//! protected bytes, by pattern (`crypt` blocks encrypted, then `skip` blocks clear, repeated:
//! 1:9 for video), the chain restarting from the constant IV at every subsample; a partial
//! last block stays clear. A pattern of 0:0 encrypts every whole block (audio).

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes128;
use weir_media::Subsample;

/// Blocks of 16 bytes.
const BLOCK: usize = 16;

/// `sample` encrypted in place with `key` and the constant `iv`: the protected bytes of each
/// of `subsamples` (the whole sample when there are none), by the pattern `crypt`:`skip`
/// (16-byte blocks). Bytes the map does not cover (a map shorter than the sample) are left
/// clear.
pub fn encrypt_sample(
    key: &[u8; 16],
    iv: &[u8; 16],
    sample: &mut [u8],
    subsamples: &[Subsample],
    (crypt, skip): (u8, u8),
) {
    let aes = Aes128::new(key.into());
    for_each_run(sample, subsamples, |run| {
        let mut chain = *iv;
        for block in pattern_blocks(run, crypt, skip) {
            block.iter_mut().zip(chain).for_each(|(b, c)| *b ^= c);
            aes.encrypt_block(GenericArray::from_mut_slice(block));
            chain.copy_from_slice(block);
        }
    });
}

/// `sample` decrypted in place: the inverse of [`encrypt_sample`] (what a player's CDM does).
pub fn decrypt_sample(
    key: &[u8; 16],
    iv: &[u8; 16],
    sample: &mut [u8],
    subsamples: &[Subsample],
    (crypt, skip): (u8, u8),
) {
    let aes = Aes128::new(key.into());
    for_each_run(sample, subsamples, |run| {
        let mut chain = *iv;
        for block in pattern_blocks(run, crypt, skip) {
            let mut next = [0u8; BLOCK];
            next.copy_from_slice(block);
            aes.decrypt_block(GenericArray::from_mut_slice(block));
            block.iter_mut().zip(chain).for_each(|(b, c)| *b ^= c);
            chain = next;
        }
    });
}

/// Calls `f` with each protected run of `sample`.
fn for_each_run(sample: &mut [u8], subsamples: &[Subsample], mut f: impl FnMut(&mut [u8])) {
    if subsamples.is_empty() {
        f(sample);
        return;
    }
    let mut at = 0usize;
    for s in subsamples {
        at = at.saturating_add(usize::from(s.clear));
        let end = at.saturating_add(s.protected as usize).min(sample.len());
        if at >= sample.len() {
            return;
        }
        f(&mut sample[at..end]);
        at = end;
    }
}

/// The 16-byte blocks of `run` the pattern encrypts, in order.
fn pattern_blocks(run: &mut [u8], crypt: u8, skip: u8) -> impl Iterator<Item = &mut [u8]> {
    let (crypt, skip) = if crypt == 0 {
        (1, 0)
    } else {
        (usize::from(crypt), usize::from(skip))
    };
    run.chunks_exact_mut(BLOCK)
        .enumerate()
        .filter(move |(i, _)| i % (crypt + skip) < crypt)
        .map(|(_, b)| b)
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
    }
}
