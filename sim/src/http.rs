//! HTTP over the simulated network (placeholder, being written).
