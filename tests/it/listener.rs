//! The gateway's front door under abuse: slow clients, huge announced bodies,
//! too many connections, media types read as types, and a draining shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::http::Gateway;
use crate::common::PATIENCE;

fn connect(gw: &Gateway) -> TcpStream {
    let stream = TcpStream::connect(gw.address()).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream
}

/// Reads until the server closes the connection (or the patience runs out).
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => {
                panic!("the server kept the connection open: {e}; read so far: {}", String::from_utf8_lossy(&out))
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn slow_headers_and_bodies_are_cut_off() {
    let gw = Gateway::start(None, &["--header-timeout-ms", "300", "--body-timeout-ms", "300"]);
    // Slowloris: part of a header line, then nothing.
    let mut slow = connect(&gw);
    slow.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a").expect("write");
    let started = Instant::now();
    read_to_close(&mut slow);
    assert!(started.elapsed() < PATIENCE, "closed by the header timeout");
    // An idle keep-alive connection that never sends a request.
    let mut idle = connect(&gw);
    read_to_close(&mut idle);
    // A body announced and never sent.
    let mut stalled = connect(&gw);
    stalled
        .write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n{\"js")
        .expect("write");
    let answer = read_to_close(&mut stalled);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[test]
fn a_huge_announced_body_is_refused_at_once() {
    let gw = Gateway::start(None, &[]);
    let mut s = connect(&gw);
    s.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 100000000000\r\n\r\n")
        .expect("write");
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).expect("an answer without the body being sent");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn connections_past_the_cap_get_a_clean_refusal() {
    let gw = Gateway::start(None, &["--max-connections", "2"]);
    let held: Vec<TcpStream> = (0..2).map(|_| connect(&gw)).collect();
    // Both are accepted before the third is tried: each answers a request.
    for mut s in held.iter().map(|s| s.try_clone().expect("clone")) {
        s.write_all(b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("write");
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).expect("read");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 404"));
    }
    let mut third = connect(&gw);
    let answer = read_to_close(&mut third);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many connections"), "{answer}");
    drop(held);
    // Room again once they are gone (the server notices the close).
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut s = connect(&gw);
        s.write_all(b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").expect("write");
        if read_to_close(&mut s).starts_with("HTTP/1.1 404") {
            break;
        }
        assert!(Instant::now() < deadline, "the cap was never released");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn media_types_are_parsed_not_searched() {
    let gw = Gateway::start(None, &[]);
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let answer = gw.post(None, &init.to_string(), &[("content-type", "text/plain; x=application/json")]);
    assert_eq!(answer.status, 415, "{answer:?}");
    let answer = gw.post(None, &init.to_string(), &[("content-type", "application/json; charset=utf-8")]);
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = gw.post(None, &init.to_string(), &[("accept", "text/html; q=1, application/json; q=0")]);
    assert_eq!(answer.status, 406, "{answer:?}");
    // An <img> or a plain fetch of /sse starts no server process.
    for accept in [None, Some("image/avif,image/webp,*/*"), Some("*/*")] {
        let mut request = ureq::get(&format!("http://{}/sse", gw.address())).timeout(PATIENCE);
        if let Some(accept) = accept {
            request = request.set("accept", accept);
        }
        let status = match request.call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(status, 406, "Accept {accept:?}");
    }
    assert!(!gw.stderr().contains("HTTP+SSE (2024-11-05) session opened"));
}

/// SIGTERM stops new connections, gives the call in flight the drain time,
/// then answers it with an error (its session closes), and exits 0.
#[test]
fn shutdown_drains_calls_in_flight() {
    let mut gw = Gateway::start(None, &["--drain-secs", "0.5"]);
    let session = gw.open();
    let url = gw.url.clone();
    let (tx, events) = std::sync::mpsc::channel::<Value>();
    // ask_client puts a sampling request on the call's stream, then waits for
    // an answer that never comes: a call surely in flight.
    std::thread::spawn(move || {
        let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "ask_client", "arguments": {}}});
        let response = ureq::post(&url)
            .timeout(PATIENCE)
            .set("content-type", "application/json")
            .set("accept", "application/json, text/event-stream")
            .set("mcp-session-id", &session)
            .set("mcp-protocol-version", "2025-06-18")
            .send_string(&body.to_string())
            .expect("the call's stream");
        for line in std::io::BufRead::lines(std::io::BufReader::new(response.into_reader())) {
            let Ok(line) = line else { break };
            if let Some(data) = line.strip_prefix("data: ").filter(|d| !d.is_empty()) {
                let _ = tx.send(serde_json::from_str(data).expect("JSON event"));
            }
        }
    });
    let asked = events.recv_timeout(PATIENCE).expect("the sampling request");
    assert_eq!(asked["method"], "sampling/createMessage");
    gw.signal("TERM");
    let answer = events.recv_timeout(PATIENCE).expect("an answer to the call in flight");
    assert_eq!(answer["id"], 5, "{answer}");
    assert!(answer["error"]["code"].as_i64().is_some(), "answered with an error: {answer}");
    let status = gw.wait();
    assert!(status.success(), "exit {status}; stderr:\n{}", gw.stderr());
    assert!(gw.stderr().contains("letting calls in flight finish"), "{}", gw.stderr());
}

/// Out of file descriptors, the accept loop backs off instead of spinning,
/// logs the failure rarely, and serves again once descriptors are free.
#[test]
fn running_out_of_descriptors_neither_spins_nor_floods_the_log() {
    let p = crate::common::paths();
    let fixture = p.fixture.display().to_string();
    let warden = p.warden.display().to_string();
    let cache = p.cache.display().to_string();
    let script = format!("ulimit -n 64 && exec {warden} serve --listen 127.0.0.1:0 --cache-dir {cache} -- {fixture}");
    let mut child = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("WARDEN_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("listening on http://") {
                let rest = &line[at + "listening on http://".len()..];
                let _ = tx.send(rest.split('/').next().unwrap_or_default().to_owned());
            }
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let address = rx.recv_timeout(PATIENCE).expect("listening");
    // Far more idle connections than descriptors.
    let held: Vec<TcpStream> = (0..120).filter_map(|_| TcpStream::connect(&address).ok()).collect();
    let failures = || log.lock().unwrap().matches("accept failed").count();
    let deadline = Instant::now() + PATIENCE;
    while failures() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(failures() > 0, "the descriptor table never filled: {}", log.lock().unwrap());
    // A second of being out of descriptors: a line or two, not thousands.
    std::thread::sleep(Duration::from_secs(1));
    assert!(failures() <= 5, "{} accept-failure lines in a second", failures());
    drop(held);
    // Descriptors free again (idle ones time out too): a request is served.
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(mut s) = TcpStream::connect(&address) {
            s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
            let _ = s.write_all(b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 404") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "never served again: {}", log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends one raw request (closing the connection after it) and reads the status line.
fn raw_status(gw: &Gateway, head: &str) -> String {
    let mut s = connect(gw);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;
    let request = format!(
        "{head}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).expect("write");
    read_to_close(&mut s).lines().next().unwrap_or_default().to_owned()
}

#[test]
fn a_host_or_origin_that_names_two_hosts_is_refused() {
    let gw = Gateway::start(None, &[]);
    assert!(raw_status(&gw, "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1").starts_with("HTTP/1.1 200"));
    for head in [
        // Split on the first ':', these read as loopback; they are not.
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:80@evil.example",
        "POST /mcp HTTP/1.1\r\nHost: [::1]evil.example",
        // Two Host headers: which one would a rebinding page's resolver have used?
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example",
        // An absolute-form target names a second host beside Host.
        "POST http://evil.example/mcp HTTP/1.1\r\nHost: 127.0.0.1",
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://localhost\r\nOrigin: http://evil.example",
    ] {
        let status = raw_status(&gw, head);
        assert!(status.starts_with("HTTP/1.1 400"), "{head:?}: {status}");
    }
    for head in [
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1:80@evil.example",
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://localhost@evil.example",
    ] {
        let status = raw_status(&gw, head);
        assert!(status.starts_with("HTTP/1.1 403"), "{head:?}: {status}");
    }
    assert!(gw.log_contains("Host given twice"), "{}", gw.stderr());
}
