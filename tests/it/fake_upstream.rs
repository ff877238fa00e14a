//! A scripted upstream for edge tests: it answers an event's access policy (`{}`) and the
//! objects the test gives it, and can hold an answer (before its head, or half-way through its
//! body) until the test releases it, so a test can see what an edge does with a slow or
//! stalled upstream without depending on timing.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};

/// Where an answer stops until released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Answer at once.
    None,
    /// Send nothing until released.
    BeforeHead,
    /// Send the head and the first half of the body, the rest when released.
    HalfBody,
}

#[derive(Clone, Debug)]
struct Object {
    body: Vec<u8>,
    content_type: &'static str,
    cache_control: &'static str,
    hold: Hold,
}

#[derive(Default)]
struct State {
    objects: HashMap<String, Object>,
    /// Requests per path.
    requests: HashMap<String, usize>,
    /// Answers waiting for a release, now.
    held: usize,
    /// Bumped by each release.
    releases: u64,
}

/// The upstream; it serves until the test process ends.
#[derive(Clone)]
pub(crate) struct FakeUpstream {
    pub(crate) url: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl FakeUpstream {
    pub(crate) fn start() -> FakeUpstream {
        FakeUpstream::start_on("127.0.0.1:0".parse().unwrap())
    }

    /// An upstream listening on `addr`.
    pub(crate) fn start_on(addr: std::net::SocketAddr) -> FakeUpstream {
        FakeUpstream::start_with(TcpListener::bind(addr).unwrap())
    }

    /// An upstream answering on `listener` (connections already queued on it included).
    pub(crate) fn start_with(listener: TcpListener) -> FakeUpstream {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let up = FakeUpstream {
            url,
            state: Arc::default(),
        };
        let me = up.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let me = me.clone();
                std::thread::spawn(move || me.serve(stream));
            }
        });
        up
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves `body` at `path` from now on.
    pub(crate) fn put(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: &'static str,
        cache_control: &'static str,
        hold: Hold,
    ) {
        self.lock().objects.insert(
            path.into(),
            Object {
                body,
                content_type,
                cache_control,
                hold,
            },
        );
    }

    /// Requests for `path` so far.
    pub(crate) fn requests(&self, path: &str) -> usize {
        self.lock().requests.get(path).copied().unwrap_or(0)
    }

    /// Answers being held now.
    pub(crate) fn held(&self) -> usize {
        self.lock().held
    }

    /// Lets every held answer go on.
    pub(crate) fn release(&self) {
        self.lock().releases += 1;
        self.state.1.notify_all();
    }

    /// Counts an answer as held (before any of it is sent, so a test that sees part of it
    /// also sees it held).
    fn hold(&self) {
        self.lock().held += 1;
    }

    /// Blocks a held answer until a release after `seen`.
    fn wait_release(&self, seen: u64) {
        let mut s = self.lock();
        while s.releases == seen {
            s = self.state.1.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.held -= 1;
    }

    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
        }
        let path = target.split('?').next().unwrap_or("").to_string();
        let (object, seen) = {
            let mut s = self.lock();
            *s.requests.entry(path.clone()).or_default() += 1;
            let object = if path.ends_with("/access") {
                Some(Object {
                    body: b"{}".to_vec(),
                    content_type: "application/json",
                    // Cached by the edge for the whole test: after the first request
                    // no viewer waits on a policy fetch (tests count waiters).
                    cache_control: "max-age=60",
                    hold: Hold::None,
                })
            } else {
                s.objects.get(&target).cloned()
            };
            (object, s.releases)
        };
        let mut out = stream;
        let Some(o) = object else {
            let _ = out.write_all(
                b"HTTP/1.1 404 Not Found\r\ncache-control: no-store\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            return;
        };
        if o.hold != Hold::None {
            self.hold();
        }
        if o.hold == Hold::BeforeHead {
            self.wait_release(seen);
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {}\r\ncache-control: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            o.content_type,
            o.cache_control,
            o.body.len()
        );
        let half = if o.hold == Hold::HalfBody {
            o.body.len() / 2
        } else {
            o.body.len()
        };
        if out.write_all(head.as_bytes()).is_err() || out.write_all(&o.body[..half]).is_err() {
            return;
        }
        let _ = out.flush();
        if half < o.body.len() {
            self.wait_release(seen);
            let _ = out.write_all(&o.body[half..]);
        }
    }
}

/// `weir edge` in front of `upstream` with `[edge]` settings `edge_toml` (TOML lines), its
/// `/metrics` on a listener of its own.
pub(crate) fn edge_with(upstream: &str, edge_toml: &str) -> crate::support::Weir {
    edge_with_sections(upstream, edge_toml, "")
}

/// As [`edge_with`], with more TOML sections after `[edge]` (e.g. `[access]`).
pub(crate) fn edge_with_sections(
    upstream: &str,
    edge_toml: &str,
    sections: &str,
) -> crate::support::Weir {
    let file = crate::support::scratch_dir().join("edge.toml");
    std::fs::write(
        &file,
        format!("[edge]\nmetrics_listen = \"127.0.0.1:0\"\n{edge_toml}\n{sections}\n"),
    )
    .unwrap();
    crate::support::spawn(&[
        "edge".into(),
        "--config".into(),
        file.display().to_string(),
        "--upstream".into(),
        upstream.into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ])
}
