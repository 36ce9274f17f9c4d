//! Token validation cost per request, in process: the OAuth resource server
//! checking an RS256 and an ES256 access token, every time (`verify`, what
//! each request cost without the cache) and with verified tokens kept by
//! digest until they expire (`check`, what a client sending the same token
//! again pays). Tokens and keys are made by `tests/oidc/forge.mjs` (node,
//! `npm ci --prefix tests/oidc`). Run with `cargo bench -p warden-tests --bench tokens`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use warden::serve::oauth::{JwksSource, OAuthConfig, ResourceServer};

const ISSUER: &str = "https://idp.bench";
const AUDIENCE: &str = "http://127.0.0.1/mcp";
const ROUNDS: u32 = 4000;

fn main() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("repo").to_owned();
    let oidc = repo.join("tests/oidc");
    if !oidc.join("node_modules/jose").exists() {
        eprintln!("tests/oidc/node_modules missing (npm ci --prefix tests/oidc): nothing to measure");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) + 3600;
    let claims =
        json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "bench", "scope": "mcp", "exp": exp, "groups": ["infra"]});
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    println!("| token | verified every time: µs/request | kept by digest: µs/request |");
    println!("|---|---:|---:|");
    for (name, mode, jwks) in
        [("RS256 (2048-bit)", "keyed-rs", "rs-jwks.json"), ("ES256 (P-256)", "keyed", "jwks.json")]
    {
        let out = Command::new("node")
            .current_dir(&oidc)
            .args(["forge.mjs", mode, &claims.to_string(), &dir.path().display().to_string()])
            .output()
            .expect("node");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let server = ResourceServer::new(OAuthConfig {
            issuer: ISSUER.into(),
            audience: Some(AUDIENCE.into()),
            jwks: Some(JwksSource::File(dir.path().join(jwks))),
            required_scopes: vec!["mcp".into()],
        });
        let scopes = vec!["mcp".to_owned()];
        let (every, kept) = runtime.block_on(async {
            server.warm().await.expect("keys");
            let per = |elapsed: Duration| elapsed.as_secs_f64() * 1e6 / f64::from(ROUNDS);
            let started = Instant::now();
            for _ in 0..ROUNDS {
                server.verify(&token, AUDIENCE).await.expect("a valid token");
            }
            let every = per(started.elapsed());
            server.check(Some(&token), AUDIENCE, &scopes).await.expect("a valid token");
            let started = Instant::now();
            for _ in 0..ROUNDS {
                server.check(Some(&token), AUDIENCE, &scopes).await.expect("a valid token");
            }
            (every, per(started.elapsed()))
        });
        println!("| {name} | {every:.1} | {kept:.2} |");
    }
}
