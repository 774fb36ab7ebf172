//! `kubeadm-etcd join`: another member, added as a learner and promoted once in sync.

use crate::phase::Workflow;

pub fn workflow() -> Workflow {
    Workflow {
        name: "join",
        short: "Add this node's etcd member to an existing cluster: certificates, then join as a learner and promote it",
        long: "Runs the phases certs, etcd/join-learner and etcd/promote in order: the member joins as a non-voting learner and becomes a voter only once it has caught up and answers. The etcd static Pod must start in between (the kubelet starts it from the manifest). Select what runs with --skip-phases.",
        phases: &["certs", "etcd/join-learner", "etcd/promote"],
    }
}
