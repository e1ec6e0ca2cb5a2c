//! Standard Webhooks v1 signatures: parsing `whsec_…` secrets, signing a message and
//! verifying one.
//!
//! Owns the byte-exact signing rule of the Standard Webhooks spec (v1.0.0): the
//! `webhook-signature` header holds `v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`,
//! one entry per secret (several during a rotation), separated by single spaces; the key is the
//! base64-decoded part after `whsec_`. Receivers check the timestamp against a tolerance
//! (±5 minutes by convention) and compare signatures in constant time. This module is pure: it
//! must not do I/O, read the clock (callers pass `now`) or log anything; the key bytes are never
//! printed, not by `Debug` and not in error messages.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The prefix every secret carries in configuration.
pub const SECRET_PREFIX: &str = "whsec_";
/// Shortest key accepted, in bytes (the spec asks for 24–64 random bytes; we are lenient).
pub const MIN_KEY_BYTES: usize = 16;
/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 128;

/// Standard base64 that accepts input with or without `=` padding.
const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What went wrong while parsing a secret or verifying a message. No variant carries secret
/// material or a signature, so these are safe to log and to show an operator.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The configured secret is unusable; the text says why (never what it was).
    #[error("invalid webhook secret: {0}")]
    InvalidSecret(String),
    /// `webhook-timestamp` is not an integer number of Unix seconds, or is outside the
    /// tolerance around the receiver's clock (too old: a replay or a stuck queue; too new:
    /// a clock skew).
    #[error("webhook-timestamp is not an integer or is outside the allowed tolerance")]
    Timestamp,
    /// No `v1` signature in `webhook-signature` matches the message under any known secret.
    #[error("no webhook-signature entry matches the message")]
    Signature,
}

/// A webhook signing key: the decoded bytes of a `whsec_…` secret, held as an HMAC-SHA256
/// state already keyed with them (so signing never has to handle the raw key again).
#[derive(Clone)]
pub struct Secret {
    keyed: HmacSha256,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// Parses `whsec_<base64>` (standard alphabet, padding optional; surrounding whitespace
    /// is ignored, as secrets often come from files ending in a newline).
    pub fn parse(text: &str) -> Result<Secret, SigningError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SigningError::InvalidSecret("the secret is empty".into()));
        }
        let Some(encoded) = text.strip_prefix(SECRET_PREFIX) else {
            return Err(SigningError::InvalidSecret(format!(
                "the secret must start with `{SECRET_PREFIX}`"
            )));
        };
        if encoded.is_empty() {
            return Err(SigningError::InvalidSecret(format!(
                "nothing follows `{SECRET_PREFIX}`"
            )));
        }
        // The decoder's own error would quote the offending byte; say only what is wrong.
        let key = LENIENT_STANDARD.decode(encoded).map_err(|_| {
            SigningError::InvalidSecret(format!(
                "the part after `{SECRET_PREFIX}` is not valid standard base64"
            ))
        })?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(SigningError::InvalidSecret(format!(
                "the key is {} bytes long; it must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} \
                 (24 to 64 random bytes are recommended)",
                key.len()
            )));
        }
        let keyed = HmacSha256::new_from_slice(&key).map_err(|_| {
            SigningError::InvalidSecret("the key cannot be used with HMAC-SHA256".into())
        })?;
        Ok(Secret { keyed })
    }

    /// A MAC keyed with this secret, already fed `"{msg_id}.{timestamp}." + body`.
    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// Parses one or more secrets separated by whitespace and/or commas (several during a key
/// rotation: the new one and the one being retired). At least one is required. An error names
/// the position of the bad secret (1-based), never its text.
pub fn parse_secrets(text: &str) -> Result<Vec<Secret>, SigningError> {
    let parts: Vec<&str> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .collect();
    if parts.is_empty() {
        return Err(SigningError::InvalidSecret("no secret given".into()));
    }
    let many = parts.len() > 1;
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            Secret::parse(part).map_err(|e| match e {
                SigningError::InvalidSecret(why) if many => SigningError::InvalidSecret(format!(
                    "secret {} of {}: {why}",
                    i + 1,
                    parts.len()
                )),
                other => other,
            })
        })
        .collect()
}

/// The `webhook-signature` header value for a message: `v1,<base64>` for each secret, in the
/// order given, joined by single spaces. `timestamp` is the same integer sent as
/// `webhook-timestamp`, and `body` must be the exact bytes sent. An empty `secrets` slice gives
/// an empty string (configuration guarantees at least one secret).
pub fn sign(secrets: &[Secret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| {
            let tag = secret.mac(msg_id, timestamp, body).finalize().into_bytes();
            format!("v1,{}", STANDARD.encode(tag))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Verifies a received message as a Standard Webhooks receiver does.
///
/// `timestamp_header` must be an integer within `tolerance_secs` of `now` (both Unix seconds),
/// otherwise [`SigningError::Timestamp`]. Then at least one `v1,<base64>` entry of the
/// space-separated `signature_header` must equal the MAC under any of `secrets`, compared in
/// constant time; entries of other versions or with malformed base64 are skipped. Otherwise
/// [`SigningError::Signature`].
pub fn verify(
    secrets: &[Secret],
    msg_id: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SigningError> {
    let timestamp: i64 = timestamp_header
        .trim()
        .parse()
        .map_err(|_| SigningError::Timestamp)?;
    if timestamp.abs_diff(now) > tolerance_secs.unsigned_abs() {
        return Err(SigningError::Timestamp);
    }
    let expected: Vec<[u8; 32]> = secrets
        .iter()
        .map(|secret| {
            secret
                .mac(msg_id, timestamp, body)
                .finalize()
                .into_bytes()
                .into()
        })
        .collect();
    let mut matched = subtle::Choice::from(0u8);
    for entry in signature_header.split_ascii_whitespace() {
        let Some(("v1", encoded)) = entry.split_once(',') else {
            continue;
        };
        let Ok(candidate) = LENIENT_STANDARD.decode(encoded) else {
            continue;
        };
        if candidate.len() != 32 {
            continue;
        }
        for tag in &expected {
            matched |= tag.as_slice().ct_eq(&candidate);
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SigningError::Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const SPEC_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const SPEC_TS: i64 = 1649367553;
    const SPEC_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SPEC_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
    const OTHER_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn spec() -> Vec<Secret> {
        vec![Secret::parse(SPEC_SECRET).unwrap()]
    }

    fn check(
        secrets: &[Secret],
        id: &str,
        ts: &str,
        sig: &str,
        body: &[u8],
    ) -> Result<(), SigningError> {
        verify(secrets, id, ts, sig, body, SPEC_TS, 300)
    }

    #[test]
    fn spec_test_vector() {
        assert_eq!(sign(&spec(), SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
        check(&spec(), SPEC_ID, "1649367553", SPEC_SIG, SPEC_BODY).unwrap();
    }

    #[test]
    fn secret_without_padding_is_the_same_key() {
        // 24 bytes encode without padding; a 32-byte key needs one `=`.
        let padded = Secret::parse("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        let bare = Secret::parse("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").unwrap();
        let raw = Secret::parse(&format!(
            "whsec_{}",
            STANDARD.encode((0u8..32).collect::<Vec<_>>())
        ));
        let sig = |s: &Secret| sign(std::slice::from_ref(s), SPEC_ID, SPEC_TS, SPEC_BODY);
        assert_eq!(sig(&padded), sig(&bare));
        assert_eq!(sig(&padded), sig(&raw.unwrap()));
        let spaced = Secret::parse(&format!("  {SPEC_SECRET}\n")).unwrap();
        assert_eq!(sig(&spaced), SPEC_SIG);
    }

    #[test]
    fn bad_secrets_are_rejected_without_echoing_them() {
        let cases = [
            "",
            "   ",
            "whsec_",
            "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",       // no prefix
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7o!", // not base64
            "whsec_C2FVsBQIhrscChlQIMV-b5sSYspob7oD", // URL-safe alphabet
            "whsec_c2hvcnQ=",                         // 5 bytes
        ];
        for text in cases {
            let err = Secret::parse(text).unwrap_err();
            assert!(matches!(err, SigningError::InvalidSecret(_)), "{text:?}");
            let message = err.to_string();
            let encoded = text.trim().trim_start_matches("whsec_");
            if !encoded.is_empty() {
                assert!(!message.contains(encoded), "{message:?} leaks {text:?}");
            }
        }
        let too_long = format!("whsec_{}", STANDARD.encode([7u8; 129]));
        assert!(Secret::parse(&too_long).is_err());
        let longest = format!("whsec_{}", STANDARD.encode([7u8; 128]));
        assert!(Secret::parse(&longest).is_ok());
    }

    #[test]
    fn debug_redacts() {
        let secrets = parse_secrets(&format!("{SPEC_SECRET} {OTHER_SECRET}")).unwrap();
        let printed = format!("{secrets:?} {:#?}", secrets[0]);
        assert!(printed.contains("Secret(<redacted>)"));
        assert!(!printed.contains("C2FVsBQIhrsc"));
        assert!(!printed.contains("11")); // no byte values either
    }

    #[test]
    fn parse_secrets_splits_on_whitespace_and_commas() {
        assert_eq!(parse_secrets(SPEC_SECRET).unwrap().len(), 1);
        let text = format!(" {SPEC_SECRET},\n{OTHER_SECRET} ,");
        assert_eq!(parse_secrets(&text).unwrap().len(), 2);
        assert!(parse_secrets(" , \n").is_err());
        let err = parse_secrets(&format!("{SPEC_SECRET}, whsec_!!")).unwrap_err();
        assert!(err.to_string().contains("secret 2 of 2"), "{err}");
    }

    #[test]
    fn two_secrets_give_two_signatures_and_either_verifies() {
        let both = parse_secrets(&format!("{SPEC_SECRET} {OTHER_SECRET}")).unwrap();
        let header = sign(&both, SPEC_ID, SPEC_TS, SPEC_BODY);
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0], SPEC_SIG);
        assert!(entries[1].starts_with("v1,") && entries[1] != SPEC_SIG);

        let old_only = &both[..1];
        let new_only = &both[1..];
        // A receiver that knows only one of the secrets accepts the two-signature header.
        check(old_only, SPEC_ID, "1649367553", &header, SPEC_BODY).unwrap();
        check(new_only, SPEC_ID, "1649367553", &header, SPEC_BODY).unwrap();
        // A receiver that knows both accepts a header signed with just one.
        check(&both, SPEC_ID, "1649367553", SPEC_SIG, SPEC_BODY).unwrap();
        check(&both, SPEC_ID, "1649367553", entries[1], SPEC_BODY).unwrap();
        // The new secret alone does not verify the old signature.
        let err = check(new_only, SPEC_ID, "1649367553", SPEC_SIG, SPEC_BODY).unwrap_err();
        assert!(matches!(err, SigningError::Signature));
    }

    #[test]
    fn tampering_is_rejected() {
        let s = spec();
        let sig = |e: Result<(), SigningError>| assert!(matches!(e, Err(SigningError::Signature)));
        sig(check(
            &s,
            SPEC_ID,
            "1649367553",
            SPEC_SIG,
            br#"{"email":"test@example.com","username":"test_user" }"#,
        ));
        sig(check(&s, SPEC_ID, "1649367553", SPEC_SIG, b""));
        sig(check(
            &s,
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpK",
            "1649367553",
            SPEC_SIG,
            SPEC_BODY,
        ));
        // Same signature, timestamp moved within the tolerance: the MAC covers it.
        sig(check(&s, SPEC_ID, "1649367554", SPEC_SIG, SPEC_BODY));
        sig(check(&s, SPEC_ID, "1649367553", "", SPEC_BODY));
        sig(check(&s, SPEC_ID, "1649367553", "garbage", SPEC_BODY));
        sig(check(&s, SPEC_ID, "1649367553", "v1,", SPEC_BODY));
        sig(check(&s, SPEC_ID, "1649367553", "v1,%%%% v1,@@", SPEC_BODY));
        sig(check(
            &s,
            SPEC_ID,
            "1649367553",
            "v2,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            SPEC_BODY,
        ));
        sig(check(
            &s,
            SPEC_ID,
            "1649367553",
            "v1a,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            SPEC_BODY,
        ));
        // A prefix of the right MAC is not accepted.
        sig(check(
            &s,
            SPEC_ID,
            "1649367553",
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPe",
            SPEC_BODY,
        ));
        sig(verify(
            &[],
            SPEC_ID,
            "1649367553",
            SPEC_SIG,
            SPEC_BODY,
            SPEC_TS,
            300,
        ));
    }

    #[test]
    fn signature_header_parsing_is_tolerant() {
        let s = spec();
        // Unknown versions and junk around a good entry do not hide it; padding is optional.
        check(
            &s,
            SPEC_ID,
            "1649367553",
            &format!("v2,abc garbage {SPEC_SIG}"),
            SPEC_BODY,
        )
        .unwrap();
        check(
            &s,
            SPEC_ID,
            "1649367553",
            &format!("  {SPEC_SIG}  "),
            SPEC_BODY,
        )
        .unwrap();
        check(
            &s,
            SPEC_ID,
            "1649367553",
            SPEC_SIG.trim_end_matches('='),
            SPEC_BODY,
        )
        .unwrap();
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_rejected() {
        let s = spec();
        let at =
            |ts: i64, now: i64| verify(&s, SPEC_ID, &ts.to_string(), SPEC_SIG, SPEC_BODY, now, 300);
        at(SPEC_TS, SPEC_TS + 300).unwrap();
        at(SPEC_TS, SPEC_TS - 300).unwrap();
        assert!(matches!(
            at(SPEC_TS, SPEC_TS + 301),
            Err(SigningError::Timestamp)
        )); // stale
        assert!(matches!(
            at(SPEC_TS, SPEC_TS - 301),
            Err(SigningError::Timestamp)
        )); // future
        assert!(matches!(
            at(SPEC_TS, i64::MAX),
            Err(SigningError::Timestamp)
        ));
        assert!(matches!(
            at(SPEC_TS, i64::MIN),
            Err(SigningError::Timestamp)
        ));
        // The timestamp is checked before the signature: a stale message with a bad
        // signature reports the timestamp.
        let stale = verify(
            &s,
            SPEC_ID,
            "1649367553",
            "garbage",
            SPEC_BODY,
            SPEC_TS + 10_000,
            300,
        );
        assert!(matches!(stale, Err(SigningError::Timestamp)));
    }

    #[test]
    fn garbage_timestamps_are_rejected() {
        let s = spec();
        for ts in [
            "",
            "abc",
            "1649367553.0",
            "1.649367553e9",
            "0x62503d01",
            "99999999999999999999",
        ] {
            let res = check(&s, SPEC_ID, ts, SPEC_SIG, SPEC_BODY);
            assert!(matches!(res, Err(SigningError::Timestamp)), "{ts:?}");
        }
    }

    #[test]
    fn error_messages_are_clear() {
        assert!(SigningError::Timestamp
            .to_string()
            .contains("webhook-timestamp"));
        assert!(SigningError::Signature
            .to_string()
            .contains("webhook-signature"));
    }
}
