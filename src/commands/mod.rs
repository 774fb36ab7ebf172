//! One module per phase group: each turns flag values and the configuration into a call
//! of the library and prints the outcome the way kubeadm does.

pub mod certs;
pub mod etcd;
pub mod membership;
pub mod upgrade;
