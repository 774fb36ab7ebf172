//! The kubelet stand-in (`phases/tests/common/kubelet.rs`, shared with
//! `hack/kubelet-standin.rs`) on real etcd, and what it shows: since etcd 3.5.19 `/readyz`
//! answers 503 while a member is a learner, so kubeadm's startup probe (on `/readyz`,
//! with `failureThreshold` from `timeouts.controlPlaneComponentHealthCheck`) fails for a
//! joining member until it is promoted. With kubeadm's budget the kubelet kills a learner
//! slower than that and its catch-up starts over; the manifest `join-learner` writes gives
//! the startup probe as long as `promote` waits.
//!
//! The probes run exactly as rendered, their durations scaled down ([`SCALE`]) so that a
//! 10 s period takes a fraction of a second.
//!
//! Addresses: test ids 130-132 (`phases/tests/common/mod.rs`).

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::cluster::TestCluster;
use common::kubelet::{KubeletEvent, PodSpec, ProbeKind};
use common::{ClientTls, EtcdVersion};
use phases::membership::promote::{self, PromoteOutcome};
use phases::membership::Event;

/// Every probe duration of the manifest times this: kubeadm's 10 s periods take 0.2 s.
const SCALE: f64 = 0.02;
const WAIT: Duration = Duration::from_secs(30);

fn started(restarts: u32) -> impl Fn(&KubeletEvent) -> bool {
    move |e| matches!(e, KubeletEvent::Started { restarts: r, .. } if *r == restarts)
}

fn count(events: &[KubeletEvent], wanted: impl Fn(&KubeletEvent) -> bool) -> usize {
    events.iter().filter(|e| wanted(e)).count()
}

/// Polls the member's health (our client, TLS) until it answers or `timeout` passes.
fn wait_healthy(c: &TestCluster, n: usize, timeout: Duration) {
    let node = c.node(n);
    let tls = ClientTls::healthcheck(&node.cert_dir);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match runtime.block_on(common::check_health(&node.client_url(), &tls)) {
            Ok(_) => return,
            Err(e) if std::time::Instant::now() >= deadline => {
                panic!("{} is not healthy after {timeout:?}: {e}", node.name)
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Replaces the manifest the way kubeadm-etcd does (temporary file, then rename).
fn rewrite_manifest(c: &TestCluster, n: usize, edit: impl Fn(&str) -> String) {
    let path = c.node(n).manifest_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let changed = edit(&text);
    assert_ne!(changed, text, "the edit changed nothing");
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, changed).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

// Starts the member when its manifest appears, restarts it when the manifest changes,
// and kills and restarts it when its liveness probe fails failureThreshold times.
#[test]
fn the_standin_runs_a_member_like_the_kubelet() {
    let c = TestCluster::new(EtcdVersion::V3_6_14, 130, 1);
    // Slower than SCALE: a first member needs a few seconds under load before /readyz.
    let k = c.run_kubelet(0, 0.05, Duration::from_millis(200));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(k.events(), [], "nothing runs before the manifest exists");

    c.write_first_member_manifest();
    k.wait_for(WAIT, started(0)).unwrap();
    k.wait_for(WAIT, |e| *e == KubeletEvent::StartupSucceeded)
        .unwrap_or_else(|e| panic!("{e:#?}\n{}", c.log_tail(0)));
    k.wait_for(WAIT, |e| *e == KubeletEvent::Ready(true))
        .unwrap();
    wait_healthy(&c, 0, WAIT);

    // A changed manifest: the old container is killed, the new command runs.
    rewrite_manifest(&c, 0, |t| {
        t.replace("--snapshot-count=10000", "--snapshot-count=9999")
    });
    let restarted = k.wait_for(WAIT, started(1)).unwrap();
    let KubeletEvent::Started { command, .. } = restarted else {
        unreachable!()
    };
    assert!(command.contains(&"--snapshot-count=9999".to_string()));
    let events = k.events();
    assert!(
        events.contains(&KubeletEvent::ManifestChanged),
        "{events:#?}"
    );
    k.wait_until(WAIT, |e| {
        count(e, |e| *e == KubeletEvent::StartupSucceeded) == 2
    })
    .unwrap();
    wait_healthy(&c, 0, WAIT);

    // A hung member (SIGSTOP): /livez times out until the kubelet gives up and restarts it.
    let pid = k.pid().unwrap();
    // kill(2) has no safe wrapper in std for signals other than SIGKILL.
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on the member this test's kubelet started and has not reaped.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
    assert_eq!(rc, 0);
    let killed = k
        .wait_for(Duration::from_secs(60), |e| {
            matches!(
                e,
                KubeletEvent::KilledByProbe {
                    probe: ProbeKind::Liveness,
                    ..
                }
            )
        })
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(
        killed,
        KubeletEvent::KilledByProbe {
            probe: ProbeKind::Liveness,
            failures: 8
        }
    );
    k.wait_for(WAIT, started(2)).unwrap();
    wait_healthy(&c, 0, WAIT);
}

/// The startup probe's budget in the manifest: initialDelaySeconds + failureThreshold x
/// periodSeconds, unscaled.
fn startup_budget(c: &TestCluster, n: usize) -> Duration {
    let spec =
        PodSpec::parse(&std::fs::read_to_string(c.node(n).manifest_path()).unwrap()).unwrap();
    let p = spec.startup.expect("a startup probe");
    p.initial_delay + p.period * p.failure_threshold
}

/// The learner's startup probe fails while it is a learner (503 from /readyz since
/// 3.5.19); the manifest join-learner wrote lets it live past kubeadm's 4-minute budget
/// (scaled: 5 s) until promote, after which the probe succeeds.
async fn a_learner_outlasts_its_startup_probe(version: EtcdVersion) {
    let c = TestCluster::new(version, 131, 2);
    c.bootstrap();
    let log = Mutex::new(Vec::<Event>::new());
    c.join(1, Duration::from_secs(30), &log).await.unwrap();
    let budget = startup_budget(&c, 1);
    let kubeadm_budget = Duration::from_secs(10 + 24 * 10);
    let refuses_learners = version >= EtcdVersion::V3_5_30;
    if refuses_learners {
        // As long as promote waits by default (10 minutes), plus the initial delay.
        assert!(budget >= Duration::from_secs(610), "{budget:?}");
    } else {
        assert_eq!(budget, kubeadm_budget);
    }

    let k = c.run_kubelet(1, SCALE, Duration::from_millis(200));
    k.wait_for(WAIT, started(0)).unwrap();
    // Past kubeadm's budget, unpromoted.
    std::thread::sleep(kubeadm_budget.mul_f64(SCALE) + Duration::from_secs(1));
    let events = k.events();
    assert_eq!(k.restarts(), 0, "{events:#?}");
    if refuses_learners {
        // Usually the startup probe; a learner that has not yet learned it is one can
        // answer 200 in its first moments, and then the readiness probe gets the 503.
        let refused = events.iter().any(|e| {
            matches!(e, KubeletEvent::ProbeFailed { error, .. }
                if error.contains("HTTP 503") && error.contains("non_learner failed"))
        });
        assert!(
            refused,
            "{version}: /readyz did not refuse the learner: {events:#?}"
        );
    }

    let client = c.client(0, 1);
    let promoted = promote::promote(
        &client,
        &c.promote_options(1, Duration::from_secs(30)),
        &mut |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("{version}: {e}\n{}", c.log_tail(1)));
    assert_eq!(promoted.outcome, PromoteOutcome::Promoted);
    // Promoted, the member is ready: the startup probe succeeds (and the readiness probe,
    // where the release has one), and the kubelet keeps it.
    let has_readiness =
        PodSpec::parse(&std::fs::read_to_string(c.node(1).manifest_path()).unwrap())
            .unwrap()
            .readiness
            .is_some();
    let runtime_wait = tokio::task::spawn_blocking(move || {
        k.wait_until(WAIT, |e| {
            e.contains(&KubeletEvent::StartupSucceeded)
                && (!has_readiness || e.contains(&KubeletEvent::Ready(true)))
        })
        .map(|()| k)
    });
    let k = runtime_wait
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{version}: {e:#?}"));
    assert_eq!(k.restarts(), 0, "{:#?}", k.events());
}

crate::etcd_matrix!(async a_learner_outlasts_its_startup_probe_until_promoted => a_learner_outlasts_its_startup_probe);

// The livelock itself, with kubeadm's budget: the kubelet kills the learner again and
// again while it waits to be promoted (each restart starts its catch-up over).
#[test]
fn with_kubeadms_startup_budget_the_kubelet_kills_a_learner() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let c = TestCluster::new(EtcdVersion::V3_5_30, 132, 2);
    c.bootstrap();
    let log = Mutex::new(Vec::<Event>::new());
    runtime
        .block_on(c.join(1, Duration::from_secs(30), &log))
        .unwrap();
    // What kubeadm renders: failureThreshold from controlPlaneComponentHealthCheck (4m).
    rewrite_manifest(&c, 1, |t| {
        let (head, tail) = t.split_once("startupProbe:").unwrap();
        let (probe, rest) = tail.split_once("failureThreshold: ").unwrap();
        let (_, rest) = rest.split_once('\n').unwrap();
        format!("{head}startupProbe:{probe}failureThreshold: 24\n{rest}")
    });
    assert_eq!(startup_budget(&c, 1), Duration::from_secs(250));
    let k = c.run_kubelet(1, SCALE, Duration::from_millis(200));
    k.wait_for(WAIT, |e| {
        matches!(
            e,
            KubeletEvent::KilledByProbe {
                probe: ProbeKind::Startup,
                failures: 24
            }
        )
    })
    .unwrap_or_else(|e| panic!("{e:#?}"));
    k.wait_for(WAIT, started(1)).unwrap();
}
