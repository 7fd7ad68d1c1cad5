//! Workloads a scenario runs on top of the membership cluster (task submissions
//! through the gateway, channel traffic, pubsub traffic, records, anchors) and the invariants
//! judged on what they observed.

pub mod adversary;
pub mod anchors;
pub mod channel;
pub mod channel_check;
pub mod leases;
pub mod leases_check;
pub mod leases_spec;
pub mod pubsub_check;
pub mod records;
pub mod shared_check;
pub mod tasks;
pub mod tasks_check;
pub mod tasks_history;
