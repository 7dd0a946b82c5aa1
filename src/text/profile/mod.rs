//! TODO (profile writers)
