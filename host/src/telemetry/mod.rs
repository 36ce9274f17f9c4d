//! What Warden tells its operators besides the audit trail: [`metrics`]
//! (counted along the message's road, served by the admin listener),
//! [`health`] (readiness) and [`traces`] (OpenTelemetry spans, when on).
//! Leaves: they import nothing of the road.

pub mod health;
pub mod metrics;
pub mod traces;
