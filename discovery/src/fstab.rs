//! /etc/fstab parsing.
