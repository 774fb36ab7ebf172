//! `kubeadm-etcd init`: the first member of a new cluster.

use crate::phase::Workflow;

pub fn workflow() -> Workflow {
    Workflow {
        name: "init",
        short: "Set up the first etcd member of a new cluster: certificates, then its static Pod manifest",
        long: "Runs the phases certs and etcd/local in order. Select what runs with --skip-phases (a parent selects its children; skipping wins).",
        phases: &["certs", "etcd/local"],
    }
}
