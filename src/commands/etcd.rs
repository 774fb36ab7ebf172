//! `phase etcd ...`

use crate::context::Context;

pub fn local(_ctx: &Context) -> anyhow::Result<()> {
    anyhow::bail!("phase etcd local is not available yet")
}
