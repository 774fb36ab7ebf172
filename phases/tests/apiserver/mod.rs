//! An in-process Kubernetes API server for tests: ConfigMaps and Pods in memory, served
//! over HTTP on 127.0.0.1 with the API's semantics where the phases depend on them.
//!
//! - ConfigMaps: GET, PUT (update), PATCH (`application/merge-patch+json`), POST
//!   (create) and list. Every write bumps a cluster-wide resourceVersion; a PUT or PATCH
//!   whose `metadata.resourceVersion` is stale gets 409 Conflict, as the API returns it.
//! - Pods: list with a `labelSelector` (equality selectors `k=v`, `k==v`, `k!=v`, and
//!   existence `k` / `!k`, comma-separated).
//! - Errors are `Status` objects (`reason` NotFound, Conflict, Forbidden, ...).
//! - Per test: forbid verbs (403), inject a concurrent write before the next update
//!   (so that update conflicts), delay reads, and inspect every request seen.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    /// (resource, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Value>,
    resource_version: u64,
    requests: Vec<SeenRequest>,
    /// Verbs answered with 403: "get", "list", "update", "patch", "create".
    forbidden: BTreeSet<String>,
    /// Concurrent writes applied just before the next updates: (data key, value).
    conflicts: VecDeque<(String, String)>,
    read_delay: Duration,
    next_uid: u64,
}

type Shared = Arc<Mutex<Inner>>;

/// A running test API server; it stops when dropped.
pub struct TestApiServer {
    pub addr: SocketAddr,
    inner: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestApiServer {
    /// Starts a server on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        let inner: Shared = Arc::default();
        let app = Router::new()
            .route(
                "/api/v1/namespaces/{ns}/configmaps/{name}",
                get(get_configmap).put(put_configmap).patch(patch_configmap),
            )
            .route(
                "/api/v1/namespaces/{ns}/configmaps",
                get(list_configmaps).post(create_configmap),
            )
            .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
            .fallback(fallback)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("test API server");
        });
        Self { addr, inner, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for this server, without credentials.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().unwrap());
        kube::Client::try_from(config).expect("kube client")
    }

    /// A kubeconfig file content pointing at this server.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\nusers:\n- name: test\n  user: {{}}\n",
            self.url()
        )
    }

    /// Stores a ConfigMap as if it had been created (uid, resourceVersion assigned).
    pub fn insert_configmap(&self, mut cm: Value) -> Value {
        let mut inner = self.inner.lock().unwrap();
        let ns = cm["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let name = cm["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        cm["apiVersion"] = json!("v1");
        cm["kind"] = json!("ConfigMap");
        cm["metadata"]["namespace"] = json!(ns);
        inner.next_uid += 1;
        cm["metadata"]["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", inner.next_uid));
        cm["metadata"]["creationTimestamp"] = json!("2024-01-01T00:00:00Z");
        inner.resource_version += 1;
        cm["metadata"]["resourceVersion"] = json!(inner.resource_version.to_string());
        inner
            .objects
            .insert(("configmaps".into(), ns, name), cm.clone());
        cm
    }

    /// Stores a Pod.
    pub fn insert_pod(&self, mut pod: Value) {
        let mut inner = self.inner.lock().unwrap();
        let ns = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let name = pod["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        pod["apiVersion"] = json!("v1");
        pod["kind"] = json!("Pod");
        inner.resource_version += 1;
        pod["metadata"]["resourceVersion"] = json!(inner.resource_version.to_string());
        inner.objects.insert(("pods".into(), ns, name), pod);
    }

    pub fn configmap(&self, ns: &str, name: &str) -> Option<Value> {
        let inner = self.inner.lock().unwrap();
        inner
            .objects
            .get(&("configmaps".into(), ns.into(), name.into()))
            .cloned()
    }

    /// Answer `verb` ("get", "list", "update", "patch", "create") with 403 Forbidden.
    pub fn forbid(&self, verb: &str) {
        self.inner
            .lock()
            .unwrap()
            .forbidden
            .insert(verb.to_string());
    }

    /// Before each of the next `times` updates (PUT or PATCH), another writer sets
    /// `data[key] = value` on the object, so an update based on an earlier read conflicts.
    pub fn inject_conflicts(&self, times: usize, key: &str, value: &str) {
        let mut inner = self.inner.lock().unwrap();
        for i in 0..times {
            inner
                .conflicts
                .push_back((key.to_string(), format!("{value}-{i}")));
        }
    }

    /// Makes every GET and list wait this long before answering, to widen race windows.
    pub fn delay_reads(&self, delay: Duration) {
        self.inner.lock().unwrap().read_delay = delay;
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// How many requests with this method were answered with this status (any status if `None`).
    pub fn count(&self, method: &str, status: Option<u16>) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && status.is_none_or(|s| r.status == s))
            .count()
    }
}

fn status(code: StatusCode, reason: &str, message: String, name: &str, kind: &str) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {"name": name, "kind": kind},
        "code": code.as_u16(),
    });
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn not_found(resource: &str, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{resource} \"{name}\" not found"),
        name,
        resource,
    )
}

fn forbidden(verb: &str, resource: &str, ns: &str, name: &str) -> Response {
    let object = if name.is_empty() {
        resource.to_string()
    } else {
        format!("{resource} \"{name}\"")
    };
    status(
        StatusCode::FORBIDDEN,
        "Forbidden",
        format!(
            "{object} is forbidden: User \"system:anonymous\" cannot {verb} resource \"{resource}\" in API group \"\" in the namespace \"{ns}\""
        ),
        name,
        resource,
    )
}

fn conflict(resource: &str, name: &str) -> Response {
    status(
        StatusCode::CONFLICT,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ),
        name,
        resource,
    )
}

fn bad_request(message: String) -> Response {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, "", "")
}

fn ok(object: &Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        object.to_string(),
    )
        .into_response()
}

fn record(inner: &Shared, method: &Method, uri: &Uri, response: &Response) {
    inner.lock().unwrap().requests.push(SeenRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        status: response.status().as_u16(),
    });
}

async fn read_delay(inner: &Shared) {
    let delay = inner.lock().unwrap().read_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

async fn get_configmap(
    State(inner): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
) -> Response {
    read_delay(&inner).await;
    let response = {
        let guard = inner.lock().unwrap();
        if guard.forbidden.contains("get") {
            forbidden("get", "configmaps", &ns, &name)
        } else {
            match guard
                .objects
                .get(&("configmaps".into(), ns.clone(), name.clone()))
            {
                Some(cm) => ok(cm),
                None => not_found("configmaps", &name),
            }
        }
    };
    record(&inner, &method, &uri, &response);
    response
}

/// Applies the injected concurrent write, if one is pending, to the stored object.
fn apply_injected_conflict(inner: &mut Inner, key: &(String, String, String)) {
    if !inner.objects.contains_key(key) {
        return;
    }
    if let Some((data_key, value)) = inner.conflicts.pop_front() {
        inner.resource_version += 1;
        let rv = inner.resource_version.to_string();
        let stored = inner.objects.get_mut(key).unwrap();
        if !stored["data"].is_object() {
            stored["data"] = json!({});
        }
        stored["data"][data_key] = json!(value);
        stored["metadata"]["resourceVersion"] = json!(rv);
    }
}

/// Server-managed metadata comes from the stored object, whatever the client sent.
fn carry_server_fields(new: &mut Value, stored: &Value, rv: u64) {
    for field in ["uid", "creationTimestamp"] {
        if let Some(v) = stored["metadata"].get(field) {
            new["metadata"][field] = v.clone();
        }
    }
    new["metadata"]["resourceVersion"] = json!(rv.to_string());
    new["apiVersion"] = json!("v1");
}

async fn put_configmap(
    State(inner): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let response = (|| {
        let mut guard = inner.lock().unwrap();
        if guard.forbidden.contains("update") {
            return forbidden("update", "configmaps", &ns, &name);
        }
        let mut new: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return bad_request(format!("invalid JSON body: {e}")),
        };
        if new["metadata"]["name"].as_str() != Some(name.as_str()) {
            return bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                new["metadata"]["name"]
            ));
        }
        let key = ("configmaps".to_string(), ns.clone(), name.clone());
        apply_injected_conflict(&mut guard, &key);
        let Some(stored) = guard.objects.get(&key).cloned() else {
            return not_found("configmaps", &name);
        };
        // NB: an empty resourceVersion is an unconditional update, which the API allows
        // for ConfigMaps; the code under test must never send one.
        let sent = new["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if !sent.is_empty() && Some(sent.as_str()) != stored["metadata"]["resourceVersion"].as_str()
        {
            return conflict("configmaps", &name);
        }
        guard.resource_version += 1;
        let rv = guard.resource_version;
        new["metadata"]["namespace"] = json!(ns);
        carry_server_fields(&mut new, &stored, rv);
        guard.objects.insert(key, new.clone());
        ok(&new)
    })();
    record(&inner, &method, &uri, &response);
    response
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let target = target.as_object_mut().unwrap();
    for (k, v) in patch {
        if v.is_null() {
            target.remove(k);
        } else {
            merge_patch(target.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

async fn patch_configmap(
    State(inner): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let response = (|| {
        let mut guard = inner.lock().unwrap();
        if guard.forbidden.contains("patch") {
            return forbidden("patch", "configmaps", &ns, &name);
        }
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with("application/merge-patch+json") {
            return status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format - accepted media types include: application/merge-patch+json (got {content_type:?})"),
                &name,
                "configmaps",
            );
        }
        let patch: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return bad_request(format!("invalid JSON body: {e}")),
        };
        let key = ("configmaps".to_string(), ns.clone(), name.clone());
        apply_injected_conflict(&mut guard, &key);
        let Some(stored) = guard.objects.get(&key).cloned() else {
            return not_found("configmaps", &name);
        };
        if let Some(sent) = patch["metadata"]["resourceVersion"].as_str() {
            if Some(sent) != stored["metadata"]["resourceVersion"].as_str() {
                return conflict("configmaps", &name);
            }
        }
        let mut new = stored.clone();
        merge_patch(&mut new, &patch);
        guard.resource_version += 1;
        let rv = guard.resource_version;
        carry_server_fields(&mut new, &stored, rv);
        guard.objects.insert(key, new.clone());
        ok(&new)
    })();
    record(&inner, &method, &uri, &response);
    response
}

async fn create_configmap(
    State(inner): State<Shared>,
    Path(ns): Path<String>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let response = (|| {
        let mut guard = inner.lock().unwrap();
        if guard.forbidden.contains("create") {
            return forbidden("create", "configmaps", &ns, "");
        }
        let mut new: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return bad_request(format!("invalid JSON body: {e}")),
        };
        let Some(name) = new["metadata"]["name"].as_str().map(str::to_string) else {
            return bad_request("metadata.name is required".into());
        };
        let key = ("configmaps".to_string(), ns.clone(), name.clone());
        if guard.objects.contains_key(&key) {
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("configmaps \"{name}\" already exists"),
                &name,
                "configmaps",
            );
        }
        guard.resource_version += 1;
        guard.next_uid += 1;
        let rv = guard.resource_version;
        new["metadata"]["namespace"] = json!(ns);
        new["metadata"]["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", guard.next_uid));
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        new["kind"] = json!("ConfigMap");
        new["apiVersion"] = json!("v1");
        guard.objects.insert(key, new.clone());
        (
            StatusCode::CREATED,
            [("content-type", "application/json")],
            new.to_string(),
        )
            .into_response()
    })();
    record(&inner, &method, &uri, &response);
    response
}

/// A label selector term: `k=v`, `k==v`, `k!=v`, `k`, `!k`.
fn matches_selector(
    labels: &serde_json::Map<String, Value>,
    selector: &str,
) -> Result<bool, String> {
    for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let label = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
        let ok = if let Some((k, v)) = term.split_once("!=") {
            label(k) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==") {
            label(k) == Some(v.trim())
        } else if let Some((k, v)) = term.split_once('=') {
            label(k) == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            label(k).is_none()
        } else if term.contains(' ') || term.contains('(') {
            return Err(format!("unsupported label selector term {term:?} (set-based selectors are not implemented)"));
        } else {
            label(term).is_some()
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn list(
    inner: &Shared,
    resource: &str,
    ns: &str,
    query: &BTreeMap<String, String>,
) -> Response {
    read_delay(inner).await;
    let guard = inner.lock().unwrap();
    if guard.forbidden.contains("list") {
        return forbidden("list", resource, ns, "");
    }
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    let mut items = Vec::new();
    for ((r, n, _), object) in &guard.objects {
        if r != resource || n != ns {
            continue;
        }
        let empty = serde_json::Map::new();
        let labels = object["metadata"]["labels"].as_object().unwrap_or(&empty);
        match matches_selector(labels, &selector) {
            Ok(true) => items.push(object.clone()),
            Ok(false) => {}
            Err(message) => return bad_request(message),
        }
    }
    let kind = if resource == "pods" {
        "PodList"
    } else {
        "ConfigMapList"
    };
    ok(&json!({
        "kind": kind,
        "apiVersion": "v1",
        "metadata": {"resourceVersion": guard.resource_version.to_string()},
        "items": items,
    }))
}

async fn list_configmaps(
    State(inner): State<Shared>,
    Path(ns): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    method: Method,
    uri: Uri,
) -> Response {
    let response = list(&inner, "configmaps", &ns, &query).await;
    record(&inner, &method, &uri, &response);
    response
}

async fn list_pods(
    State(inner): State<Shared>,
    Path(ns): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    method: Method,
    uri: Uri,
) -> Response {
    let response = list(&inner, "pods", &ns, &query).await;
    record(&inner, &method, &uri, &response);
    response
}

async fn fallback(State(inner): State<Shared>, method: Method, uri: Uri) -> Response {
    let response = status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "the server could not find the requested resource ({method} {})",
            uri.path()
        ),
        "",
        "",
    );
    record(&inner, &method, &uri, &response);
    response
}
