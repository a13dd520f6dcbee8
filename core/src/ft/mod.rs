//! The HydraNet-FT replication layer (DESIGN.md section 4).

pub mod ackchan;
pub mod host;
pub mod msg;
pub mod params;
pub mod redirector;
