//! Filesystem and volume signatures (blkid-compatible TYPE, UUID, LABEL).
