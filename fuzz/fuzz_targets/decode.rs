//! Feeds arbitrary bytes to `peek_group` and `decode` under both auth modes.
//!
//! Mutated bytes almost never carry a valid MAC, so each input is also tried with its
//! last 32 bytes replaced by the correct checksum / HMAC: that reaches the field checks
//! after the MAC. Whenever `decode` succeeds, re-encoding must give back the same bytes.

#![no_main]

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use vipd::wire::{decode_extended, encode_with_extensions, peek_group, Auth, AuthKey};

const KEY: &[u8] = b"vipd-fuzz-key-0123456789";

fn check(data: &[u8], auth: &Auth) {
    let peeked = peek_group(data);
    if let Err(e) = &peeked {
        let _ = e.to_string();
    }
    // Route like a shared socket would; fall back to group 1 for the error paths.
    let group = peeked.clone().unwrap_or(1);
    match decode_extended(data, group, auth, &[]) {
        Ok((advert, extensions)) => {
            assert_eq!(
                peeked,
                Ok(advert.body.group),
                "peek_group disagrees with decode"
            );
            let again = encode_with_extensions(&advert, &extensions, auth)
                .expect("a decoded advert re-encodes");
            assert_eq!(again, data, "re-encoding changed the bytes");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn reseal(data: &[u8], auth: &Auth) -> Option<Vec<u8>> {
    let split = data.len().checked_sub(32)?;
    let mut out = data.to_vec();
    let (signed, tag) = out.split_at_mut(split);
    let mac: [u8; 32] = match auth {
        Auth::None => Sha256::digest(&*signed).into(),
        Auth::HmacSha256(_) => {
            let mut m = Hmac::<Sha256>::new_from_slice(KEY).expect("HMAC takes any key length");
            m.update(signed);
            m.finalize().into_bytes().into()
        }
    };
    tag.copy_from_slice(&mac);
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let keyed = Auth::HmacSha256(AuthKey::new(KEY.to_vec()).expect("key is 24 bytes"));
    for auth in [Auth::None, keyed] {
        check(data, &auth);
        if let Some(sealed) = reseal(data, &auth) {
            check(&sealed, &auth);
        }
    }
});
