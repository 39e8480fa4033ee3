//! Routing and permissions: random methods, paths (built from the routes' own segments,
//! percent-encodings, dot segments, slashes, case changes and raw bytes) and credentials,
//! against the real apps of both ports in-process (`http::app` and `cluster::rpc::app`: every
//! layer, the gate, the route tables as the servers register them), each route served by a
//! probe instead of its handler.
//!
//! Property: a request that reaches a route's probe carries that route's declared access, as
//! a model computes it from the credentials file independently of the gate; and nothing
//! answers 500 (the check at the route refusing a request the gate let through).

#![no_main]

use std::collections::{BTreeSet, HashMap};
use std::mem::ManuallyDrop;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use actix_web::body::BoxBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::Method;
use actix_web::{test, HttpRequest, HttpResponse};
use arbitrary::Arbitrary;
use futures_util::future::LocalBoxFuture;
use libfuzzer_sys::fuzz_target;
use raftlite::auth::gate::{Access, Gate, RouteTable};
use raftlite::auth::{self, Auth};

/// Users of the credentials file: one per perm, `root` with all, `nobody` with none; `*` has
/// `ready`. Passwords are `pw-<user>` (plain: the check is the same, without bcrypt's cost).
fn users() -> Vec<(String, Vec<&'static str>)> {
    let mut users: Vec<(String, Vec<&'static str>)> = auth::PERMS
        .iter()
        .map(|p| (format!("u-{p}"), vec![*p]))
        .collect();
    users.push(("root".into(), vec![auth::ALL]));
    users.push(("nobody".into(), vec![]));
    users
}

const ANYONE: &[&str] = &[auth::READY];

struct World {
    auth: Arc<Auth>,
    _dir: tempfile::TempDir,
    perms: HashMap<String, BTreeSet<&'static str>>,
    http_table: RouteTable,
    raft_table: RouteTable,
    segments: Vec<String>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut entries: Vec<String> = users()
            .iter()
            .map(|(u, p)| {
                let perms: Vec<String> = p.iter().map(|p| format!("\"{p}\"")).collect();
                format!(
                    r#"{{"username": "{u}", "password": "pw-{u}", "perms": [{}]}}"#,
                    perms.join(",")
                )
            })
            .collect();
        let anyone: Vec<String> = ANYONE.iter().map(|p| format!("\"{p}\"")).collect();
        entries.push(format!(
            r#"{{"username": "*", "perms": [{}]}}"#,
            anyone.join(",")
        ));
        let path = dir.path().join("auth.json");
        std::fs::write(&path, format!("[{}]", entries.join(","))).unwrap();
        let http_table = raftlite::http::routes().table().clone();
        let raft_table = raftlite::cluster::rpc::routes().table().clone();
        let mut segments = BTreeSet::new();
        for r in http_table.routes().iter().chain(raft_table.routes()) {
            for seg in r.pattern.split('/') {
                segments.insert(
                    seg.replace("{id}", "123-456")
                        .replace("{file}", "console.js"),
                );
            }
        }
        World {
            auth: Arc::new(Auth::load(&path).unwrap()),
            _dir: dir,
            perms: users()
                .into_iter()
                .map(|(u, p)| (u, p.into_iter().collect()))
                .collect(),
            http_table,
            raft_table,
            segments: segments.into_iter().collect(),
        }
    })
}

#[derive(Arbitrary, Debug)]
enum Piece {
    Segment(u8),
    Slash,
    Dot,
    DotDot,
    /// One byte of the previous segment percent-encoded (upper or lower hex).
    EncodeLast(u8, bool),
    Upper,
    Raw(u8),
    Query(u8),
}

#[derive(Arbitrary, Debug)]
enum Creds {
    None,
    User(u8, bool),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    raft_port: bool,
    method: u8,
    pieces: Vec<Piece>,
    creds: Creds,
}

const METHODS: &[&str] = &[
    "GET", "POST", "HEAD", "DELETE", "PUT", "PATCH", "OPTIONS", "TRACE",
];

fn build_path(w: &World, pieces: &[Piece]) -> String {
    let mut path = String::from("/");
    for piece in pieces.iter().take(16) {
        match piece {
            Piece::Segment(i) => path.push_str(&w.segments[*i as usize % w.segments.len()]),
            Piece::Slash => path.push('/'),
            Piece::Dot => path.push_str("./"),
            Piece::DotDot => path.push_str("../"),
            Piece::EncodeLast(i, upper) => {
                // Re-encode one ASCII letter or digit of the path so far.
                let bytes: Vec<(usize, u8)> = path
                    .bytes()
                    .enumerate()
                    .filter(|(_, b)| b.is_ascii_alphanumeric() || *b == b'-')
                    .collect();
                if !bytes.is_empty() {
                    let (at, b) = bytes[*i as usize % bytes.len()];
                    let enc = if *upper {
                        format!("%{b:02X}")
                    } else {
                        format!("%{b:02x}")
                    };
                    path.replace_range(at..at + 1, &enc);
                }
            }
            Piece::Upper => path = path.to_ascii_uppercase(),
            Piece::Raw(b) => {
                let b = *b;
                if b.is_ascii_graphic() && b != b'?' && b != b'#' {
                    path.push(b as char);
                } else {
                    path.push_str(&format!("%{b:02X}"));
                }
            }
            Piece::Query(b) => path.push_str(if b % 2 == 0 { "?pretty" } else { "?timeout=x" }),
        }
    }
    path
}

/// What the model says the credentials hold: `*`'s perms, and the user's when the password is
/// right.
fn model_perms(w: &World, creds: &Creds) -> BTreeSet<&'static str> {
    let mut held: BTreeSet<&'static str> = ANYONE.iter().copied().collect();
    if let Creds::User(i, right) = creds {
        let users = users();
        let (user, _) = &users[*i as usize % users.len()];
        if *right {
            held.extend(w.perms[user].iter().copied());
        }
    }
    held
}

fn model_allows(held: &BTreeSet<&'static str>, access: Access) -> bool {
    let has = |p: &&str| held.contains(p) || held.contains(auth::ALL);
    match access {
        Access::Public => true,
        Access::AllOf(perms) => perms.iter().all(has),
        Access::AnyOf(perms) | Access::Member(perms) => perms.iter().any(has),
    }
}

async fn probe(req: HttpRequest) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("x-probe-pattern", req.match_pattern().unwrap_or_default()))
        .finish()
}

fn declared(table: &RouteTable, pattern: &str, method: &Method) -> Option<Access> {
    let find = |m: &Method| {
        table
            .routes()
            .iter()
            .find(|r| r.pattern == pattern && r.method.as_ref().is_none_or(|d| d == m))
            .map(|r| r.access)
    };
    find(method).or_else(|| {
        (method == Method::HEAD)
            .then(|| find(&Method::GET))
            .flatten()
    })
}

/// A request sent to one of the apps, answered with its status and headers.
type Call = Box<dyn Fn(test::TestRequest) -> LocalBoxFuture<'static, ServiceResponse<BoxBody>>>;

/// A request runner for one in-process app (the two ports' apps are of different types).
fn caller<S, B>(app: Rc<S>) -> Call
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
        > + 'static,
    B: actix_web::body::MessageBody + 'static,
{
    Box::new(move |req: test::TestRequest| {
        let app = Rc::clone(&app);
        Box::pin(async move {
            test::call_service(&*app, req.to_request())
                .await
                .map_into_boxed_body()
        })
    })
}

thread_local! {
    /// The actix runtime the apps live on (libFuzzer runs inputs on one thread). Neither is
    /// ever dropped: at exit, dropping the apps would need the runtime's thread-local state,
    /// which may already be gone.
    static RUNNER: ManuallyDrop<actix_web::rt::SystemRunner> =
        ManuallyDrop::new(actix_web::rt::System::new());
    /// Both apps, built once: every input goes through the same service, as requests to a
    /// server do.
    static APPS: ManuallyDrop<(Call, Call)> = RUNNER.with(|runner| {
        let w = world();
        let gate = |table: &RouteTable| {
            Arc::new(Gate {
                table: Arc::new(table.clone()),
                auth: Some(Arc::clone(&w.auth)),
                members_by_tls: false,
            })
        };
        let options = raftlite::http::HeaderOptions {
            auth_on: true,
            allow_origin: None,
        };
        let http = Rc::new(runner.block_on(test::init_service(raftlite::http::app(
            gate(&w.http_table),
            &options,
            |cfg| {
                raftlite::http::routes().register_probe(cfg, probe);
            },
        ))));
        let raft = Rc::new(runner.block_on(test::init_service(raftlite::cluster::rpc::app(
            gate(&w.raft_table),
            |cfg| {
                raftlite::cluster::rpc::routes().register_probe(cfg, probe);
            },
        ))));
        ManuallyDrop::new((caller(http), caller(raft)))
    });
}

fuzz_target!(
    // Built before the first input: actix keeps (leaks) the route patterns it parses, which
    // LeakSanitizer would blame on that input.
    init: {
        APPS.with(|_| ());
    },
    |input: Input| {
    let w = world();
    let path = build_path(w, &input.pieces);
    let method = METHODS[input.method as usize % METHODS.len()];
    let Ok(uri) = path.parse::<actix_web::http::Uri>() else {
        return;
    };
    let mut req = test::TestRequest::default()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(&uri.to_string());
    match &input.creds {
        Creds::None => {}
        Creds::User(i, right) => {
            let users = users();
            let (user, _) = &users[*i as usize % users.len()];
            let password = if *right {
                format!("pw-{user}")
            } else {
                "wrong".to_string()
            };
            req = req.insert_header(("Authorization", auth::basic_header(user, &password)));
        }
        Creds::Raw(bytes) => {
            if let Ok(v) = actix_web::http::header::HeaderValue::from_bytes(bytes) {
                req = req.insert_header(("Authorization", v));
            }
        }
    }
    let table = if input.raft_port {
        &w.raft_table
    } else {
        &w.http_table
    };
    let resp = APPS.with(|apps| {
        let (http, raft) = &**apps;
        RUNNER.with(|runner| runner.block_on(if input.raft_port { raft(req) } else { http(req) }))
    });
    assert_ne!(
        resp.status().as_u16(),
        500,
        "{method} {path}: the check at the route refused what the gate let through"
    );
    if let Some(pattern) = resp.headers().get("x-probe-pattern") {
        let pattern = pattern.to_str().unwrap();
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let access = declared(table, pattern, &m)
            .unwrap_or_else(|| panic!("{method} {path} reached {pattern}, which has no access"));
        let held = model_perms(w, &input.creds);
        assert!(
            model_allows(&held, access),
            "{method} {path} reached {pattern} ({access:?}) holding only {held:?}"
        );
    }
});
