//! samlgate: an identity-aware reverse proxy that logs users in with Okta SAML 2.0,
//! maps them to existing panel accounts and forwards a signed identity header.

pub mod admin;
pub mod cli;
pub mod config;
pub mod demo;
pub mod identity;
pub mod lookup;
pub mod pages;
pub mod proxy;
pub mod replay;
pub mod return_to;
pub mod saml;
pub mod server;
pub mod session;
pub mod telemetry;
