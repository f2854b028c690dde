//! The signals a standalone server or a master obeys, as a stream of what was received.

use std::io;

use tokio::signal::unix::{signal, SignalKind};

/// A signal received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// SIGTERM or SIGINT: stop gracefully.
    Stop,
    /// SIGHUP.
    Hangup,
    /// SIGUSR1.
    User1,
}

/// Installs handlers for SIGTERM, SIGINT, SIGHUP and SIGUSR1, and calls `on` for each signal
/// received, for ever; without handlers (logged), returns at once.
pub(crate) async fn watch(mut on: impl FnMut(Received)) {
    let kinds = [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::hangup(),
        SignalKind::user_defined1(),
    ];
    let streams: io::Result<Vec<_>> = kinds.iter().map(|k| signal(*k)).collect();
    let Ok(Ok([mut term, mut int, mut hup, mut usr1])) = streams.map(<[_; 4]>::try_from) else {
        log::warn!("cannot install signal handlers");
        return;
    };
    loop {
        let received = tokio::select! {
            _ = term.recv() => Received::Stop,
            _ = int.recv() => Received::Stop,
            _ = hup.recv() => Received::Hangup,
            _ = usr1.recv() => Received::User1,
        };
        on(received);
    }
}
