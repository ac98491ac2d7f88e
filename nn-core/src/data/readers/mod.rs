//! Readers for the data files people have. Every reader checks sizes against the file
//! before allocating, so a truncated or hostile file is an error naming it, with
//! bounded memory.
