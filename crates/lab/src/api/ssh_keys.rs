//! SSH key routes: `GET /ssh_keys` (paged, `filter[project]`), `POST /ssh_keys`,
//! `GET /ssh_keys/{id}` and `DELETE /ssh_keys/{id}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde_json::{Value, json};

use super::body::Attributes;
use super::errors::ApiError;
use super::pagination::Page;
use super::{RawQuery, data, document, params, resources};
use crate::lifecycle::now_ms;
use crate::state::Lab;
use crate::world::{SshKey, new_id};

/// An OpenSSH-style fingerprint (16 colon-separated bytes) of the key blob. Not MD5, but stable
/// and shaped like the real one.
fn fingerprint(blob: &[u8]) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x8422_2325_cbf2_9ce4;
    for byte in blob {
        a = (a ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        b = (b ^ u64::from(*byte))
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(5);
    }
    let bytes: Vec<String> = a
        .to_be_bytes()
        .iter()
        .chain(b.to_be_bytes().iter())
        .map(|x| format!("{x:02x}"))
        .collect();
    bytes.join(":")
}

/// The key blob of an OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
fn key_blob(public_key: &str) -> Option<Vec<u8>> {
    let mut parts = public_key.split_whitespace();
    let kind = parts.next()?;
    if !(kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-")) {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(parts.next()?)
        .ok()
        .filter(|b| !b.is_empty())
}

/// `GET /ssh_keys`.
pub(crate) async fn list(
    State(lab): State<Arc<Lab>>,
    query: RawQuery,
) -> Result<Response, ApiError> {
    let q = params(query)?;
    let page = Page::from_query(&q)?;
    let world = lab.world();
    let project = q
        .get("filter[project]")
        .map(|p| world.project(p).map(|p| p.id.clone()));
    let keys: Vec<Value> = world
        .ssh_keys
        .iter()
        .filter(|k| {
            project
                .as_ref()
                .is_none_or(|p| p.is_some() && k.project_id == *p)
        })
        .map(|k| resources::ssh_key(&world, k))
        .collect();
    let (items, meta) = page.apply(keys);
    Ok(data(StatusCode::OK, Value::Array(items), meta))
}

/// `GET /ssh_keys/{id}`.
pub(crate) async fn get(
    State(lab): State<Arc<Lab>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let world = lab.world();
    let key = world
        .ssh_keys
        .iter()
        .find(|k| k.id == id)
        .ok_or_else(ApiError::not_found)?;
    Ok(data(
        StatusCode::OK,
        resources::ssh_key(&world, key),
        json!({}),
    ))
}

/// `POST /ssh_keys` → 201.
pub(crate) async fn create(State(lab): State<Arc<Lab>>, body: Bytes) -> Result<Response, ApiError> {
    let mut a = Attributes::parse(&body, "ssh_keys")?;
    let name = a.string("name", true);
    let public_key = a.string("public_key", true);
    let project = a.string("project", false);
    let now = now_ms();
    let rendered = lab.mutate(|world| {
        let project_id = project.and_then(|p| match world.project(&p) {
            Some(project) => Some(project.id.clone()),
            None => {
                a.reject("project", format!("Project {p:?} not found"));
                None
            }
        });
        let blob = public_key.as_deref().and_then(|k| {
            let blob = key_blob(k);
            if blob.is_none() {
                a.reject(
                    "public_key",
                    "public_key must be an OpenSSH public key such as \"ssh-ed25519 AAAA…\"",
                );
            }
            blob
        });
        a.finish()?;
        let (Some(name), Some(public_key), Some(blob)) = (name, public_key, blob) else {
            return Err(ApiError::internal(
                "validation passed without the required attributes",
            ));
        };
        let key = SshKey {
            id: new_id("ssh_"),
            name,
            public_key: public_key.trim().to_owned(),
            fingerprint: fingerprint(&blob),
            project_id,
            created_at_ms: now,
            updated_at_ms: now,
        };
        let rendered = resources::ssh_key(world, &key);
        world.ssh_keys.push(key);
        Ok::<_, ApiError>(rendered)
    })?;
    Ok(data(StatusCode::CREATED, rendered, json!({})))
}

/// `DELETE /ssh_keys/{id}` → 200 `{"meta":{}}` (as recorded for the project-scoped form).
pub(crate) async fn delete(
    State(lab): State<Arc<Lab>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    lab.mutate(|world| {
        let index = world
            .ssh_keys
            .iter()
            .position(|k| k.id == id)
            .ok_or_else(ApiError::not_found)?;
        world.ssh_keys.remove(index);
        Ok::<_, ApiError>(())
    })?;
    Ok(document(StatusCode::OK, json!({"meta": {}})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ0c2xhYmtleWZvcnRlc3Rpbmdvbmx5MTIzNDU2Nzg5 me@host";
        let blob = key_blob(key).unwrap();
        let fp = fingerprint(&blob);
        assert_eq!(fp.len(), 47);
        assert_eq!(fp, fingerprint(&blob));
        assert!(key_blob("not a key").is_none());
        assert!(key_blob("ssh-ed25519 !!!").is_none());
    }
}
