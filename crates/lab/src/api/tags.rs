//! Tag routes: `GET /tags` and `POST /tags`, as Latitude serves them. Tags belong to the team
//! (not to a project); servers carry them by id and get them through `PATCH /servers/{id}`
//! (see [`super::servers::update`]), never at order time.
//!
//! Sources: `latitudesh/latitudesh-go-sdk` `docs/sdks/tags/README.md`,
//! `models/operations/createtag.go` (`name` required, `description`, `color` defaulting to
//! `#ffffff`), the spec's examples in `.speakeasy/gen.lock` (`create-tag`: 201 with the tag;
//! 422 `NAME_ALREADY_TAKEN` "is already taken" and `NAME_TOO_SIMILAR` "is too similar to an
//! existing tag name", both pointing at `/data/attributes/name`), and the recorded traffic in
//! `latitudesh/terraform-provider-latitudesh` `latitudesh/fixtures/TestAccTag_Basic.yaml`
//! (`"test_tag"` keeps its slug `test_tag`; `GET /tags` answers every tag in one page).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::body::Attributes;
use super::errors::{ApiError, ErrorObject};
use super::{data, resources};
use crate::state::Lab;
use crate::world::{Tag, new_id};

/// The slug Latitude derives from a tag name: lowercase, runs of spaces become `-`
/// (`"Tag Name"` → `tag-name`, `"test_tag"` → `test_tag`).
pub(crate) fn slug(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join("-")
        .to_lowercase()
}

/// `GET /tags`: every tag of the team, not paginated.
pub(crate) async fn list(State(lab): State<Arc<Lab>>) -> Result<Response, ApiError> {
    let world = lab.world();
    let tags: Vec<Value> = world.tags.iter().map(resources::tag).collect();
    Ok(data(StatusCode::OK, Value::Array(tags), json!({})))
}

/// `POST /tags` → 201 with the tag.
pub(crate) async fn create(State(lab): State<Arc<Lab>>, body: Bytes) -> Result<Response, ApiError> {
    let mut a = Attributes::parse(&body, "tags")?;
    let name = a.string("name", true);
    let description = a.string("description", false).unwrap_or_default();
    let color = a.string("color", false).unwrap_or_else(|| "#ffffff".into());
    a.finish()?;
    let Some(name) = name else {
        return Err(ApiError::internal("validation passed without a name"));
    };
    let rendered = lab.mutate(|world| {
        let taken = |code: &str, detail: &str| {
            let mut e = ErrorObject::invalid_attribute("name", detail);
            e.code = Some(code.into());
            ApiError::validation(vec![e])
        };
        if world
            .tags
            .iter()
            .any(|t| t.name.eq_ignore_ascii_case(&name))
        {
            return Err(taken("NAME_ALREADY_TAKEN", "is already taken"));
        }
        let slug = slug(&name);
        if world.tags.iter().any(|t| t.slug == slug) {
            return Err(taken(
                "NAME_TOO_SIMILAR",
                "is too similar to an existing tag name",
            ));
        }
        let tag = Tag {
            id: new_id("tag_"),
            name,
            slug,
            description,
            color,
        };
        tracing::info!(id = %tag.id, name = %tag.name, "tag created");
        let rendered = resources::tag(&tag);
        world.tags.push(tag);
        Ok::<_, ApiError>(rendered)
    })?;
    Ok(data(StatusCode::CREATED, rendered, json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_recordings() {
        assert_eq!(slug("Tag Name"), "tag-name");
        assert_eq!(slug("test_tag"), "test_tag");
        assert_eq!(slug("cto-install-abc"), "cto-install-abc");
    }
}
