//! `/admin/v1/tokens`: admin bearer tokens made, listed and revoked through the API. A token
//! is shown once, when it is made; only its SHA-256 digest is stored.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use weir_config::AdminToken;
use weir_origin::Store;

use super::types::{AuthErrors, CreateErrors};
use super::{ApiError, ApiJson};
use crate::db::StoredToken;
use crate::status::unix_ms;
use crate::{Control, KnownToken};

type Ctl<S> = State<Arc<Control<S>>>;

/// An admin token as the API shows it (never the token itself).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// Its id: `tok_` and 16 hex digits, or `config-N` for the configuration file's.
    pub id: String,
    /// What the operator called it.
    pub name: String,
    /// `config` (the configuration file's: not deletable here) or `api`.
    pub source: String,
    /// When it was made (for `config`: when weir started), ms since the Unix epoch.
    pub created_at_ms: u64,
}

/// `POST /admin/v1/tokens`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What the token is for (1-100 characters).
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
}

/// The new token, shown this once.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// The token's description.
    #[serde(flatten)]
    pub view: TokenView,
    /// The bearer token: `Authorization: Bearer {token}`.
    pub token: String,
}

/// The `{id}` of `/admin/v1/tokens/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Only described: the handler takes the id as `Path<String>`.
pub(crate) struct TokenPath {
    /// The token id.
    id: String,
}

fn view(t: &KnownToken) -> TokenView {
    TokenView {
        id: t.id.clone(),
        name: t.name.clone(),
        source: if t.from_config { "config" } else { "api" }.into(),
        created_at_ms: t.created_at_ms,
    }
}

/// Every admin token.
#[utoipa::path(get, path = "/admin/v1/tokens", tag = "tokens",
    responses((status = 200, description = "The tokens", body = [TokenView]), AuthErrors))]
pub(crate) async fn list_tokens<S: Store>(State(control): Ctl<S>) -> Json<Vec<TokenView>> {
    let tokens = control
        .admin_tokens
        .read()
        .unwrap_or_else(|e| e.into_inner());
    Json(tokens.iter().map(view).collect())
}

/// Makes an admin token. It is in the answer, the only time it is shown.
#[utoipa::path(post, path = "/admin/v1/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, description = "Made", body = CreatedToken), CreateErrors))]
pub(crate) async fn create_token<S: Store>(
    State(control): Ctl<S>,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<Response, ApiError> {
    let chars = body.name.chars().count();
    if !(1..=100).contains(&chars) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "name: 1-100 characters",
        ));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    let token = hex::encode(&bytes[..24]);
    let id = format!("tok_{}", hex::encode(&bytes[24..]));
    let digest = AdminToken::new(&token).map_err(ApiError::internal)?;
    let stored = StoredToken {
        id: id.clone(),
        name: body.name,
        sha256: digest.digest_hex(),
        created_at_ms: unix_ms(SystemTime::now()),
    };
    control
        .db
        .insert_token(&stored)
        .await
        .map_err(ApiError::internal)?;
    let known = KnownToken {
        id,
        name: stored.name,
        token: digest,
        from_config: false,
        created_at_ms: stored.created_at_ms,
    };
    let created = CreatedToken {
        view: view(&known),
        token,
    };
    tracing::info!(token = %known.id, "admin token made");
    control
        .admin_tokens
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .push(known);
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Revokes an admin token made through the API: it is refused from the next request on.
#[utoipa::path(delete, path = "/admin/v1/tokens/{id}", tag = "tokens", params(TokenPath),
    responses((status = 204, description = "Revoked"),
              (status = 401, description = "Missing or wrong bearer token", body = super::ErrorBody),
              (status = 404, description = "No such token", body = super::ErrorBody),
              (status = 409, description = "A token of the configuration file", body = super::ErrorBody)))]
pub(crate) async fn delete_token<S: Store>(
    State(control): Ctl<S>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let from_config = {
        let tokens = control
            .admin_tokens
            .read()
            .unwrap_or_else(|e| e.into_inner());
        match tokens.iter().find(|t| t.id == id) {
            None => return Err(ApiError::new(StatusCode::NOT_FOUND, "no such token")),
            Some(t) => t.from_config,
        }
    };
    if from_config {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "tokens of the configuration file are removed there",
        ));
    }
    control
        .db
        .delete_token(&id)
        .await
        .map_err(ApiError::internal)?;
    control
        .admin_tokens
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|t| t.id != id);
    tracing::info!(token = %id, "admin token revoked");
    Ok(StatusCode::NO_CONTENT)
}
