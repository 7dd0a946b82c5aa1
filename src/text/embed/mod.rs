//! TODO (embedders)
