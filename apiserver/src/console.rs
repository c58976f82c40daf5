//! The web console at `/console/` on the API port (docs/console.md): a few
//! static files compiled into the binary, served with security headers. It
//! holds no data and no logic of its own on the server: the page reads the
//! REST API with the key the user types, so it sees exactly what that key may
//! read.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::error::ApiError;

/// No inline script or style, nothing from another origin, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../console/index.html"),
    },
    Asset { name: "app.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("../console/app.js") },
    Asset {
        name: "watch.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/watch.js"),
    },
    Asset { name: "dom.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("../console/dom.js") },
    Asset {
        name: "lease.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/lease.js"),
    },
    Asset {
        name: "format.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/format.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../console/console.css"),
    },
    Asset { name: "favicon.svg", content_type: "image/svg+xml", body: include_bytes!("../console/favicon.svg") },
];

/// `/console` (redirects), `/console/` (the page) and `/console/{file}`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        .route("/console/", get(|| async { asset("index.html") }))
        .route("/console/{file}", get(|Path(file): Path<String>| async move { asset(&file) }))
}

fn asset(name: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return ApiError::RouteNotFound.into_response();
    };
    let mut response = (StatusCode::OK, asset.body).into_response();
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_TYPE, asset.content_type);
    set(headers, header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    // Revalidate on every load, so an upgraded server never runs an old script.
    set(headers, header::CACHE_CONTROL, "no-cache");
    set(headers, HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    set(headers, HeaderName::from_static("cross-origin-resource-policy"), "same-origin");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_names_is_embedded() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        for name in ["app.js", "console.css", "favicon.svg"] {
            assert!(page.contains(&format!("\"{name}\"")), "index.html names {name}");
        }
        // Every module import resolves to an embedded file.
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            for import in text.split("from \"./").skip(1) {
                let file = &import[..import.find('"').unwrap()];
                assert!(ASSETS.iter().any(|a| a.name == file), "{} imports {file}", asset.name);
            }
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style_and_loads_nothing_from_elsewhere() {
        for asset in ASSETS {
            // The SVG namespace is a name, not a location.
            let text = String::from_utf8_lossy(asset.body).replace("http://www.w3.org/2000/svg", "");
            assert!(!text.contains("http://") && !text.contains("https://"), "{} names another origin", asset.name);
            if asset.name == "index.html" {
                assert!(!text.contains("<script>") && !text.contains(" style="), "inline code in index.html");
                let handler = text.split(" on").skip(1).any(|rest| {
                    let word: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
                    !word.is_empty() && rest[word.len()..].starts_with('=')
                });
                assert!(!handler, "inline event handler in index.html");
                // Were the form ever submitted without the script, the key must not go into a URL.
                let key_field = &text[text.find(r#"<input id="api-key""#).unwrap()..];
                assert!(!key_field[..key_field.find('>').unwrap()].contains(" name="), "the key field has a name");
            }
        }
    }
}
