//! Parked connections: an idle connection (nothing to read, nothing to send, asked by the
//! broker's idle sweeper) gives up its tokio task and its registration with tokio's reactor,
//! about 0.5 KiB between them, and waits as an entry in the process's one parking lot: its
//! socket in an epoll set of our own, watched by one thread, and its engine and buffers as they
//! were. Whatever comes first resumes it as a new task: bytes from the client (the lot's
//! thread sees the socket readable) or a wake from the broker (a message queued, a takeover, a
//! lapsed keep alive, shutdown) through the waker it left with its session.
//!
//! A wake that arrives while a connection is on its way into the lot is not lost: its entry is
//! reserved first, and a wake for a reserved entry marks it, so the parking finds it and
//! resumes at once.

use super::{Close, Guard, Shell};
use crate::broker::Metrics;
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Registry, Token};
use std::sync::{Mutex, OnceLock};
use std::task::{RawWaker, RawWakerVTable, Waker};
use std::time::Instant;
use tokio::runtime::Handle;

/// The outcome of parking a connection.
pub(crate) enum Parking<S> {
    /// The connection is in the lot (or already resumed as a new task): this task is done.
    Parked,
    /// Not parked (work came meanwhile, or no lot could be made): go on serving.
    Declined(Box<Shell>, Guard, S),
}

/// The process's parking lot: the parked sockets' epoll set and their entries.
struct Lot {
    registry: Registry,
    entries: Mutex<Entries>,
}

/// Entries in fixed chunks: a growing lot never copies its entries into a larger vector (which
/// would leave the old one's pages behind, resident), and grows by 48 KiB at a time.
#[derive(Default)]
struct Entries {
    chunks: Vec<Box<[Entry]>>,
    /// Indices of free entries.
    free: Vec<u32>,
}

/// Entries per chunk.
const CHUNK: usize = 1024;

impl Entries {
    fn get_mut(&mut self, index: u32) -> Option<&mut Entry> {
        let i = index as usize;
        self.chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)
    }

    /// A free entry's index, adding a chunk if none is free.
    fn allocate(&mut self) -> u32 {
        if self.free.is_empty() {
            let first = self.chunks.len() * CHUNK;
            self.chunks.push(
                (0..CHUNK)
                    .map(|_| Entry {
                        generation: 0,
                        state: State::Free,
                    })
                    .collect(),
            );
            // Fewer than 2^32 connections fit in a process; highest first, so that `pop`
            // hands out the lowest.
            self.free.extend(
                (first..first + CHUNK)
                    .rev()
                    .map(|i| u32::try_from(i).unwrap_or(u32::MAX)),
            );
        }
        self.free.pop().unwrap_or(u32::MAX)
    }
}

struct Entry {
    /// Bumped each time the slot is freed, so that a stale wake for an earlier connection in
    /// this slot is ignored.
    generation: u32,
    state: State,
}

enum State {
    Free,
    /// A connection is on its way in.
    Reserved,
    /// Woken while on its way in: it must resume at once.
    Woken,
    Parked(Parked),
}

/// A parked connection.
struct Parked {
    socket: MioStream,
    shell: Box<Shell>,
    guard: Guard,
    /// The runtime its task ran on, to resume it there.
    runtime: Handle,
}

/// The lot, made on first use; `None` if the system would not give us an epoll set or a
/// thread (connections then never park).
fn lot() -> Option<&'static Lot> {
    static LOT: OnceLock<Option<Lot>> = OnceLock::new();
    LOT.get_or_init(|| {
        let made = Poll::new().and_then(|poll| {
            let registry = poll.registry().try_clone()?;
            std::thread::Builder::new()
                .name("roost-parked".into())
                .spawn(move || watch(poll))?;
            Ok(registry)
        });
        match made {
            Ok(registry) => Some(Lot {
                registry,
                entries: Mutex::default(),
            }),
            Err(e) => {
                tracing::error!("idle connections will not be parked: {e}");
                None
            }
        }
    })
    .as_ref()
}

/// The lot's thread: resumes each parked connection whose socket turns readable.
fn watch(mut poll: Poll) {
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!("parked connections' poller failed: {e}");
            return;
        }
        for event in &events {
            unpark(event.token().0 as u64);
        }
    }
}

/// An entry's token: its index and its generation.
fn token(index: u32, generation: u32) -> u64 {
    u64::from(generation) << 32 | u64::from(index)
}

fn lock(entries: &Mutex<Entries>) -> std::sync::MutexGuard<'_, Entries> {
    entries.lock().unwrap_or_else(|e| e.into_inner())
}

impl Lot {
    /// Reserves an entry for a connection on its way in.
    fn reserve(&self) -> u64 {
        let mut entries = lock(&self.entries);
        let index = entries.allocate();
        match entries.get_mut(index) {
            Some(entry) => {
                entry.state = State::Reserved;
                token(index, entry.generation)
            }
            // Only with 2^32 connections parked: this one is never found, and does not park.
            None => token(u32::MAX, 0),
        }
    }

    /// Takes what the entry of `token` holds and frees it, if it is still that entry.
    fn take(&self, token: u64) -> Option<State> {
        let (index, generation) = (token as u32, (token >> 32) as u32);
        let mut entries = lock(&self.entries);
        let entry = entries.get_mut(index)?;
        if entry.generation != generation {
            return None;
        }
        let state = std::mem::replace(&mut entry.state, State::Free);
        if matches!(state, State::Free) {
            return None;
        }
        entry.generation = entry.generation.wrapping_add(1);
        entries.free.push(index);
        Some(state)
    }
}

/// Resumes the connection of `token` if it is parked, or marks it woken if it is on its way
/// in; a stale token does nothing.
fn unpark(token: u64) {
    let Some(lot) = lot() else { return };
    let parked = {
        let (index, generation) = (token as u32, (token >> 32) as u32);
        let mut entries = lock(&lot.entries);
        let Some(entry) = entries.get_mut(index) else {
            return;
        };
        if entry.generation != generation {
            return;
        }
        match std::mem::replace(&mut entry.state, State::Free) {
            State::Parked(parked) => {
                entry.generation = entry.generation.wrapping_add(1);
                entries.free.push(index);
                parked
            }
            State::Reserved | State::Woken => {
                entry.state = State::Woken;
                return;
            }
            State::Free => return,
        }
    };
    let Parked {
        mut socket,
        shell,
        guard,
        runtime,
    } = parked;
    // Our epoll set lets go of it before tokio's takes it back.
    let _ = lot.registry.deregister(&mut socket);
    if let Some(metrics) = shell.engine.metrics() {
        Metrics::dec(&metrics.connections_parked);
    }
    resume(runtime, socket, shell, guard);
}

/// Serves a parked connection again, as a new task on its runtime.
fn resume(runtime: Handle, socket: MioStream, shell: Box<Shell>, guard: Guard) {
    let socket = std::net::TcpStream::from(std::os::fd::OwnedFd::from(socket));
    runtime.spawn(async move {
        match tokio::net::TcpStream::from_std(socket) {
            Ok(stream) => super::connection(stream, super::Start::Resumed(shell), guard).await,
            Err(e) => {
                // The socket cannot rejoin the reactor: the connection ends as lost.
                let mut shell = shell;
                let mut out = bytes::BytesMut::new();
                shell
                    .engine
                    .close(&Close::Io(e.kind()), Instant::now(), &mut out);
                drop(guard);
            }
        }
    });
}

/// A waker that resumes the parked connection of `token`. It carries the token as its data,
/// so it allocates nothing.
fn waker(token: u64) -> Waker {
    const VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, drop_waker);
    fn clone(data: *const ()) -> RawWaker {
        RawWaker::new(data, &VTABLE)
    }
    fn wake(data: *const ()) {
        unpark(data as u64);
    }
    fn drop_waker(_: *const ()) {}
    // SAFETY: the data pointer is the token as an integer, never dereferenced; cloning copies
    // it, waking reads it as an integer, dropping does nothing, and all four functions are
    // thread-safe (`unpark` locks the lot). This is the `RawWaker` contract.
    unsafe { Waker::from_raw(RawWaker::new(token as usize as *const (), &VTABLE)) }
}

/// Parks an idle connection: registers a waker with its session (taking anything that came
/// meanwhile, in which case it does not park), gives its socket up from tokio's reactor to the
/// lot's epoll set, and leaves its engine and buffers in the lot.
pub(super) fn park(
    stream: tokio::net::TcpStream,
    mut shell: Box<Shell>,
    guard: Guard,
) -> Parking<tokio::net::TcpStream> {
    let (Some(lot), Ok(runtime)) = (lot(), Handle::try_current()) else {
        return Parking::Declined(shell, guard, stream);
    };
    let token = lot.reserve();
    let now = Instant::now();
    let shell_ref = &mut *shell;
    let transmit = shell_ref
        .engine
        .poll_transmit(&mut shell_ref.out, now, &waker(token));
    if transmit.is_err() || !shell.out.is_empty() || !shell.engine.mark_parked() {
        // Work came, or the connection is ending: it goes on (and meets it) as a task.
        lot.take(token);
        return Parking::Declined(shell, guard, stream);
    }
    let socket = match stream.into_std() {
        Ok(socket) => MioStream::from_std(socket),
        Err(e) => {
            lot.take(token);
            let mut out = bytes::BytesMut::new();
            shell
                .engine
                .close(&Close::Io(e.kind()), Instant::now(), &mut out);
            return Parking::Parked;
        }
    };
    let mut socket = socket;
    let mut entries = lock(&lot.entries);
    let (index, generation) = (token as u32, (token >> 32) as u32);
    let reserved = entries
        .get_mut(index)
        .filter(|e| e.generation == generation && matches!(e.state, State::Reserved));
    // Registered under the lot's lock: the lot's thread cannot see the socket readable before
    // its entry holds the connection. Edge-triggered, and a socket already readable at
    // registration reports so at once, so bytes that came meanwhile are not missed.
    if let Some(entry) = reserved
        && lot
            .registry
            .register(&mut socket, Token(token as usize), Interest::READABLE)
            .is_ok()
    {
        if let Some(metrics) = shell.engine.metrics() {
            Metrics::inc(&metrics.connections_parked);
        }
        entry.state = State::Parked(Parked {
            socket,
            shell,
            guard,
            runtime,
        });
        return Parking::Parked;
    }
    drop(entries);
    lot.take(token);
    // Woken on the way in (or not registrable): on again at once, as a new task.
    resume(runtime, socket, shell, guard);
    Parking::Parked
}
