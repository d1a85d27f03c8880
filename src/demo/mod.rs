//! `samlgate demo`: samlgate with a development IdP and a demo panel on loopback.

/// Starts the demo on `base_port` and the three ports after it.
pub fn run(base_port: u16) -> anyhow::Result<()> {
    // The development IdP and demo panel arrive with issue #4.
    anyhow::bail!("`samlgate demo` is not available yet (issue #4); base port {base_port} unused")
}
