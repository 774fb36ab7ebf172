//! The logic behind `kubeadm-etcd`.
//!
//! One module per phase domain plus the pieces they share. Nothing here prints: every
//! operation returns what happened (events, reports) and the binary decides how to show
//! it, so the same code serves the CLI, tests and benchmarks.

#![forbid(unsafe_code)]

pub mod config;
pub mod fsutil;
pub mod manifest;
pub mod pki;
pub mod versions;
pub mod yaml;

pub mod etcd_upgrade;
pub mod kube;
pub mod maintenance;
pub mod membership;
pub mod snapshot;
pub mod upgrade;
