//! Test helpers for cairn.
