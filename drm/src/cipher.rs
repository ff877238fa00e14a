//! AES-128-CBC with PKCS#7 padding over one whole resource (RFC 8216 §4.3.2.4
//! `METHOD=AES-128`; RFC 5652 §6.3 padding), with the `aes` and `cbc` crates (AES-NI where the
//! CPU has it).

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};

type Encryptor = cbc::Encryptor<aes::Aes128>;
type Decryptor = cbc::Decryptor<aes::Aes128>;

/// Why a ciphertext did not decrypt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CipherError {
    /// Not a whole number of blocks, or the padding is wrong (another key or IV).
    #[error("ciphertext does not decrypt with this key and IV")]
    BadPadding,
}

/// `plain` encrypted with `key` and `iv`: `plain.len()` rounded up to the next multiple of 16
/// (a whole block of padding when it is one already).
pub fn encrypt(key: &[u8; 16], iv: &[u8; 16], plain: &[u8]) -> Vec<u8> {
    Encryptor::new(key.into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plain)
}

/// `cipher` decrypted with `key` and `iv` (what a player does).
///
/// # Errors
/// [`CipherError::BadPadding`] when it does not decrypt.
pub fn decrypt(key: &[u8; 16], iv: &[u8; 16], cipher: &[u8]) -> Result<Vec<u8>, CipherError> {
    Decryptor::new(key.into(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(cipher)
        .map_err(|_| CipherError::BadPadding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_the_nist_vector() {
        // NIST SP 800-38A F.2.1 CBC-AES128.Encrypt, first block (then one block of padding).
        let key = hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        let iv = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        let plain = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        let out = encrypt(
            key.as_slice().try_into().unwrap(),
            iv.as_slice().try_into().unwrap(),
            &plain,
        );
        assert_eq!(hex::encode(&out[..16]), "7649abac8119b246cee98e9b12e9197d");
        assert_eq!(out.len(), 32);
    }

    proptest! {
        #[test]
        fn round_trips_and_pads_to_blocks(
            key in any::<[u8; 16]>(),
            iv in any::<[u8; 16]>(),
            plain in proptest::collection::vec(any::<u8>(), 0..600),
            other in any::<[u8; 16]>(),
        ) {
            let c = encrypt(&key, &iv, &plain);
            prop_assert_eq!(c.len(), (plain.len() / 16 + 1) * 16);
            prop_assert_eq!(decrypt(&key, &iv, &c).unwrap(), plain.clone());
            if other != key && plain.len() >= 16 {
                // Another key gives other bytes (or bad padding), never the plain text.
                prop_assert_ne!(decrypt(&other, &iv, &c).ok(), Some(plain));
            }
        }
    }
}
