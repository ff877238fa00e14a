//! Safe bindings to libsrt (Haivision's SRT reference implementation, the one ffmpeg, OBS and
//! GStreamer use), for what weir's SRT listener needs: a live-mode listener whose callers are
//! admitted by a callback during the handshake (`srt_listen_callback`: stream id, peer,
//! per-caller passphrase, reject reason), blocking accept and receive, and statistics.
//!
//! Blocking calls (`accept`, `recv`) are meant for dedicated threads. Sockets are closed on
//! drop.

#![allow(unsafe_code)]

mod sys {
    #![allow(
        non_upper_case_globals,
        non_camel_case_types,
        non_snake_case,
        dead_code,
        unreachable_pub,
        missing_docs,
        missing_debug_implementations,
        clippy::all
    )]
    include!(concat!(env!("OUT_DIR"), "/srt.rs"));
}

mod addr;

use std::ffi::{c_char, c_int, c_void, CStr};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Once;
use std::time::Duration;

/// An error libsrt reported: its code (`SRT_ERRNO`) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtError {
    /// libsrt's error code (e.g. 6003 for a receive timeout, 2001 for a closed connection).
    pub code: i32,
    /// libsrt's message.
    pub message: String,
}

impl fmt::Display for SrtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (srt error {})", self.message, self.code)
    }
}

impl std::error::Error for SrtError {}

impl SrtError {
    fn last() -> SrtError {
        // SAFETY: both read libsrt's thread-local last error.
        let code = unsafe { sys::srt_getlasterror(std::ptr::null_mut()) };
        let message = unsafe { CStr::from_ptr(sys::srt_getlasterror_str()) }
            .to_string_lossy()
            .into_owned();
        SrtError { code, message }
    }

    fn other(message: &str) -> SrtError {
        SrtError {
            code: -1,
            message: message.into(),
        }
    }

    /// Whether a receive gave up after the socket's receive timeout (`SRT_EASYNCRCV`).
    pub fn is_timeout(&self) -> bool {
        self.code == sys::SRT_ERRNO_SRT_EASYNCRCV
    }
}

fn check(result: c_int) -> Result<c_int, SrtError> {
    if result == sys::SRT_ERROR {
        Err(SrtError::last())
    } else {
        Ok(result)
    }
}

fn startup() {
    static START: Once = Once::new();
    START.call_once(|| {
        // SAFETY: process-wide initialisation, done once; libsrt's own log is silenced to
        // critical messages (callers log what matters).
        unsafe {
            sys::srt_startup();
            sys::srt_setloglevel(2);
        }
    });
}

/// A reject reason from SRT's access control (`SRT_REJX_*`, sent as 1000 + the code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectReason(pub i32);

impl RejectReason {
    /// 1400: the stream id does not parse.
    pub const BAD_REQUEST: RejectReason = RejectReason(sys::SRT_REJX_BAD_REQUEST as i32);
    /// 1401: the credentials (stream key) are wrong.
    pub const UNAUTHORIZED: RejectReason = RejectReason(sys::SRT_REJX_UNAUTHORIZED as i32);
    /// 1402: too many connections.
    pub const OVERLOAD: RejectReason = RejectReason(sys::SRT_REJX_OVERLOAD as i32);
    /// 1403: refused for another reason.
    pub const FORBIDDEN: RejectReason = RejectReason(sys::SRT_REJX_FORBIDDEN as i32);
    /// 1404: no such resource (application).
    pub const NOT_FOUND: RejectReason = RejectReason(sys::SRT_REJX_NOTFOUND as i32);
    /// 1405: the mode (`m=`) is not served.
    pub const BAD_MODE: RejectReason = RejectReason(sys::SRT_REJX_BAD_MODE as i32);
    /// 1409: the resource is already being published.
    pub const CONFLICT: RejectReason = RejectReason(sys::SRT_REJX_CONFLICT as i32);
    /// 1503: the service is unavailable.
    pub const DOWN: RejectReason = RejectReason(sys::SRT_REJX_DOWN as i32);
}

/// A caller being admitted, as the listen callback sees it.
#[derive(Debug)]
pub struct Caller<'a> {
    /// The caller's address.
    pub peer: SocketAddr,
    /// Its `streamid` (`SRTO_STREAMID`), empty if it sent none.
    pub stream_id: &'a str,
}

/// What the listen callback decides about a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Continue the handshake; with `Some`, the connection must be encrypted with this
    /// passphrase (10-79 characters; a caller with another one is rejected by libsrt with
    /// `BADSECRET`, one without with `UNSECURE`).
    Accept {
        /// The passphrase the caller must use, if any.
        passphrase: Option<String>,
    },
    /// Reject the caller with this reason.
    Reject(RejectReason),
}

type Hook = Box<dyn Fn(&Caller<'_>) -> Decision + Send + Sync>;

/// A listening SRT socket in live mode.
pub struct Listener {
    socket: sys::SRTSOCKET,
    // Read by libsrt's threads through the raw pointer given to srt_listen_callback; freed
    // only after the socket is closed.
    hook: *mut Hook,
}

// SAFETY: the socket id is a plain integer usable from any thread; the hook is Send + Sync
// and only read.
unsafe impl Send for Listener {}
// SAFETY: as above; `accept` takes `&self` and libsrt synchronises it.
unsafe impl Sync for Listener {}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("socket", &self.socket)
            .finish()
    }
}

fn set_flag<T>(
    socket: sys::SRTSOCKET,
    option: sys::SRT_SOCKOPT,
    value: &T,
) -> Result<(), SrtError> {
    // SAFETY: `value` points to a live T of the size passed.
    check(unsafe {
        sys::srt_setsockflag(
            socket,
            option,
            (value as *const T).cast::<c_void>(),
            std::mem::size_of::<T>() as c_int,
        )
    })
    .map(|_| ())
}

extern "C" fn listen_hook(
    opaque: *mut c_void,
    socket: sys::SRTSOCKET,
    _hs_version: c_int,
    peer: *const libc::sockaddr,
    stream_id: *const c_char,
) -> c_int {
    let decide = || {
        // SAFETY: `opaque` is the Listener's hook, alive while its socket is open; libsrt
        // passes a valid peer address and a NUL-terminated stream id (or null).
        let hook = unsafe { &*(opaque as *const Hook) };
        let peer = unsafe { addr::from_raw(peer) }?;
        let stream_id = if stream_id.is_null() {
            ""
        } else {
            unsafe { CStr::from_ptr(stream_id) }.to_str().unwrap_or("")
        };
        Some(hook(&Caller { peer, stream_id }))
    };
    // A panic must not unwind into C.
    let decision = std::panic::catch_unwind(decide).ok().flatten();
    match decision {
        Some(Decision::Accept { passphrase: None }) => 0,
        Some(Decision::Accept {
            passphrase: Some(p),
        }) => {
            // SAFETY: the bytes are live for the call; libsrt copies them.
            let set = unsafe {
                sys::srt_setsockflag(
                    socket,
                    sys::SRT_SOCKOPT_SRTO_PASSPHRASE,
                    p.as_ptr().cast::<c_void>(),
                    p.len() as c_int,
                )
            };
            if set == sys::SRT_ERROR {
                -1
            } else {
                0
            }
        }
        Some(Decision::Reject(reason)) => {
            // SAFETY: `socket` is the pending socket libsrt passed.
            unsafe {
                sys::srt_setrejectreason(socket, sys::SRT_REJC_PREDEFINED as c_int + reason.0)
            };
            -1
        }
        None => -1,
    }
}

impl Listener {
    /// Binds a live-mode listener to `addr` with receive `latency` (`SRTO_RCVLATENCY`, the
    /// larger of it and the caller's applies); `hook` decides on every caller during its
    /// handshake, on libsrt's thread (it must not block).
    ///
    /// # Errors
    /// libsrt's error if the socket cannot be created, configured, bound or listened on.
    pub fn bind(
        addr: SocketAddr,
        latency: Duration,
        hook: impl Fn(&Caller<'_>) -> Decision + Send + Sync + 'static,
    ) -> Result<Listener, SrtError> {
        startup();
        // SAFETY: creates a socket we own from here on (closed on every error path below
        // by the Listener's Drop).
        let socket = unsafe { sys::srt_create_socket() };
        if socket == sys::SRT_INVALID_SOCK {
            return Err(SrtError::last());
        }
        let hook: *mut Hook = Box::into_raw(Box::new(Box::new(hook) as Hook));
        let listener = Listener { socket, hook };
        let latency_ms = latency.as_millis().min(i32::MAX as u128) as c_int;
        set_flag(socket, sys::SRT_SOCKOPT_SRTO_RCVLATENCY, &latency_ms)?;
        set_flag(socket, sys::SRT_SOCKOPT_SRTO_PEERLATENCY, &latency_ms)?;
        let enforce: c_int = 1;
        set_flag(socket, sys::SRT_SOCKOPT_SRTO_ENFORCEDENCRYPTION, &enforce)?;
        let (storage, len) = addr::to_raw(addr);
        // SAFETY: `storage` holds a valid sockaddr of `len` bytes.
        check(unsafe {
            sys::srt_bind(
                socket,
                (&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr>(),
                len,
            )
        })?;
        // SAFETY: the hook outlives the socket (freed in Drop after srt_close).
        check(unsafe {
            sys::srt_listen_callback(socket, Some(listen_hook), hook.cast::<c_void>())
        })?;
        // SAFETY: a bound socket.
        check(unsafe { sys::srt_listen(socket, 64) })?;
        Ok(listener)
    }

    /// The bound address (the port chosen when bound to port 0).
    ///
    /// # Errors
    /// libsrt's error if the socket is closed.
    pub fn local_addr(&self) -> Result<SocketAddr, SrtError> {
        sock_name(self.socket)
    }

    /// Waits for the next admitted caller whose handshake completed; returns its socket.
    ///
    /// # Errors
    /// libsrt's error, e.g. when the listener is closed.
    pub fn accept(&self) -> Result<Socket, SrtError> {
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as c_int;
        // SAFETY: `storage` has room for any address; libsrt writes at most `len` bytes.
        let socket = unsafe {
            sys::srt_accept(
                self.socket,
                (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr>(),
                &mut len,
            )
        };
        if socket == sys::SRT_INVALID_SOCK {
            return Err(SrtError::last());
        }
        // SAFETY: libsrt filled `storage` with the peer's address.
        let peer = unsafe { addr::from_raw((&storage as *const libc::sockaddr_storage).cast()) }
            .ok_or_else(|| SrtError::other("unknown address family"))?;
        Ok(Socket { socket, peer })
    }
}

impl Listener {
    /// Closes the listener: a thread blocked in [`accept`](Self::accept) returns an error, and
    /// no caller is admitted any more. Dropping it closes it too.
    pub fn close(&self) {
        // SAFETY: closing a socket id is safe at any time; a second close only returns an
        // error. The hook stays allocated until drop.
        unsafe {
            sys::srt_close(self.socket);
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // SAFETY: closes our socket, after which libsrt calls the hook no more; then the hook
        // is freed.
        unsafe {
            sys::srt_close(self.socket);
            drop(Box::from_raw(self.hook));
        }
    }
}

fn sock_name(socket: sys::SRTSOCKET) -> Result<SocketAddr, SrtError> {
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as c_int;
    // SAFETY: as in `accept`.
    check(unsafe {
        sys::srt_getsockname(
            socket,
            (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr>(),
            &mut len,
        )
    })?;
    // SAFETY: libsrt filled `storage`.
    unsafe { addr::from_raw((&storage as *const libc::sockaddr_storage).cast()) }
        .ok_or_else(|| SrtError::other("unknown address family"))
}

/// One connection's statistics since the previous call (`srt_bstats` with `clear`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// Smoothed round-trip time (`msRTT`).
    pub rtt: Duration,
    /// Receive rate, bits per second (`mbpsRecvRate`).
    pub receive_rate_bps: f64,
    /// Send rate, bits per second (`mbpsSendRate`: acknowledgements and loss reports).
    pub send_rate_bps: f64,
    /// Data packets received (`pktRecv`).
    pub packets_received: u64,
    /// Packets detected lost (`pktRcvLoss`).
    pub packets_lost: u64,
    /// Retransmitted packets received (`pktRcvRetrans`).
    pub packets_retransmitted: u64,
    /// Packets dropped as too late to play (`pktRcvDrop`).
    pub packets_dropped: u64,
}

/// A connected SRT socket (an accepted caller).
#[derive(Debug)]
pub struct Socket {
    socket: sys::SRTSOCKET,
    peer: SocketAddr,
}

impl Socket {
    /// The caller's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The caller's `streamid`.
    ///
    /// # Errors
    /// libsrt's error if the socket is broken.
    pub fn stream_id(&self) -> Result<String, SrtError> {
        let mut buf = [0u8; 600];
        let mut len = buf.len() as c_int;
        // SAFETY: `buf` has `len` bytes of room.
        check(unsafe {
            sys::srt_getsockflag(
                self.socket,
                sys::SRT_SOCKOPT_SRTO_STREAMID,
                buf.as_mut_ptr().cast::<c_void>(),
                &mut len,
            )
        })?;
        let len = (len.max(0) as usize).min(buf.len());
        Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
    }

    /// The receive latency agreed in the handshake (`SRTO_RCVLATENCY`).
    pub fn latency(&self) -> Duration {
        let mut ms: c_int = 0;
        let mut len = std::mem::size_of::<c_int>() as c_int;
        // SAFETY: an int-sized option into an int.
        let ok = unsafe {
            sys::srt_getsockflag(
                self.socket,
                sys::SRT_SOCKOPT_SRTO_RCVLATENCY,
                (&mut ms as *mut c_int).cast::<c_void>(),
                &mut len,
            )
        };
        Duration::from_millis(if ok == sys::SRT_ERROR {
            0
        } else {
            ms.max(0) as u64
        })
    }

    /// Makes [`Socket::recv`] give up after `timeout` without data.
    ///
    /// # Errors
    /// libsrt's error if the socket is broken.
    pub fn set_receive_timeout(&self, timeout: Duration) -> Result<(), SrtError> {
        let ms = timeout.as_millis().min(i32::MAX as u128) as c_int;
        set_flag(self.socket, sys::SRT_SOCKOPT_SRTO_RCVTIMEO, &ms)
    }

    /// Receives one message (in live mode, one packet's payload, at most 1 456 bytes; `buf`
    /// should hold 1 500). Blocks until data, the receive timeout, or the end.
    ///
    /// # Errors
    /// libsrt's error: [`SrtError::is_timeout`] after the receive timeout, otherwise the
    /// connection is over (closed by the peer, broken).
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize, SrtError> {
        let len = buf.len().min(i32::MAX as usize) as c_int;
        // SAFETY: `buf` has `len` bytes of room.
        let n = check(unsafe {
            sys::srt_recvmsg(self.socket, buf.as_mut_ptr().cast::<c_char>(), len)
        })?;
        Ok(n as usize)
    }

    /// The statistics since the previous call (or since the connection began).
    ///
    /// # Errors
    /// libsrt's error if the socket is closed.
    pub fn stats(&self) -> Result<Stats, SrtError> {
        let mut perf: sys::SRT_TRACEBSTATS = unsafe { std::mem::zeroed() };
        // SAFETY: `perf` is a valid SRT_TRACEBSTATS for libsrt to fill.
        check(unsafe { sys::srt_bstats(self.socket, &mut perf, 1) })?;
        let count = |v: c_int| v.max(0) as u64;
        Ok(Stats {
            rtt: Duration::from_secs_f64((perf.msRTT / 1000.0).max(0.0)),
            receive_rate_bps: perf.mbpsRecvRate * 1e6,
            send_rate_bps: perf.mbpsSendRate * 1e6,
            packets_received: perf.pktRecv.max(0) as u64,
            packets_lost: count(perf.pktRcvLoss),
            packets_retransmitted: count(perf.pktRcvRetrans),
            packets_dropped: count(perf.pktRcvDrop),
        })
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: closes the socket we own.
        unsafe {
            sys::srt_close(self.socket);
        }
    }
}
