//! etcd snapshots: save one from a live cluster, check a file, restore one into a new
//! one-member cluster for this node.
//!
//! - [`save`]: the Maintenance API's `Snapshot` stream from a healthy voter, written to a
//!   temporary file in the target directory, checked against the sha256 etcd appends to
//!   the stream, fsynced and renamed into place (mode 0600, directory 0700). Never held in
//!   memory whole; progress goes to a callback; `keep` prunes older snapshots.
//! - [`status`]: the digest check, then revision and key count.
//! - [`restore`]: the data directory and the first-member manifest.
//!
//! # Why `status` and `restore` run etcd's own tools
//!
//! The digest at the end of a snapshot is simple and is checked here, always, before any
//! other program sees the file: a damaged snapshot is refused with both digests named.
//! The revision and key count, though, live inside the bbolt database (the newest key of
//! the `key` bucket, and the keys alive at that revision after tombstones), and no Rust
//! crate reads bbolt files; a hand-written page walker would be a second implementation of
//! a storage format this tool does not own, wrong in exactly the cases (freelist formats,
//! overflow pages, 3.6 storage versions) where a backup matters. So `status` asks
//! `etcdutl snapshot status -w json` (etcd 3.4: `etcdctl`), which needs no running etcd.
//! A restore rewrites the database's membership and writes a WAL for the new member:
//! that is etcd's code by nature, and must be the release that will run the data, so
//! it is `etcdutl` of the same minor (3.6 removed `etcdctl snapshot restore`; 3.4 has
//! nothing else). The tools are found as [`tools::ToolLookup`] says and checked with their
//! `version` command; a missing or mismatched one is an error that says which is needed
//! and where it comes from.

mod error;
pub mod restore;
pub mod save;
pub mod status;
pub mod tools;
pub mod verify;

pub use error::SnapshotError;
pub use restore::{restore, RestoreOptions, Restored};
pub use save::{
    save, SaveEvent, SaveOptions, Saved, DEFAULT_SNAPSHOT_DIR, SNAPSHOT_DIR_MODE,
    SNAPSHOT_FILE_MODE,
};
pub use status::{status, SnapshotStatus};
pub use tools::{Tool, ToolKind, ToolLookup};
pub use verify::{verify_file, Verified};
