//! The signed identity header (SPEC §7) and the JWKS that verifies it.

mod key;
mod signer;

pub use key::{Algorithm, IdentityKey, KeyError};
pub use signer::{IdentitySigner, PLAIN_HEADERS};
