//! `phase upgrade ...`

use crate::context::Context;

pub fn migrate_feature_gates(_ctx: &Context) -> anyhow::Result<()> {
    anyhow::bail!("phase upgrade migrate-feature-gates is not available yet")
}
