//! Crash safety of the files the tool writes: keys and certificates
//! (`ensure_certificates`) and the etcd static Pod manifest with its backup
//! (`write_manifest`), each write interrupted at each step of `fsutil::write_atomic`.
//!
//! Two kinds of interruption, for every file in turn and every step:
//! - an I/O error (disk full, EIO): the write path's own clean-up runs;
//! - a crash, simulated by unwinding out of the write (a panic from the fault hook), so
//!   that no clean-up runs and the temporary file stays, as after a SIGKILL or a power
//!   cut. The real SIGKILL of the binary is in tests/crash_kill.rs at the repository root.
//!
//! After each: every file in place is the old one or the complete new one; the only
//! temporary file is the one a crash interrupted; a rerun converges (or, for a key whose
//! certificate was never written, stops with the documented message, and converges once
//! that message is followed). At every step of every write, stat'ed from inside the
//! fault hook: a key's temporary file is mode 0600 and the file it replaces still holds
//! the old content. The umask is 0 here, so no permission comes from it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;

use phases::fsutil::{set_fault_hook, WriteStep};
use phases::manifest::{backup_path, manifest_path, write_manifest, WriteOutcome};
use phases::pki::{describe_certificate, ensure_certificates, CertId, PkiConfig, PkiError};

const STEPS: [WriteStep; 3] = [
    WriteStep::Created,
    WriteStep::PartlyWritten,
    WriteStep::Synced,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The step fails with an I/O error.
    Error,
    /// The process "dies" at the step: no clean-up code runs.
    Crash,
}

/// The payload of a simulated crash, told apart from real panics.
struct SimulatedCrash;

#[derive(Debug, Clone)]
struct Observation {
    path: PathBuf,
    step: WriteStep,
    /// Mode of the temporary file at this step, `None` if it did not exist.
    temp_mode: Option<u32>,
    /// What the destination held at this step.
    destination: Option<Vec<u8>>,
    /// Mode of the directory the file is written in.
    dir_mode: u32,
}

#[derive(Default)]
struct Recorder {
    /// Inject `fault` at `step` of the write numbered `write` (0-based, in write order).
    plan: Option<(usize, WriteStep, Fault)>,
    writes_started: usize,
    observations: Vec<Observation>,
}

thread_local! {
    static RECORDER: RefCell<Recorder> = RefCell::new(Recorder::default());
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// The fault hook: records what is on disk at this step, then injects the planned fault.
/// It never asserts itself, as a panic here would be taken for a simulated crash.
fn hook(path: &Path, step: WriteStep) -> io::Result<()> {
    let temp_mode = std::fs::symlink_metadata(temp_path(path))
        .ok()
        .map(|m| m.permissions().mode() & 0o7777);
    let destination = std::fs::read(path).ok();
    let dir_mode = mode(path.parent().unwrap());
    let fault = RECORDER.with(|r| {
        let mut r = r.borrow_mut();
        if step == WriteStep::Created {
            r.writes_started += 1;
        }
        let write = r.writes_started - 1;
        r.observations.push(Observation {
            path: path.to_path_buf(),
            step,
            temp_mode,
            destination,
            dir_mode,
        });
        match r.plan {
            Some((w, s, fault)) if w == write && s == step => Some(fault),
            _ => None,
        }
    });
    match fault {
        None => Ok(()),
        Some(Fault::Error) => Err(io::Error::other("injected fault")),
        Some(Fault::Crash) => std::panic::panic_any(SimulatedCrash),
    }
}

// umask(2) has no safe wrapper in std.
#[allow(unsafe_code)]
fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: umask only changes the process's file creation mask.
        unsafe { libc::umask(0) };
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<SimulatedCrash>().is_none() {
                default(info);
            }
        }));
    });
}

/// Runs `f` with the fault hook installed and `plan` armed; returns what `f` returned,
/// or `None` if it "crashed", and the observations of every step.
fn with_fault<T>(
    plan: Option<(usize, WriteStep, Fault)>,
    f: impl FnOnce() -> T,
) -> (Option<T>, Vec<Observation>) {
    RECORDER.with(|r| {
        *r.borrow_mut() = Recorder {
            plan,
            ..Recorder::default()
        }
    });
    set_fault_hook(Some(hook));
    let result = catch_unwind(AssertUnwindSafe(f));
    set_fault_hook(None);
    let observations = RECORDER.with(|r| std::mem::take(&mut r.borrow_mut().observations));
    match result {
        Ok(v) => (Some(v), observations),
        Err(payload) if payload.downcast_ref::<SimulatedCrash>().is_some() => (None, observations),
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Every file under `dir` (temporary ones included) with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    out
}

fn is_temp(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    name.starts_with('.') && name.contains(".tmp-")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn pki_config(cert_dir: &Path) -> PkiConfig {
    // ECDSA: the point is the write path, and P-256 keys are made in microseconds.
    let cfg =
        phases::config::load_file(&repo().join("testdata/config/v1beta4-ecdsa-p256.yaml")).unwrap();
    PkiConfig::from_kubeadm(&cfg, cert_dir.to_path_buf())
}

/// The files `ensure_certificates` writes for a new directory, in write order: each
/// key, then its certificate, in kubeadm's order.
fn write_order(cert_dir: &Path) -> Vec<(PathBuf, u32)> {
    CertId::ALL
        .into_iter()
        .flat_map(|id| {
            [
                (id.key_path(cert_dir), 0o600),
                (id.cert_path(cert_dir), 0o644),
            ]
        })
        .collect()
}

/// A key or certificate file is complete: it parses.
fn assert_complete(path: &Path, bytes: &[u8]) {
    let text =
        std::str::from_utf8(bytes).unwrap_or_else(|_| panic!("{}: not text", path.display()));
    if path.extension().unwrap() == "key" {
        rcgen::KeyPair::from_pem(text)
            .unwrap_or_else(|e| panic!("{}: not a complete key: {e}", path.display()));
    } else {
        describe_certificate(bytes)
            .unwrap_or_else(|e| panic!("{}: not a complete certificate: {e}", path.display()));
    }
}

/// What every step of every write must show: a key's temporary file is 0600 from its
/// creation on, any other file's is its final mode, and the destination keeps what it
/// held before the write until the rename.
fn assert_observations(
    observations: &[Observation],
    modes: &BTreeMap<PathBuf, u32>,
    before: &BTreeMap<PathBuf, Vec<u8>>,
    context: &str,
) {
    for o in observations {
        if o.path.extension().is_some_and(|e| e == "key" || e == "crt") {
            // The tool made these directories; a user's existing ones are left alone.
            assert_eq!(
                o.dir_mode,
                phases::pki::DIR_MODE,
                "{context}: {} at {:?}: directory mode",
                o.path.display(),
                o.step
            );
        }
        let want = modes[&o.path];
        assert_eq!(
            o.temp_mode,
            Some(want),
            "{context}: {} at {:?}: temporary file mode",
            o.path.display(),
            o.step
        );
        if o.path.extension().is_some_and(|e| e == "key") {
            assert_eq!(
                o.temp_mode.unwrap() & 0o077,
                0,
                "{context}: a key readable by others"
            );
        }
        assert_eq!(
            o.destination.as_ref(),
            before.get(&o.path),
            "{context}: {} at {:?}: the destination changed before the rename",
            o.path.display(),
            o.step
        );
    }
}

#[test]
fn a_full_run_writes_every_key_with_mode_0600_from_its_creation_on() {
    setup();
    let tmp = tempfile::tempdir().unwrap();
    let cert_dir = tmp.path().join("pki");
    let cfg = pki_config(&cert_dir);
    let (result, observations) =
        with_fault(None, || ensure_certificates(&cfg, &CertId::ALL, false));
    result.unwrap().unwrap();
    let order = write_order(&cert_dir);
    let modes: BTreeMap<_, _> = order.iter().cloned().collect();
    assert_eq!(
        observations.len(),
        order.len() * STEPS.len(),
        "every step of every write seen"
    );
    for (i, (path, _)) in order.iter().enumerate() {
        let steps: Vec<_> = observations[i * 3..i * 3 + 3]
            .iter()
            .map(|o| (&o.path, o.step))
            .collect();
        assert_eq!(steps, STEPS.iter().map(|s| (path, *s)).collect::<Vec<_>>());
    }
    assert_observations(&observations, &modes, &BTreeMap::new(), "full run");
    for (path, want) in &modes {
        assert_eq!(mode(path), *want, "{}", path.display());
    }
    // kubeadm's certutil.WriteCert / keyutil.WriteKey: os.MkdirAll(dir, 0755).
    assert_eq!(mode(&cert_dir), 0o755);
    assert_eq!(mode(&cert_dir.join("etcd")), 0o755);
}

/// Interrupts write `write` of a new certificate directory at `step` with `fault`, then
/// checks the disk and that reruns converge. Returns the rerun's message when the
/// interruption left a key without its certificate.
fn interrupt_certificates(write: usize, step: WriteStep, fault: Fault) -> Option<String> {
    let tmp = tempfile::tempdir().unwrap();
    let cert_dir = tmp.path().join("pki");
    let cfg = pki_config(&cert_dir);
    let order = write_order(&cert_dir);
    let modes: BTreeMap<_, _> = order.iter().cloned().collect();
    let context = format!(
        "{fault:?} at {step:?} of write {write} ({})",
        order[write].0.display()
    );

    let (result, observations) = with_fault(Some((write, step, fault)), || {
        ensure_certificates(&cfg, &CertId::ALL, false)
    });
    match (fault, result) {
        (Fault::Error, Some(Err(PkiError::Write { path, source }))) => {
            assert_eq!(path, order[write].0, "{context}");
            assert_eq!(source.to_string(), "injected fault", "{context}");
        }
        (Fault::Crash, None) => {}
        (_, other) => panic!("{context}: unexpected outcome {other:?}"),
    }
    assert_observations(&observations, &modes, &BTreeMap::new(), &context);

    // On disk: the files written before, complete; for a crash, the interrupted file's
    // temporary, with its final mode; nothing else.
    let on_disk = files(&cert_dir);
    let (temps, in_place): (Vec<_>, Vec<_>) = on_disk.keys().partition(|p| is_temp(p));
    let mut expected: Vec<&PathBuf> = order[..write].iter().map(|(p, _)| p).collect();
    expected.sort();
    assert_eq!(in_place, expected, "{context}: files in place");
    for path in &in_place {
        assert_complete(path, &on_disk[*path]);
        assert_eq!(mode(path), modes[*path], "{context}: {}", path.display());
    }
    match fault {
        Fault::Error => assert!(
            temps.is_empty(),
            "{context}: temporary files left: {temps:?}"
        ),
        Fault::Crash => {
            assert_eq!(temps, vec![&temp_path(&order[write].0)], "{context}");
            assert_eq!(
                mode(temps[0]),
                modes[&order[write].0],
                "{context}: temporary's mode"
            );
        }
    }

    // A rerun (this process, so the same pid and temporary names) converges; when a key
    // lies there without its certificate, it stops with the documented instruction first.
    let mut message = None;
    let rerun = ensure_certificates(&cfg, &CertId::ALL, false);
    if write % 2 == 1 {
        let key = &order[write - 1].0;
        let err = rerun.expect_err(&context);
        assert!(
            matches!(err, PkiError::HalfPair { .. }),
            "{context}: {err:?}"
        );
        let text = err.to_string();
        let instruction = format!(
            "if an earlier run was interrupted, remove {} and run again",
            key.display()
        );
        assert!(text.ends_with(&instruction), "{context}: {text}");
        message = Some(text);
        std::fs::remove_file(key).unwrap();
        ensure_certificates(&cfg, &CertId::ALL, false)
            .unwrap_or_else(|e| panic!("{context}: after following the instruction: {e}"));
    } else {
        rerun.unwrap_or_else(|e| panic!("{context}: rerun: {e}"));
    }
    let converged = files(&cert_dir);
    assert_eq!(
        converged.keys().collect::<Vec<_>>(),
        modes.keys().collect::<Vec<_>>(),
        "{context}: after the rerun, every file and no temporary"
    );
    // Complete pairs written before the interruption are kept byte for byte.
    for (path, _) in &order[..write - write % 2] {
        assert_eq!(
            converged[path],
            on_disk[path],
            "{context}: {} rewritten",
            path.display()
        );
    }
    for (path, bytes) in &converged {
        assert_complete(path, bytes);
        assert_eq!(mode(path), modes[path], "{context}: {}", path.display());
    }
    // And the result is consistent: a third run reuses everything.
    let report = ensure_certificates(&cfg, &CertId::ALL, false).unwrap();
    assert!(report.written.is_empty(), "{context}: {report:?}");
    message
}

#[test]
fn certificate_writes_interrupted_by_an_error_at_every_step_of_every_file() {
    setup();
    for write in 0..10 {
        for step in STEPS {
            interrupt_certificates(write, step, Fault::Error);
        }
    }
}

#[test]
fn certificate_writes_interrupted_by_a_crash_at_every_step_of_every_file() {
    setup();
    let mut half_pairs = 0;
    for write in 0..10 {
        for step in STEPS {
            half_pairs += interrupt_certificates(write, step, Fault::Crash).is_some() as usize;
        }
    }
    // A crash between a key and its certificate (after the key's rename, before the
    // certificate's) is the one case that needs the user: the tool never overwrites a
    // key it cannot prove it made, and says which file to remove.
    assert_eq!(half_pairs, 15);
}

const OLD_MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n# old\n";
const NEW_MANIFEST: &str =
    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n# new, a little longer\n";

/// Interrupts write `write` of `write_manifest` at `step`; `old` is the manifest in place
/// before, if any.
fn interrupt_manifest(old: Option<&str>, write: usize, step: WriteStep, fault: Fault) {
    let tmp = tempfile::tempdir().unwrap();
    let manifest_dir = tmp.path().join("manifests");
    let backup_dir = tmp.path().join("tmp");
    let manifest = manifest_path(&manifest_dir);
    let backup = old.map(|o| backup_path(&backup_dir, o.as_bytes()));
    if let Some(old) = old {
        std::fs::create_dir_all(&manifest_dir).unwrap();
        std::fs::write(&manifest, old).unwrap();
        std::fs::set_permissions(&manifest, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let context = format!(
        "old: {}, {fault:?} at {step:?} of write {write}",
        old.is_some()
    );
    let before = files(tmp.path());
    let modes: BTreeMap<PathBuf, u32> = std::iter::once(manifest.clone())
        .chain(backup.clone())
        .map(|p| (p, 0o600))
        .collect();

    let (result, observations) = with_fault(Some((write, step, fault)), || {
        write_manifest(&manifest_dir, &backup_dir, NEW_MANIFEST)
    });
    match (fault, &result) {
        (Fault::Error, Some(Err(e))) => assert!(
            format!("{e:?}").contains("injected fault"),
            "{context}: {e:?}"
        ),
        (Fault::Crash, None) => {}
        (_, other) => panic!("{context}: unexpected outcome {other:?}"),
    }
    assert_observations(&observations, &modes, &before, &context);

    // The manifest is the old one (or absent); the backup, if written, the old one.
    let on_disk = files(tmp.path());
    assert_eq!(
        on_disk.get(&manifest).map(Vec::as_slice),
        old.map(str::as_bytes),
        "{context}"
    );
    if let Some(backup) = &backup {
        if let Some(bytes) = on_disk.get(backup) {
            assert_eq!(bytes, old.unwrap().as_bytes(), "{context}: partial backup");
            assert_eq!(mode(backup), 0o600);
        }
    }
    let temps: Vec<_> = on_disk.keys().filter(|p| is_temp(p)).collect();
    match fault {
        Fault::Error => assert!(temps.is_empty(), "{context}: {temps:?}"),
        Fault::Crash => {
            assert_eq!(temps.len(), 1, "{context}: {temps:?}");
            assert_eq!(mode(temps[0]), 0o600, "{context}");
        }
    }

    // A rerun converges to the new manifest with the old one backed up, and no temporary.
    let outcome = write_manifest(&manifest_dir, &backup_dir, NEW_MANIFEST)
        .unwrap_or_else(|e| panic!("{context}: rerun: {e:?}"));
    match &backup {
        Some(b) => assert_eq!(
            outcome,
            WriteOutcome::Replaced { backup: b.clone() },
            "{context}"
        ),
        None => assert_eq!(outcome, WriteOutcome::Created, "{context}"),
    }
    let converged = files(tmp.path());
    let mut expected = BTreeMap::from([(manifest.clone(), NEW_MANIFEST.as_bytes().to_vec())]);
    if let (Some(b), Some(old)) = (&backup, old) {
        expected.insert(b.clone(), old.as_bytes().to_vec());
    }
    assert_eq!(converged, expected, "{context}");
    for path in converged.keys() {
        assert_eq!(mode(path), 0o600, "{context}: {}", path.display());
    }
    assert_eq!(
        write_manifest(&manifest_dir, &backup_dir, NEW_MANIFEST).unwrap(),
        WriteOutcome::Unchanged
    );
}

#[test]
fn manifest_writes_interrupted_at_every_step_of_every_file() {
    setup();
    for fault in [Fault::Error, Fault::Crash] {
        for step in STEPS {
            // A new manifest: one write.
            interrupt_manifest(None, 0, step, fault);
            // A replaced manifest: the backup, then the manifest.
            for write in 0..2 {
                interrupt_manifest(Some(OLD_MANIFEST), write, step, fault);
            }
        }
    }
}
