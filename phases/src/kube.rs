//! Kubernetes API access shared by the phases: building a client from a kubeconfig the
//! way kubectl and kubeadm find one, and discovering the etcd members' client URLs from
//! the etcd static Pods' annotations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ::kube::api::ListParams;
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::{Api, Client, Config};
use k8s_openapi::api::core::v1::Pod;

/// kubeadm's admin kubeconfig, the fallback when no kubeconfig is found otherwise.
pub const ADMIN_KUBECONFIG: &str = "/etc/kubernetes/admin.conf";

/// Label selector of kubeadm's etcd static Pods.
pub const ETCD_POD_SELECTOR: &str = "component=etcd,tier=control-plane";

/// Annotation in which kubeadm records an etcd member's advertised client URL: the one
/// the manifest writes, [`crate::manifest::ADVERTISE_CLIENT_URLS_ANNOTATION`].
pub use crate::manifest::ADVERTISE_CLIENT_URLS_ANNOTATION as ETCD_ADVERTISE_CLIENT_URLS_ANNOTATION;

/// How long [`etcd_client_urls_from_pods`] waits for annotated etcd Pods.
pub const ETCD_PODS_WAIT: Duration = Duration::from_secs(30);

/// NB: kube's default read timeout is close to five minutes; a phase talking to an API
/// server that accepted the connection but hangs should fail well before that.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors reaching or querying the Kubernetes API.
#[derive(Debug, thiserror::Error)]
pub enum KubeClientError {
    /// An explicitly given kubeconfig could not be loaded.
    #[error("failed to load kubeconfig {path:?}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: Box<::kube::config::KubeconfigError>,
    },
    /// No kubeconfig was given and none was found.
    #[error(
        "no kubeconfig found: KUBECONFIG, ~/.kube/config and the in-cluster service account \
         gave none ({infer_error}) and {ADMIN_KUBECONFIG} does not exist; pass a kubeconfig explicitly"
    )]
    NoKubeconfig { infer_error: String },
    /// The kubeconfig was loaded but a client could not be built from it.
    #[error("failed to create a Kubernetes client for {server}")]
    Client {
        server: String,
        #[source]
        source: Box<::kube::Error>,
    },
    /// Listing the etcd Pods failed.
    #[error("failed to list Pods in kube-system with label selector {selector:?}")]
    ListPods {
        selector: String,
        #[source]
        source: Box<::kube::Error>,
    },
    /// No etcd Pod carried a client URL annotation in time.
    #[error(
        "no Pod in kube-system with label selector {selector:?} has the annotation \
         {ETCD_ADVERTISE_CLIENT_URLS_ANNOTATION:?} after waiting {waited:?} ({found} matching Pods found)"
    )]
    NoEtcdPods {
        selector: String,
        waited: Duration,
        found: usize,
    },
}

/// A client for the cluster of the kubeconfig at `path`, or, without a path, of the
/// kubeconfig kube finds the usual way (`KUBECONFIG`, `~/.kube/config`, in-cluster),
/// falling back to kubeadm's [`ADMIN_KUBECONFIG`].
pub async fn client_from_kubeconfig(path: Option<&Path>) -> Result<Client, KubeClientError> {
    client_and_server(path).await.map(|(client, _)| client)
}

/// [`client_from_kubeconfig`], plus the API server URL for messages.
pub(crate) async fn client_and_server(
    path: Option<&Path>,
) -> Result<(Client, String), KubeClientError> {
    let mut config = match path {
        Some(path) => config_from_file(path).await?,
        None => match Config::infer().await {
            Ok(config) => config,
            Err(infer_error) => {
                let admin = Path::new(ADMIN_KUBECONFIG);
                if !admin.exists() {
                    return Err(KubeClientError::NoKubeconfig {
                        infer_error: infer_error.to_string(),
                    });
                }
                config_from_file(admin).await?
            }
        },
    };
    config.connect_timeout = Some(
        config
            .connect_timeout
            .map_or(CONNECT_TIMEOUT, |t| t.min(CONNECT_TIMEOUT)),
    );
    config.read_timeout = Some(
        config
            .read_timeout
            .map_or(READ_TIMEOUT, |t| t.min(READ_TIMEOUT)),
    );
    let server = config.cluster_url.to_string();
    match Client::try_from(config) {
        Ok(client) => Ok((client, server)),
        Err(source) => Err(KubeClientError::Client {
            server,
            source: Box::new(source),
        }),
    }
}

async fn config_from_file(path: &Path) -> Result<Config, KubeClientError> {
    let to_err = |source| KubeClientError::Kubeconfig {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(to_err)?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(to_err)
}

/// The client URLs of the etcd members, read from the
/// [`ETCD_ADVERTISE_CLIENT_URLS_ANNOTATION`] of the etcd static Pods in kube-system,
/// sorted and de-duplicated. Waits up to [`ETCD_PODS_WAIT`] for at least one annotated
/// Pod, since mirror Pods appear some time after the kubelet starts the static Pod.
pub async fn etcd_client_urls_from_pods(client: &Client) -> Result<Vec<String>, KubeClientError> {
    etcd_client_urls_from_pods_within(client, ETCD_PODS_WAIT).await
}

/// [`etcd_client_urls_from_pods`] with an explicit bound on the wait.
pub async fn etcd_client_urls_from_pods_within(
    client: &Client,
    wait: Duration,
) -> Result<Vec<String>, KubeClientError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let params = ListParams::default().labels(ETCD_POD_SELECTOR);
    let deadline = tokio::time::Instant::now() + wait;
    let mut delay = Duration::from_millis(200);
    loop {
        let list = pods
            .list(&params)
            .await
            .map_err(|source| KubeClientError::ListPods {
                selector: ETCD_POD_SELECTOR.to_string(),
                source: Box::new(source),
            })?;
        let mut urls: Vec<String> = list
            .items
            .iter()
            .filter_map(|pod| {
                pod.metadata
                    .annotations
                    .as_ref()?
                    .get(ETCD_ADVERTISE_CLIENT_URLS_ANNOTATION)
            })
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_string)
            .collect();
        urls.sort();
        urls.dedup();
        if !urls.is_empty() {
            return Ok(urls);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(KubeClientError::NoEtcdPods {
                selector: ETCD_POD_SELECTOR.to_string(),
                waited: wait,
                found: list.items.len(),
            });
        }
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
