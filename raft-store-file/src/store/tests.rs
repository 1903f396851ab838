//! Unit tests of the write path: callers writing the log themselves, the
//! writer thread, and how the two share the files.
