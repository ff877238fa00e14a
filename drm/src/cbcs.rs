//! The `cbcs` sample cipher (ISO/IEC 23001-7 §10.4): AES-128-CBC over each subsample's
//! protected bytes, by pattern (`crypt` blocks encrypted, then `skip` blocks clear, repeated:
//! 1:9 for video), the chain restarting from the constant IV at every subsample; a partial
//! last block stays clear. A pattern of 0:0 encrypts every whole block (audio).

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit};
use aes::Aes128;
use weir_media::Subsample;

/// Blocks of 16 bytes.
const BLOCK: usize = 16;

type Encryptor = cbc::Encryptor<Aes128>;
type Decryptor = cbc::Decryptor<Aes128>;

/// `sample` encrypted in place with `key` and the constant `iv`: the protected bytes of each
/// of `subsamples` (the whole sample when there are none), by the pattern `crypt`:`skip`
/// (16-byte blocks). Bytes the map does not cover (a map shorter than the sample) are left
/// clear.
///
/// The blocks a pattern encrypts are gathered into one buffer and encrypted by one CBC call
/// (AES-NI inline for the whole run, not a dispatch per block), then scattered back.
pub fn encrypt_sample(
    key: &[u8; 16],
    iv: &[u8; 16],
    sample: &mut [u8],
    subsamples: &[Subsample],
    pattern: (u8, u8),
) {
    let aes = Aes128::new(key.into());
    let mut gathered = Vec::new();
    for_each_run(sample, subsamples, |run| {
        apply(run, pattern, &mut gathered, |buf| {
            let _ = Encryptor::inner_iv_init(aes.clone(), iv.into())
                .encrypt_padded_mut::<NoPadding>(buf, buf.len());
        });
    });
}

/// `sample` decrypted in place: the inverse of [`encrypt_sample`] (what a player's CDM does).
pub fn decrypt_sample(
    key: &[u8; 16],
    iv: &[u8; 16],
    sample: &mut [u8],
    subsamples: &[Subsample],
    pattern: (u8, u8),
) {
    let aes = Aes128::new(key.into());
    let mut gathered = Vec::new();
    for_each_run(sample, subsamples, |run| {
        apply(run, pattern, &mut gathered, |buf| {
            let _ = Decryptor::inner_iv_init(aes.clone(), iv.into())
                .decrypt_padded_mut::<NoPadding>(buf);
        });
    });
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
