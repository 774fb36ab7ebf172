//! The leadership logic of `remove-member` and `move-leader` against the scripted etcd
//! (`membership::fake`, a paused clock): which member gets leadership, and what is
//! refused before etcd is asked.

use std::time::Duration;

use phases::maintenance::{leader, Event, MaintenanceError};
use phases::membership::fake::{self, Call, FakeCluster};
use phases::membership::remove::{self, RemoveOptions, RemoveOutcome};
use phases::membership::Selector;

fn remove_options(selector: Selector, force: bool) -> RemoveOptions {
    RemoveOptions {
        selector,
        force,
        dry_run: false,
        timeout: Duration::from_secs(10),
    }
}

#[tokio::test(start_paused = true)]
async fn removing_the_leader_hands_leadership_to_the_most_up_to_date_voter_first() {
    let fake = FakeCluster::new(3, "3.6.14");
    // node2 has applied more than node1: it inherits.
    fake.with(|s| {
        s.member_mut(fake::node_id(1)).applied_index -= 10;
    });
    let mut events = Vec::new();
    let removed = remove::remove_reporting(
        &fake,
        &remove_options(Selector::Id(fake::node_id(0)), false),
        &mut |e| events.push(e),
    )
    .await
    .unwrap();
    assert!(
        matches!(removed, RemoveOutcome::Removed { .. }),
        "{removed:?}"
    );
    assert_eq!(fake.with(|s| s.leader), Some(fake::node_id(2)));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::LeaderMoved { to, .. } if to.contains("node2"))),
        "{events:?}"
    );
    assert_eq!(
        fake.calls(),
        [Call::Remove {
            id: fake::node_id(0)
        }]
    );

    // A follower goes without any move.
    let mut events = Vec::new();
    remove::remove_reporting(
        &fake,
        &remove_options(Selector::Id(fake::node_id(1)), false),
        &mut |e| events.push(e),
    )
    .await
    .unwrap();
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(fake.with(|s| s.leader), Some(fake::node_id(2)));
}

#[tokio::test(start_paused = true)]
async fn leadership_goes_only_to_a_voter_that_serves() {
    let fake = FakeCluster::new(3, "3.5.30");
    fake.with(|s| s.kill(fake::node_id(2)));
    let err = leader::move_leader(
        &fake,
        &Selector::Name("node2".into()),
        Duration::from_secs(5),
        &mut |_| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, MaintenanceError::BadTarget { .. })
            && err
                .to_string()
                .starts_with("cannot move leadership to a2 (node2): it does not answer"),
        "{err}"
    );
    let err = leader::move_leader(
        &fake,
        &Selector::Name("node9".into()),
        Duration::from_secs(5),
        &mut |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no etcd member matches member name \"node9\""
    );
    assert_eq!(fake.with(|s| s.leader), Some(fake::node_id(0)));

    let moved = leader::move_leader(
        &fake,
        &Selector::Name("node1".into()),
        Duration::from_secs(5),
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!((moved.to, moved.already), (fake::node_id(1), false));
    assert_eq!(fake.with(|s| s.leader), Some(fake::node_id(1)));
}
