//! Read-only, confined TFTP for the iPXE binaries (being built: the "Boot services" issue).
