//! The application interface: WSGI's shape in Rust's vocabulary.
//!
//! A WSGI application is called with an environ and `start_response` and returns an iterable;
//! here it is called with an [`Environ`] and an [`Input`] (the body, `wsgi.input`) and returns a
//! [`Reply`] (status and headers, `start_response`'s arguments, plus the body: bytes, a stream of
//! chunks, or a file). Plain closures are applications.

pub(crate) mod environ;
mod input;
mod reply;

pub use environ::Environ;
pub use input::Input;
pub use reply::{Body, Chunks, Reply};

/// Something that answers requests. It may block: each runs on a worker thread of its own.
pub trait Application: Send + Sync + 'static {
    /// Answers one request; the body is read from `input` as the application needs it.
    fn call(&self, environ: &Environ, input: &mut Input<'_>) -> Reply;
}

impl<F> Application for F
where
    F: Fn(&Environ, &mut Input<'_>) -> Reply + Send + Sync + 'static,
{
    fn call(&self, environ: &Environ, input: &mut Input<'_>) -> Reply {
        self(environ, input)
    }
}
