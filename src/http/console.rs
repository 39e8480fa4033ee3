//! The web console: `/` and `/console` redirects, the embedded assets under `/console/`, and
//! the routes of its API (backup jobs in [`super::console_backup`], staged restores in
//! [`super::console_restore`], per-member details in [`super::console_cluster`]).
//!
//! The assets are the files of `console/` at the repository root, embedded at compile time
//! (`include_bytes!`), so the binary serves them with nothing on disk and nothing from the
//! network. Each answer carries its content type, an `ETag` (a hash of the bytes, computed
//! once) and `Cache-Control: no-cache`: browsers keep the file and revalidate it, and a
//! matching `If-None-Match` gets a 304 without a body. Names are not hashed, so a new build's
//! assets are picked up at the next revalidation.
//!
//! Invariants: only the files listed in `ASSETS` are served; any other path under
//! `/console/` is a 404.

use std::sync::OnceLock;

use actix_web::http::{header, Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};

use super::response::empty;
use super::{console_backup, console_cluster, console_restore};
use crate::auth::gate::Routes;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// Every file the console serves. `index.html` answers `/console/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../console/index.html"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../console/console.css"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../console/console.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../../console/favicon.svg"),
    },
];

/// Scripts, styles, images and requests from this node only.
const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
                   base-uri 'none'; frame-ancestors 'none'";

/// Registers the console's routes.
pub fn routes(r: &mut Routes) {
    use crate::auth::{self as perm, Access::*};
    // `/` redirects to the console for any method, as a plain page would.
    r.any_method("/", Public, root_redirect)
        .add("/console", Method::GET, Public, console_redirect)
        .add("/console", Method::HEAD, Public, console_redirect)
        .add(
            "/console/api/backup-jobs",
            Method::POST,
            AllOf(&[perm::BACKUP]),
            console_backup::create,
        )
        .add(
            "/console/api/backup-jobs/{id}",
            Method::GET,
            AllOf(&[perm::BACKUP]),
            console_backup::progress,
        )
        // A job's download needs nothing more: its id (128 random bits) was handed to a caller
        // with `backup`, and a browser download link cannot carry the console's credentials.
        .add(
            "/console/api/backup-jobs/{id}/download",
            Method::GET,
            Public,
            console_backup::download,
        )
        .add(
            "/console/api/cluster",
            Method::GET,
            AllOf(&[perm::STATUS]),
            console_cluster::cluster,
        )
        .add(
            "/console/api/restores",
            Method::POST,
            AllOf(&[perm::LOAD]),
            console_restore::stage,
        )
        .add(
            "/console/api/restores/{id}",
            Method::GET,
            AllOf(&[perm::LOAD]),
            console_restore::describe,
        )
        .add(
            "/console/api/restores/{id}",
            Method::DELETE,
            AllOf(&[perm::LOAD]),
            console_restore::discard,
        )
        .add(
            "/console/api/restores/{id}/install",
            Method::POST,
            AllOf(&[perm::LOAD]),
            console_restore::install,
        )
        .add("/console/{file}", Method::GET, AllOf(&[perm::UI]), asset)
        .add("/console/{file}", Method::HEAD, AllOf(&[perm::UI]), asset)
        .add("/console/", Method::GET, AllOf(&[perm::UI]), asset)
        .add("/console/", Method::HEAD, AllOf(&[perm::UI]), asset);
}

fn redirect(status: StatusCode) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::LOCATION, "/console/"))
        .finish()
}

async fn root_redirect() -> HttpResponse {
    redirect(StatusCode::FOUND)
}

async fn console_redirect() -> HttpResponse {
    redirect(StatusCode::MOVED_PERMANENTLY)
}

/// The quoted ETag of each asset, in [`ASSETS`] order (FNV-1a 64 of the bytes).
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let hash = a.bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
                });
                format!("\"{hash:016x}\"")
            })
            .collect()
    })
}

async fn asset(req: HttpRequest) -> HttpResponse {
    let name = req.match_info().get("file").unwrap_or("index.html");
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return empty(StatusCode::NOT_FOUND);
    };
    let (asset, etag) = (&ASSETS[i], &etags()[i]);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    resp.insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // Enforces "nothing from the network": only this origin, no inline script.
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP));
    if fresh {
        return resp.finish();
    }
    resp.insert_header((header::CONTENT_TYPE, asset.content_type))
        .body(asset.bytes)
}
